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
 * Every file written here (backups, a restored store, a saved live store) holds what the store
 * holds, so it is created 0640 before the first byte goes in, whatever the umask, the data
 * directory's mode or the mode of the file it copies; `backups/` itself is kept 0750 or tighter.
 */
import { Worker } from 'node:worker_threads';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { fsyncDir } from '../lib/atomic.js';
import { quickCheck, type Db } from '../lib/sqlite.js';
import { errorMessage } from '../lib/errors.js';
import { stamp } from './quarantine.js';
import { copyPrivate, createPrivateFile, privateDir, vacuumIntoPrivate } from './private-files.js';
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

/**
 * A consistent copy of the open store at `target` (VACUUM INTO a 0640 file; synchronous, it blocks
 * the event loop while it copies). Works while the store's own file is unlinked: it reads through
 * the open handle. Throws when the copy fails its check; leaves nothing at `target` then.
 */
export function copyOpenStore(db: Db, target: string): void {
  try {
    vacuumIntoPrivate(db, target);
    const problems = checkCopy(target);
    if (problems.length > 0) throw new RestoreError('backup-corrupt', `the copy fails quick_check: ${problems.slice(0, 3).join('; ')}`, { details: { problems } });
    fsyncFile(target);
  } catch (err) {
    rmSync(target, { force: true });
    throw err;
  } finally {
    rmSync(`${target}-journal`, { force: true });
  }
}

/**
 * Writes the open store to `path` again when its file was removed (or replaced) under the running
 * agent: a copy through the handle (which still reaches the unlinked file) goes in under a
 * temporary name and is renamed over `path`; `-wal`/`-shm` left at `path` belong to the old file
 * and are removed, since SQLite would apply a stale WAL to the new file.
 */
export function saveOpenStore(db: Db, path: string): void {
  const dir = dirname(path);
  // The data directory itself, if it went too; an existing one is left as it is.
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const tmp = join(dir, `.${basename(path)}.save.tmp`);
  try {
    copyOpenStore(db, tmp);
    for (const f of [`${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
    renameSync(tmp, path);
    fsyncDir(dir);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function fsyncFile(path: string): void {
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

/**
 * PRAGMA integrity_check of a live store through a read-only connection of its own (WAL: it reads
 * a consistent snapshot while the agent goes on writing); what it finds, `ok` left out. A file
 * SQLite cannot open is a problem too.
 */
export function integrityCheck(path: string): string[] {
  let db: Db | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    return (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).filter((x) => x !== 'ok');
  } catch (err) {
    return [errorMessage(err)];
  } finally {
    db?.close();
  }
}

/** integrityCheck() in a worker thread (the monthly's full check): the agent's loop goes on meanwhile. */
export function integrityCheckOffThread(path: string): Promise<string[]> {
  return offThread(path, 'integrity', () => integrityCheck(path));
}

/**
 * checkCopy() and the copy's fsync in a worker thread: the same verdict without blocking the
 * event loop for the length of a quick_check of the whole file. Falls back to doing it here when
 * a worker cannot be started.
 */
export function checkCopyOffThread(path: string): Promise<string[]> {
  return offThread(path, 'copy', () => {
    const problems = checkCopy(path);
    if (problems.length === 0) fsyncFile(path);
    return problems;
  });
}

/**
 * quick_check of the live store in a worker thread through a read-only connection of its own;
 * null when it could not be checked there (no worker, an error that is not corruption, such as a
 * busy file): the caller then checks on its own connection, so a failure to check is never taken
 * for a damaged store.
 */
export function quickCheckOffThread(path: string): Promise<string[] | null> {
  return offThread<string[] | null>(path, 'quick', () => null, () => null);
}

function offThread<T = string[]>(path: string, mode: 'copy' | 'integrity' | 'quick', here: () => T, failed: (why: string) => T = (why) => [why] as T): Promise<T> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./check-copy-worker.js', import.meta.url), { workerData: { path, mode } });
    } catch {
      resolve(here());
      return;
    }
    let done = false;
    worker.once('message', (problems: T) => {
      done = true;
      resolve(problems);
    });
    worker.once('error', (err) => {
      if (!done) resolve(failed(errorMessage(err)));
      done = true;
    });
    worker.once('exit', (code) => {
      if (!done) resolve(failed(`the check of ${path} ended without a verdict (worker exit ${code})`));
      done = true;
    });
  });
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
    privateDir(dir);
    // Created 0640 first: db.backup() would create it with the umask's mode (0644).
    createPrivateFile(tmp);
    await opts.db.backup(tmp);
    // Off the event loop: a large store's quick_check takes long enough to delay everything else.
    const problems = await checkCopyOffThread(tmp);
    if (problems.length > 0) throw new RestoreError('backup-corrupt', `the backup copy fails quick_check: ${problems.slice(0, 3).join('; ')}`, { details: { problems } });
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
      // Not copyFileSync: the copy would keep the backup's mode, and an old backup may be 0644.
      copyPrivate(b.path, tmp);
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
