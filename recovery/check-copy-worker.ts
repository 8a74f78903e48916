/**
 * A worker thread's entry (recovery/store-backup.ts checkCopyOffThread): quick_check of a copy
 * and its fsync, off the agent's event loop, which a large store would otherwise block for
 * hundreds of milliseconds (bench --only maintenance measured the admin socket's answers).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkCopy, fsyncFile } from './store-backup.js';

const path = (workerData as { path: string }).path;
let problems: string[];
try {
  problems = checkCopy(path);
  if (problems.length === 0) fsyncFile(path);
} catch (err) {
  problems = [err instanceof Error ? err.message : String(err)];
}
parentPort?.postMessage(problems);
