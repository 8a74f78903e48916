/**
 * Group `storage`: free space and inodes where the agent writes (the data directory and the
 * install root), who can read the data directory (data-dir.ts), the state store's integrity (SQLite quick_check), and the outbox: how many
 * messages wait for the broker and for how long.
 */
import { statfs } from 'node:fs/promises';
import { dataDirCheck } from './data-dir.js';
import { errText, failure, humanAge, humanBytes, ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';

/**
 * Below these the agent cannot install an update or keep its outbox. A ratio alone would cry
 * wolf on a large disk, so a low ratio counts only while the absolute amount is small too.
 */
export const SPACE = { failBytes: 50 * 1024 * 1024, warnBytes: 500 * 1024 * 1024, failRatio: 0.02, warnRatio: 0.1, ratioMatters: 4 * 1024 ** 3 } as const;
export const INODES = { failRatio: 0.01, warnRatio: 0.05 } as const;
/** An outbox message older than this means the broker has not taken messages for a while. */
export const OUTBOX_OLD_MS = 10 * 60 * 1000;

export interface FsFacts {
  bavail: number;
  blocks: number;
  bsize: number;
  ffree: number;
  files: number;
}

/** Free space and inodes of one file system; pure. */
export function spaceVerdict(name: string, path: string, s: FsFacts): CheckResult {
  const free = s.bavail * s.bsize;
  const ratio = s.blocks > 0 ? s.bavail / s.blocks : 1;
  const inodeRatio = s.files > 0 ? s.ffree / s.files : 1;
  const details = { path, freeBytes: free, freePercent: Math.round(ratio * 1000) / 10, freeInodes: s.ffree, freeInodesPercent: s.files > 0 ? Math.round(inodeRatio * 1000) / 10 : null };
  const text = `${path}: ${humanBytes(free)} free (${details.freePercent}%)${s.files > 0 ? `, ${details.freeInodesPercent}% inodes free` : ''}`;
  const advice = 'free space: remove old backups ({dataDir}/backups), logs or files not needed; journalctl --vacuum-size=100M';
  const smallDisk = free < SPACE.ratioMatters;
  if (free < SPACE.failBytes || (smallDisk && ratio < SPACE.failRatio)) return failure(name, `almost no space left on ${text}`, advice, details);
  if (s.files > 0 && inodeRatio < INODES.failRatio) return failure(name, `almost no inodes left on ${text}`, 'remove many small files (old logs, temporary files)', details);
  if (free < SPACE.warnBytes || (smallDisk && ratio < SPACE.warnRatio)) return warning(name, `space is getting low on ${text}`, advice, details);
  if (s.files > 0 && inodeRatio < INODES.warnRatio) return warning(name, `inodes are getting low on ${text}`, 'remove many small files (old logs, temporary files)', details);
  return ok(name, text, details);
}

/** Outbox depth and age against its bounds; pure. */
export function outboxVerdict(depth: number, oldestCreatedAt: number | undefined, now: number, maxMessages: number): CheckResult {
  const ageMs = oldestCreatedAt === undefined ? 0 : Math.max(0, now - oldestCreatedAt);
  const details = { depth, oldestAgeMs: oldestCreatedAt === undefined ? null : ageMs, maxMessages };
  if (depth === 0) return ok('outbox', 'the outbox is empty: the broker has every message', details);
  const text = `${depth} message${depth === 1 ? '' : 's'} waiting for the broker, the oldest for ${humanAge(ageMs)}`;
  if (depth >= maxMessages * 0.9) return failure('outbox', `${text}: the outbox is nearly full (${maxMessages}); the oldest telemetry and events are being dropped`, 'restore the connection to the broker (see group connectivity)', details);
  if (ageMs > OUTBOX_OLD_MS) return warning('outbox', text, 'restore the connection to the broker (see group connectivity); messages are kept and sent once it is back', details);
  return ok('outbox', text, details);
}

export const storageChecks: GroupCheck = async (ctx) => {
  const { config } = ctx;
  const results: CheckResult[] = [];
  const seen = new Set<string>();
  for (const [name, path] of [
    ['disk-data', config.dataDir],
    ['disk-root', config.ota.root],
  ] as const) {
    try {
      const s = await statfs(path);
      // The same file system twice says nothing new.
      const id = `${s.type}:${s.blocks}:${s.files}:${s.bfree}`;
      if (seen.has(id)) continue;
      seen.add(id);
      results.push(spaceVerdict(name, path, s));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        results.push(name === 'disk-data' ? warning(name, `${path} does not exist`, 'start the agent once (it creates its data directory), or fix dataDir') : skipped(name, `${path} does not exist (not installed)`));
      } else {
        results.push(warning(name, `cannot read the free space of ${path}: ${errText(err)}`, 'check the path and its permissions'));
      }
    }
  }
  results.push(await dataDirCheck(config.dataDir));
  if (ctx.storeError) {
    results.push(failure('store', `cannot open the state store: ${ctx.storeError}`, 'check {dataDir}/agent.db: permissions, disk errors (dmesg); restore it from {dataDir}/backups if it is damaged'));
    return results;
  }
  if (!ctx.db) {
    results.push(warning('store', 'no state store yet: the agent has not run with this data directory', `start the agent, or give the daemon's --config / --data-dir`));
    return results;
  }
  try {
    const problems = ctx.integrity();
    if (problems === undefined) results.push(skipped('store', 'the store integrity was not checked'));
    else if (problems.length === 0) results.push(ok('store', 'the state store passes SQLite quick_check'));
    else {
      results.push(
        failure('store', `the state store is damaged: ${problems.slice(0, 3).join('; ')}`, 'stop the agent and restore {dataDir}/agent.db from the newest backup in {dataDir}/backups', { problems: problems.slice(0, 20) }),
      );
    }
    const o = ctx.storeReader.outboxStats(ctx.db);
    results.push(outboxVerdict(o.depth, o.oldestCreatedAt, ctx.now(), config.outbox.maxMessages));
  } catch (err) {
    results.push(failure('store', `cannot read the state store: ${errText(err)}`, 'check {dataDir}/agent.db: permissions, disk errors (dmesg)'));
  }
  return results;
};
