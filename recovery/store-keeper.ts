/**
 * Keeps the running store recoverable: online backups (one once the agent has proven itself
 * after a start, unless a recent one exists, then every `backupIntervalMs`) and a periodic
 * `quick_check` (every `integrityCheckIntervalMs`, at a quiet moment: it reads the whole file
 * and blocks the event loop while it does).
 *
 * A damaged store cannot be repaired under a running agent (every component holds the same
 * handle), so `onCorrupt` is called once and the owner restarts; the start-time check
 * (store-check.ts) then moves the store aside and restores a backup.
 *
 * A store whose file is removed (or replaced) under the running agent goes on working on the
 * unlinked file, and everything written after that is lost at the next start. So every
 * `watchIntervalMs` (a stat, cheap; not deferred to a quiet moment) the path is compared with the
 * file the agent opened (device and inode of `agent.db` and of its `-wal`); on a difference
 * `onDetached` is called, again at each watch until it returns true (handled).
 *
 * INVARIANTS: at most one backup runs at a time; nothing runs after stop(); onCorrupt at most
 * once; onDetached until it is handled, then never again.
 */
import { statSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { quickCheck, type Db } from '../lib/sqlite.js';
import { errorCode } from '../lib/errors.js';
import { listStoreBackups, takeStoreBackup, type BackupResult } from './store-backup.js';
import { isCorruption } from './store-check.js';
import type { RestoreError } from './restore-errors.js';

export interface StoreKeeperOptions {
  db: Db;
  dataDir: string;
  keepBackups: number;
  backupIntervalMs: number;
  integrityCheckIntervalMs: number;
  /** Whether now is a good moment for a check that blocks the event loop (no command running...). */
  quiet(): boolean;
  onCorrupt(problems: string[], when: 'integrity-check' | 'backup'): void;
  /** The store's path (`{dataDir}/agent.db`), watched for the file being removed or replaced. */
  path?: string;
  watchIntervalMs?: number;
  /** The file at `path` is not the one the agent has open (`why` says how); true when handled. */
  onDetached?(why: string, foreign: boolean): boolean;
  clock: Clock;
  logger: Logger;
  /** How long to wait for a quiet moment before checking anyway; default 10 minutes. */
  maxDeferMs?: number;
}

/** A file's identity; undefined when it does not exist. */
export function fileId(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * How `path` (and its -wal) differ from the identities seen at open, or undefined when they do
 * not; `foreign`: another file now stands at `path` (not ours to overwrite without keeping it).
 */
export function detachedWhy(path: string, opened: { db: string | undefined; wal: string | undefined }): { why: string; foreign: boolean } | undefined {
  const db = fileId(path);
  if (db === undefined) return { why: `${path} was removed while the agent had it open`, foreign: false };
  if (opened.db !== undefined && db !== opened.db) return { why: `${path} was replaced by another file while the agent had it open`, foreign: true };
  if (opened.wal !== undefined) {
    const wal = fileId(`${path}-wal`);
    if (wal === undefined) return { why: `${path}-wal was removed while the agent had it open`, foreign: false };
    if (wal !== opened.wal) return { why: `${path}-wal was replaced by another file while the agent had it open`, foreign: false };
  }
  return undefined;
}

/** The first backup's delay after the agent proved itself: none while a recent one exists; pure. */
export function firstBackupDelay(newestMs: number | undefined, now: number, intervalMs: number): number {
  if (newestMs === undefined) return 0;
  return Math.max(0, Math.min(intervalMs, newestMs + intervalMs - now));
}

export class StoreKeeper {
  readonly name = 'store-keeper';
  private backupTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private running: Promise<BackupResult | undefined> | undefined;
  private stopped = true;
  private corrupt = false;
  private deferredSince: number | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private opened: { db: string | undefined; wal: string | undefined } | undefined;
  private detached = false;
  lastBackup: { at: string; path: string; bytes: number; ms: number } | undefined;
  lastCheck: { at: string; problems: string[]; ms: number } | undefined;

  constructor(private readonly opts: StoreKeeperOptions) {}

  async start(): Promise<void> {
    this.stopped = false;
    this.scheduleCheck(this.opts.integrityCheckIntervalMs);
    const { path, watchIntervalMs } = this.opts;
    if (path !== undefined && watchIntervalMs !== undefined && this.opts.onDetached) {
      // The store is open (and in WAL mode: its -wal exists) before any component starts.
      this.opened = { db: fileId(path), wal: fileId(`${path}-wal`) };
      this.watchTimer = this.opts.clock.setInterval(() => this.watchNow(), watchIntervalMs);
    }
  }

  /** One comparison of the store's path with the file the agent opened; the reason when it differs. */
  watchNow(): string | undefined {
    const { path } = this.opts;
    if (this.stopped || this.detached || !this.opened || path === undefined || !this.opts.onDetached) return undefined;
    let d: { why: string; foreign: boolean } | undefined;
    try {
      d = detachedWhy(path, this.opened);
    } catch (err) {
      this.opts.logger.warn({ err, path }, 'cannot stat the store');
      return undefined;
    }
    if (d === undefined) return undefined;
    const why = d.why;
    this.opts.logger.error({ path, why }, 'the store file is not the one the agent has open');
    if (this.opts.onDetached(why, d.foreign)) {
      this.detached = true;
      this.opts.clock.clearInterval(this.watchTimer);
      this.watchTimer = undefined;
    }
    return why;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.opts.clock.clearTimeout(this.backupTimer);
    this.opts.clock.clearTimeout(this.checkTimer);
    this.opts.clock.clearInterval(this.watchTimer);
    this.backupTimer = this.checkTimer = this.watchTimer = undefined;
    // The backup reads through the store handle the owner closes next: let it finish first.
    await this.running?.catch(() => undefined);
  }

  /** The agent proved itself after a start: schedule backups from now on. */
  proven(): void {
    if (this.stopped || this.backupTimer) return;
    const newest = listStoreBackups(this.opts.dataDir).find((b) => b.kind === 'periodic');
    this.scheduleBackup(firstBackupDelay(newest?.mtimeMs, this.opts.clock.now(), this.opts.backupIntervalMs));
  }

  /** One backup now (also used by the timer); resolves undefined when stopped or one is running. */
  async backupNow(): Promise<BackupResult | undefined> {
    // A detached store: the owner has saved the open store and restarts; nothing more to take.
    if (this.stopped || this.running || this.corrupt || this.detached) return undefined;
    const { db, dataDir, keepBackups, clock, logger } = this.opts;
    this.running = takeStoreBackup({ db, dataDir, keep: keepBackups, now: () => clock.now() });
    try {
      const r = await this.running;
      if (r) {
        this.lastBackup = { at: new Date(clock.now()).toISOString(), path: r.path, bytes: r.bytes, ms: r.ms };
        logger.info({ backup: r.path, bytes: r.bytes, ms: r.ms }, 'store backed up');
      }
      return r;
    } catch (err) {
      if (errorCode(err) === 'backup-corrupt') this.flagCorrupt((err as RestoreError).details?.problems as string[], 'backup');
      else if (isCorruption(err)) this.flagCorrupt([String(err)], 'backup');
      else logger.error({ err }, 'store backup failed');
      return undefined;
    } finally {
      this.running = undefined;
    }
  }

  /** One quick_check now; returns its problems. */
  checkNow(): string[] {
    const { clock } = this.opts;
    const t0 = clock.now();
    let problems: string[];
    try {
      problems = quickCheck(this.opts.db);
    } catch (err) {
      if (!isCorruption(err)) throw err;
      problems = [String(err)];
    }
    this.lastCheck = { at: new Date(t0).toISOString(), problems, ms: clock.now() - t0 };
    this.opts.logger.info({ ms: this.lastCheck.ms, problems: problems.slice(0, 10) }, problems.length === 0 ? 'store integrity check passed' : 'store integrity check FAILED');
    if (problems.length > 0) this.flagCorrupt(problems, 'integrity-check');
    return problems;
  }

  private flagCorrupt(problems: string[], when: 'integrity-check' | 'backup'): void {
    if (this.corrupt) return;
    this.corrupt = true;
    this.opts.logger.error({ problems: problems.slice(0, 10), when }, 'the store is damaged');
    this.opts.onCorrupt(problems, when);
  }

  private scheduleBackup(ms: number): void {
    this.backupTimer = this.opts.clock.setTimeout(() => {
      void this.backupNow().finally(() => {
        if (!this.stopped) this.scheduleBackup(this.opts.backupIntervalMs);
      });
    }, ms);
  }

  private scheduleCheck(ms: number): void {
    this.checkTimer = this.opts.clock.setTimeout(() => {
      const now = this.opts.clock.now();
      this.deferredSince ??= now;
      const waited = now - this.deferredSince;
      // A backup in progress also reads the whole file: never both at once.
      if (this.running || (!this.opts.quiet() && waited < (this.opts.maxDeferMs ?? 600_000))) {
        this.scheduleCheck(Math.min(60_000, this.opts.integrityCheckIntervalMs));
        return;
      }
      this.deferredSince = undefined;
      try {
        this.checkNow();
      } catch (err) {
        this.opts.logger.error({ err }, 'store integrity check could not run');
      }
      if (!this.stopped && !this.corrupt) this.scheduleCheck(this.opts.integrityCheckIntervalMs);
    }, ms);
  }
}
