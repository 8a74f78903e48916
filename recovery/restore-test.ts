/**
 * The `restore-test` action (maintenance-monthly): proves the newest backups can be restored,
 * without touching the live files. The newest store backup (recovery/store-backup.ts) is copied
 * into a fresh temporary directory, opened, and must pass integrity_check; its tables' row counts
 * are set beside the live store's. The newest known-good copy of each configuration file
 * (recovery/known-good.ts) is copied there too and must match its sidecar's sha256 and parse as
 * YAML. Then the directory is removed.
 *
 * INVARIANTS
 * - The live store and configuration are only read (the live store through the agent's own open
 *   handle, row counts only); nothing is written outside the temporary directory.
 * - The temporary directory is removed whatever happens (a throw, a damaged copy); `cleaned`
 *   says whether it is gone.
 * - It lives under `{dataDir}/tmp/`: on the data disk, not in a RAM-backed /tmp, since a store
 *   backup can be hundreds of MB; the daily cleanup removes one a power cut left behind.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { parse } from 'yaml';
import { errorMessage } from '../lib/errors.js';
import type { Db } from '../lib/sqlite.js';
import { listKnownGood, sha256Hex } from './known-good.js';
import { copyPrivate } from './private-files.js';
import { listStoreBackups } from './store-backup.js';

export interface TableCount {
  table: string;
  restored: number;
  live: number | null;
}

export interface RestoreTestReport {
  ok: boolean;
  tempDir: string;
  cleaned: boolean;
  store: { backup: string; backupAt: string; bytes: number; integrity: string[]; tables: TableCount[]; missingTables: string[] } | null;
  configs: { source: string; copy: string | null; ok: boolean; sameAsLive: boolean | null; problem?: string }[];
  problems: string[];
  notes: string[];
}

function tablesOf(db: Db): string[] {
  return db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .all()
    .map((r) => r.name);
}

function countOf(db: Db, table: string): number {
  return (db.prepare(`SELECT count(*) AS n FROM "${table.replace(/"/g, '""')}"`).get() as { n: number }).n;
}

/** Restores the newest backups into a temporary directory, checks them, and removes the directory. */
export function restoreTest(opts: { dataDir: string; live: Db | undefined; configs: readonly string[] }): RestoreTestReport {
  const problems: string[] = [];
  const notes: string[] = [];
  const parent = join(opts.dataDir, 'tmp');
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(join(parent, 'restore-test-'));
  let store: RestoreTestReport['store'] = null;
  const configs: RestoreTestReport['configs'] = [];
  try {
    const newest = listStoreBackups(opts.dataDir)[0];
    if (!newest) problems.push('there is no backup of the store to restore');
    else {
      const target = join(dir, 'agent.db');
      copyPrivate(newest.path, target);
      let db: Db | undefined;
      try {
        db = new Database(target, { fileMustExist: true });
        const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).filter((x) => x !== 'ok');
        const names = tablesOf(db);
        const liveNames = opts.live ? tablesOf(opts.live) : [];
        const tables = names.map((t) => ({ table: t, restored: countOf(db!, t), live: opts.live && liveNames.includes(t) ? countOf(opts.live, t) : null }));
        const missing = liveNames.filter((t) => !names.includes(t));
        store = { backup: newest.path, backupAt: new Date(newest.mtimeMs).toISOString(), bytes: statSync(target).size, integrity: integrity.slice(0, 20), tables, missingTables: missing };
        if (integrity.length > 0) problems.push(`the restored store fails integrity_check: ${integrity.slice(0, 3).join('; ')}`);
        if (names.length === 0) problems.push('the restored store has no tables');
        if (names.length > 0 && !names.includes('schema_migrations')) problems.push('the restored store has no schema_migrations table: it is not an agent store');
        if (missing.length > 0) notes.push(`tables the live store has and the backup does not (added since): ${missing.join(', ')}`);
      } catch (err) {
        problems.push(`the restored store does not open: ${errorMessage(err)}`);
      } finally {
        db?.close();
      }
    }
    for (const source of opts.configs) {
      const copy = listKnownGood(opts.dataDir, source)[0];
      if (!copy) {
        notes.push(`${source}: no known-good copy yet`);
        configs.push({ source, copy: null, ok: true, sameAsLive: null });
        continue;
      }
      const target = join(dir, basename(copy.path));
      try {
        copyPrivate(copy.path, target);
        const bytes = readFileSync(target);
        const sha = sha256Hex(bytes);
        let problem: string | undefined;
        if (copy.sha256 === undefined) problem = 'its sidecar (.sha256) is missing or unreadable';
        else if (copy.sha256 !== sha) problem = `its content does not match its sidecar (sha256 ${sha.slice(0, 12)}, expected ${copy.sha256.slice(0, 12)})`;
        else parse(bytes.toString('utf8'));
        let sameAsLive: boolean | null = null;
        try {
          sameAsLive = sha256Hex(readFileSync(source)) === sha;
        } catch {
          sameAsLive = null;
        }
        configs.push({ source, copy: copy.path, ok: problem === undefined, sameAsLive, ...(problem ? { problem } : {}) });
        if (problem) problems.push(`${copy.path}: ${problem}`);
      } catch (err) {
        configs.push({ source, copy: copy.path, ok: false, sameAsLive: null, problem: errorMessage(err) });
        problems.push(`${copy.path}: ${errorMessage(err)}`);
      }
    }
  } catch (err) {
    problems.push(errorMessage(err));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const cleaned = !existsSync(dir);
  if (!cleaned) problems.push(`the temporary directory ${dir} could not be removed`);
  return { ok: problems.length === 0, tempDir: dir, cleaned, store, configs, problems, notes };
}

/**
 * restoreTest() in a worker thread (restore-test-worker.ts), the live store read through its own
 * read-only handle at `livePath`: the same report without blocking the event loop for the copy
 * and the integrity_check. Falls back to running here when a worker cannot be started.
 */
export function restoreTestOffThread(opts: { dataDir: string; livePath: string | undefined; live: Db | undefined; configs: readonly string[] }): Promise<RestoreTestReport> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./restore-test-worker.js', import.meta.url), { workerData: { dataDir: opts.dataDir, livePath: opts.livePath, configs: [...opts.configs] } });
    } catch {
      resolve(restoreTest({ dataDir: opts.dataDir, live: opts.live, configs: opts.configs }));
      return;
    }
    let done = false;
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      resolve({ ok: false, tempDir: '', cleaned: false, store: null, configs: [], problems: [why], notes: [] });
    };
    worker.once('message', (r: RestoreTestReport | { error: string }) => {
      if ('error' in r) return fail(`the restore test failed: ${r.error}`);
      done = true;
      resolve(r);
    });
    worker.once('error', (err) => fail(errorMessage(err)));
    worker.once('exit', (code) => fail(`the restore test ended without a report (worker exit ${code})`));
  });
}
