/**
 * agent/restore-wiring.ts's `restore` component on a real store in a temp directory: another
 * file put where agent.db was, under the open store, is quarantined (not overwritten), the open
 * store is written back to the path, the incident waits in pending-incidents.json and the agent
 * is asked to restart; at the stop (beforeClose) the open store is written back once more.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';
import { storePath, validateConfig } from '../../core/config.js';
import { wireRestore } from '../../agent/restore-wiring.js';
import { listPending } from '../../recovery/pending-incidents.js';
import { tempDir, waitFor } from '../helpers/util.js';

const MIGRATIONS = [{ domain: 't', migrations: [{ version: 1, up: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)' }] }];

const rows = (path: string): number => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS c FROM t').get() as { c: number }).c;
  } finally {
    db.close();
  }
};

test('a foreign file put over the open store: quarantined, the open store written back, restart asked, saved again before close', async () => {
  const dataDir = tempDir('restore-wiring');
  const config = validateConfig({ gatewayId: 'gw-rw', dataDir, mqtt: { url: 'mqtt://127.0.0.1:1' }, restore: { storeWatchIntervalMs: 100 } });
  const path = storePath(config);
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  for (let i = 0; i < 10; i++) ins.run(`ours-${i}`);
  // A copy of an older store (3 rows) put where agent.db was, the way a hand restore would.
  const other = join(dataDir, 'other.db');
  const o = openDatabase(other, { migrations: MIGRATIONS });
  for (let i = 0; i < 3; i++) o.prepare('INSERT INTO t(v) VALUES (?)').run(`theirs-${i}`);
  o.pragma('journal_mode = DELETE');
  o.close();
  const restarts: string[] = [];
  const restore = wireRestore({
    config,
    boot: { config, path: undefined, source: undefined, content: undefined },
    db,
    clock: systemClock,
    logger: silentLogger(),
    event: () => undefined,
    healthy: () => false,
    restart: (reason) => restarts.push(reason),
  });
  await restore.start();
  copyFileSync(other, `${path}.new`);
  renameSync(`${path}.new`, path);
  await waitFor(() => restarts.length > 0, { timeoutMs: 10_000, what: 'the restart asked for' });
  ins.run('after-detection');
  await restore.stop();
  restore.beforeClose();
  db.close();
  assert.equal(rows(path), 11, 'agent.db is the open store, with what was written after the detection too');
  assert.equal(statSync(path).mode & 0o777 & ~0o640, 0);
  const all = readdirSync(join(dataDir, 'quarantine'));
  const q = all.filter((n) => n.endsWith('-agent.db'));
  assert.equal(q.length, 1, 'the foreign file is kept');
  assert.equal(all.length, 1, `the open store's own -wal/-shm are not put next to it: ${all.join(', ')}`);
  assert.equal(rows(join(dataDir, 'quarantine', q[0]!)), 3, 'the foreign file as it was');
  const [inc] = listPending(dataDir);
  assert.equal(inc?.code, 'store-detached');
  assert.equal(inc?.action, 'save-open-store');
  assert.match(inc?.detail ?? '', /replaced by another file/);
  assert.ok(readFileSync(path).length > 0);
});
