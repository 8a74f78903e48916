/**
 * Backups of the state store in `{dataDir}/backups/`, and picking one to restore.
 *
 * Two kinds live there: `store-{stamp}.db`, online backups taken while the agent runs (SQLite's
 * backup API through better-sqlite3 `db.backup()`, a few pages per event-loop turn, so the agent
 * keeps working), and `{stamp}-{updateId}/agent.db`, the copy the OTA update takes before each
 * activation (agent/ota-wiring.ts). A restore considers both, newest first. Each side rotates only
 * its own kind (`pruneStoreBackups` here, directories there).
 *
 * INVARIANTS: a backup is written under a temporary name, checked with quick_check, fsynced and
 * only then renamed to `store-*.db`, so every `store-*.db` was good when written; a backup is
 * never opened in place (restore copies it first), so checking a candidate cannot change it.
 */
import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { fsyncDir } from '../lib/atomic.js';
import { quickCheck, type Db } from '../lib/sqlite.js';
import { errorMessage } from '../lib/errors.js';
import { stamp } from './quarantine.js';
import { RestoreError } from './restore-errors.js';

export function backupsDir(dataDir: string): string {
  return join(dataDir, 'backups');
}

export interface StoreBackup {
  path: string;
  kind: 'periodic' | 'update';
  mtimeMs: number;
}

/** Every store backup on disk, newest first. */
export function listStoreBackups(dataDir: string): StoreBackup[] {
  const dir = backupsDir(dataDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: StoreBackup[] = [];
  for (const n of names) {
    const p = join(dir, n);
    try {
      if (/^store-.+\.db$/.test(n)) out.push({ path: p, kind: 'periodic', mtimeMs: statSync(p).mtimeMs });
      else if (statSync(p).isDirectory() && existsSync(join(p, 'agent.db'))) out.push({ path: join(p, 'agent.db'), kind: 'update', mtimeMs: statSync(join(p, 'agent.db')).mtimeMs });
    } catch {
      // Removed while listing (rotation): not a candidate.
    }
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.path < b.path ? 1 : -1));
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a copy read-write (it is ours), switches it to a rollback journal so no -wal/-shm files
 * linger next to it, and returns what quick_check finds; a file SQLite cannot read at all is a
 * problem too.
 */
export function checkCopy(path: string): string[] {
  let db: Db | undefined;
  try {
    db = new Database(path, { fileMustExist: true });
    const problems = quickCheck(db);
    if (problems.length === 0) db.pragma('journal_mode = DELETE');
    return problems;
  } catch (err) {
    return [errorMessage(err)];
  } finally {
    db?.close();
  }
}

export interface BackupResult {
  path: string;
  bytes: number;
  ms: number;
}

/**
 * Takes an online backup of `db` as `{dataDir}/backups/store-{stamp}.db` and keeps the newest
 * `keep` periodic backups. Throws (and leaves nothing behind) when the copy fails its check.
 */
export async function takeStoreBackup(opts: { db: Db; dataDir: string; keep: number; now: () => number }): Promise<BackupResult> {
  const started = opts.now();
  const dir = backupsDir(opts.dataDir);
  const name = `store-${stamp(started)}.db`;
  const tmp = join(dir, `.${name}.tmp`);
  const target = join(dir, name);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    await opts.db.backup(tmp);
    const problems = checkCopy(tmp);
    if (problems.length > 0) throw new RestoreError('backup-corrupt', `the backup copy fails quick_check: ${problems.slice(0, 3).join('; ')}`, { details: { problems } });
    fsyncFile(tmp);
    renameSync(tmp, target);
    fsyncDir(dir);
  } finally {
    rmSync(tmp, { force: true });
    rmSync(`${tmp}-journal`, { force: true });
  }
  pruneStoreBackups(opts.dataDir, opts.keep);
  return { path: target, bytes: statSync(target).size, ms: opts.now() - started };
}

/** Keeps the newest `keep` periodic backups; update backups are ota-wiring's to rotate. */
export function pruneStoreBackups(dataDir: string, keep: number): void {
  const periodic = listStoreBackups(dataDir).filter((b) => b.kind === 'periodic');
  for (const old of periodic.slice(keep)) rmSync(old.path, { force: true });
}

/**
 * Copies the newest backup that passes quick_check to `target` (atomically: a temporary copy is
 * checked, then renamed). Returns the backup used, and why the others were not.
 */
export function restoreNewestBackup(dataDir: string, target: string): { from: StoreBackup | undefined; skipped: { path: string; why: string }[] } {
  const skipped: { path: string; why: string }[] = [];
  const tmp = join(dirname(target), `.${basename(target)}.restore.tmp`);
  for (const b of listStoreBackups(dataDir)) {
    try {
      copyFileSync(b.path, tmp);
      const problems = checkCopy(tmp);
      if (problems.length > 0) {
        skipped.push({ path: b.path, why: problems.slice(0, 3).join('; ') });
        continue;
      }
      fsyncFile(tmp);
      renameSync(tmp, target);
      fsyncDir(dirname(target));
      return { from: b, skipped };
    } catch (err) {
      skipped.push({ path: b.path, why: errorMessage(err) });
    } finally {
      for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
    }
  }
  return { from: undefined, skipped };
}
