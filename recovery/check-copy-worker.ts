/**
 * A worker thread's entry (recovery/store-backup.ts checkCopyOffThread, integrityCheckOffThread):
 * quick_check of a copy and its fsync, or integrity_check of the live store through a read-only
 * connection of its own, off the agent's event loop, which a large store would otherwise block
 * for hundreds of milliseconds to seconds (bench --only maintenance measured the admin socket's
 * answers).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { quickCheck } from '../lib/sqlite.js';
import { isCorruption } from './store-check.js';
import { checkCopy, fsyncFile, integrityCheck } from './store-backup.js';

const { path, mode } = workerData as { path: string; mode?: 'copy' | 'integrity' | 'quick' };
let problems: string[] | null;
try {
  if (mode === 'integrity') problems = integrityCheck(path);
  else if (mode === 'quick') {
    // The live store's quick_check (recovery/store-keeper.ts checkNowOffThread): only corruption
    // is a verdict; any other error (busy, cannot open) is null: the keeper checks on its own connection.
    try {
      const db = new Database(path, { readonly: true, fileMustExist: true });
      try {
        db.pragma('busy_timeout = 5000');
        problems = quickCheck(db);
      } finally {
        db.close();
      }
    } catch (err) {
      problems = isCorruption(err) ? [String(err)] : null;
    }
  }
  else {
    problems = checkCopy(path);
    if (problems.length === 0) fsyncFile(path);
  }
} catch (err) {
  problems = mode === 'quick' ? null : [err instanceof Error ? err.message : String(err)];
}
parentPort?.postMessage(problems);
