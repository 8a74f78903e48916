/**
 * A worker thread's entry (recovery/restore-test.ts restoreTestOffThread): the restore test off
 * the agent's event loop. Copying a 200 MB backup and its integrity_check took 4 s on the loop
 * (bench --only maintenance: the admin socket stopped answering meanwhile). The live store is
 * opened read-only here for its row counts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { errorMessage } from '../lib/errors.js';
import { restoreTest, type RestoreTestReport } from './restore-test.js';

const o = workerData as { dataDir: string; livePath: string | undefined; configs: string[] };
let report: RestoreTestReport | { error: string };
let live: Database.Database | undefined;
try {
  try {
    live = o.livePath ? new Database(o.livePath, { readonly: true, fileMustExist: true }) : undefined;
  } catch {
    live = undefined; // no row counts to compare with; the restore test itself still runs
  }
  report = restoreTest({ dataDir: o.dataDir, live, configs: o.configs });
} catch (err) {
  report = { error: errorMessage(err) };
} finally {
  live?.close();
}
parentPort?.postMessage(report);
