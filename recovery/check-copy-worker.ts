/**
 * A worker thread's entry (recovery/store-backup.ts checkCopyOffThread, integrityCheckOffThread):
 * quick_check of a copy and its fsync, or integrity_check of the live store through a read-only
 * connection of its own, off the agent's event loop, which a large store would otherwise block
 * for hundreds of milliseconds to seconds (bench --only maintenance measured the admin socket's
 * answers).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkCopy, fsyncFile, integrityCheck } from './store-backup.js';

const { path, mode } = workerData as { path: string; mode?: 'copy' | 'integrity' };
let problems: string[];
try {
  if (mode === 'integrity') problems = integrityCheck(path);
  else {
    problems = checkCopy(path);
    if (problems.length === 0) fsyncFile(path);
  }
} catch (err) {
  problems = [err instanceof Error ? err.message : String(err)];
}
parentPort?.postMessage(problems);
