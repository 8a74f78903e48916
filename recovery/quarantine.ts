/**
 * `{dataDir}/quarantine/`: where a bad configuration file or a corrupt store is kept for analysis
 * instead of being deleted. Names are `{stamp}-{name}`; the oldest are removed beyond `keep`
 * entries so a crash loop cannot fill the disk with copies of the same broken store. What lands
 * here is a store or a configuration, so it is 0640 or tighter (recovery/private-files.ts).
 */
import { renameSync, rmSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fsyncDir } from '../lib/atomic.js';
import { copyPrivate, privateDir, tightenFile } from './private-files.js';

export const QUARANTINE_KEEP = 20;

export function quarantineDir(dataDir: string): string {
  return join(dataDir, 'quarantine');
}

/** A file-name-safe, sortable UTC time stamp. */
export function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[:.]/g, '-');
}

/**
 * Moves (or, across file systems and for files the agent may not remove, copies) `file` into
 * quarantine as `{stamp}-{basename}`; returns the new path.
 */
export function quarantineFile(dataDir: string, file: string, now: number, opts: { copy?: boolean; keep?: number } = {}): string {
  const dir = quarantineDir(dataDir);
  privateDir(dir);
  const target = join(dir, `${stamp(now)}-${basename(file)}`);
  if (opts.copy) copyPrivate(file, target);
  else {
    try {
      renameSync(file, target);
      // A moved file keeps its mode: the store of an older release may be 0644.
      tightenFile(target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      copyPrivate(file, target);
      rmSync(file, { force: true });
    }
  }
  fsyncDir(dir);
  prune(dir, opts.keep ?? QUARANTINE_KEEP);
  return target;
}

/** Names in quarantine, newest first. */
export function listQuarantine(dataDir: string): string[] {
  try {
    return readdirSync(quarantineDir(dataDir)).sort().reverse();
  } catch {
    return [];
  }
}

function prune(dir: string, keep: number): void {
  const names = readdirSync(dir).sort().reverse();
  for (const old of names.slice(keep)) rmSync(join(dir, old), { force: true, recursive: true });
}

/**
 * When `name` was quarantined: its stamp (stamp() above), or for a name without one its mtime
 * (a moved file keeps the mtime it had, so the stamp comes first); undefined when neither.
 */
export function quarantinedAt(dir: string, name: string): number | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z-/.exec(name);
  if (m) {
    const t = Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}.${m[5]}Z`);
    if (Number.isFinite(t)) return t;
  }
  try {
    return statSync(join(dir, name)).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * The daily cleanup (maintenance-daily's files-cleanup): removes what was quarantined before
 * `before`, and the oldest beyond `keep` entries; what it removed, with sizes (a directory 0).
 */
export function cleanQuarantine(dataDir: string, before: number, keep: number = QUARANTINE_KEEP): { path: string; bytes: number }[] {
  const dir = quarantineDir(dataDir);
  const out: { path: string; bytes: number }[] = [];
  for (const [i, name] of listQuarantine(dataDir).entries()) {
    const at = quarantinedAt(dir, name);
    if (i < keep && (at === undefined || at >= before)) continue;
    const p = join(dir, name);
    let bytes = 0;
    try {
      const st = statSync(p);
      bytes = st.isFile() ? st.size : 0;
    } catch {
      continue; // gone meanwhile
    }
    rmSync(p, { recursive: true, force: true });
    out.push({ path: p, bytes });
  }
  return out;
}
