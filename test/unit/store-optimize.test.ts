/**
 * store-optimize's `auto` vacuum (agent/store-optimize.ts), on real SQLite files: a store with
 * incremental auto-vacuum gives its free pages back in small steps (no full rebuild); an older
 * store (auto_vacuum NONE) is rebuilt once, and converted, only when its free list is worth it,
 * and left alone otherwise with a report line that says so. The weekly procedure uses `auto`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from '../../lib/sqlite.js';
import { optimizeStore } from '../../agent/store-optimize.js';
import { loadCatalog, shippedProceduresDir } from '../../maintenance/catalog.js';
import { BUILTIN_ACTIONS } from '../../maintenance/actions.js';

/** A store of an earlier release (no auto_vacuum), WAL like the agent's, with `deleted` of 1000 rows deleted. */
function oldStore(deleted: number): string {
  const path = join(mkdtempSync(join(tmpdir(), 'store-optimize-')), 'agent.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 1000; i++) ins.run('x'.repeat(2000));
  })();
  db.prepare('DELETE FROM t WHERE id <= ?').run(deleted);
  db.close();
  return path;
}

const signal = new AbortController().signal;

test('auto on an older store with a large free list: one full VACUUM that converts it to incremental auto-vacuum; the next run is incremental', async () => {
  const db = openDatabase(oldStore(500));
  assert.equal(Number(db.pragma('auto_vacuum', { simple: true })), 0, 'an older store');
  const r = await optimizeStore(db, { vacuum: 'auto', maxCpuPct: 25, minFreePct: 10 }, signal);
  assert.match(r.message, /full VACUUM/);
  assert.match(r.message, /now has incremental auto-vacuum/);
  assert.equal(Number(db.pragma('auto_vacuum', { simple: true })), 2, 'converted');
  assert.equal(Number(db.pragma('freelist_count', { simple: true })), 0);
  assert.equal((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 500, 'no data lost');
  // Later weeks: free pages come back in small steps, no rebuild.
  db.prepare('DELETE FROM t WHERE id <= 800').run();
  const again = await optimizeStore(db, { vacuum: 'auto', maxCpuPct: 100, minFreePct: 10 }, signal);
  assert.match(again.message, /free pages given back in \d+ steps/);
  assert.ok((again.details.freedPages as number) > 0, JSON.stringify(again.details));
  assert.equal(Number(db.pragma('freelist_count', { simple: true })), 0);
  db.close();
});

test('auto on an older store with a small free list: no VACUUM, and the report says why', async () => {
  const path = oldStore(20);
  const db = openDatabase(path);
  const r = await optimizeStore(db, { vacuum: 'auto', maxCpuPct: 25, minFreePct: 10 }, signal);
  assert.match(r.message, /no VACUUM: \d+ of \d+ pages are free \([\d.]+ %, a rebuild pays from 10 %\)/);
  assert.equal(r.details.skipped, true);
  assert.equal(Number(db.pragma('auto_vacuum', { simple: true })), 0, 'left as it was');
  assert.ok(Number(db.pragma('freelist_count', { simple: true })) > 0, 'its free pages stay for now');
  db.close();
});

test('full and incremental keep working', async () => {
  const db = openDatabase(oldStore(500));
  const inc = await optimizeStore(db, { vacuum: 'incremental', maxCpuPct: 25, minFreePct: 10 }, signal);
  assert.match(inc.message, /only with vacuum: full or auto/);
  const full = await optimizeStore(db, { vacuum: 'full', maxCpuPct: 25, minFreePct: 10 }, signal);
  assert.match(full.message, /full VACUUM/);
  assert.equal(Number(db.pragma('freelist_count', { simple: true })), 0);
  // The agent's connection asks for incremental auto-vacuum when it opens the store (lib/sqlite.ts): any VACUUM applies it.
  assert.equal(Number(db.pragma('auto_vacuum', { simple: true })), 2);
  db.close();
});

test('the weekly procedure vacuums with auto (never a full rebuild of an incremental store)', () => {
  assert.ok(BUILTIN_ACTIONS['store-optimize'].with.safeParse({ vacuum: 'auto', minFreePct: 10 }).success);
  const catalog = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: join(tmpdir(), 'no-such-procedures-dir'), agentUid: process.getuid?.() ?? 0 });
  const weekly = catalog.entries.find((e) => e.id === 'maintenance-weekly')?.procedure;
  assert.ok(weekly);
  const s = weekly.steps.find((x) => x.id === 'store-optimize');
  assert.equal(s?.type === 'action' ? s.with.vacuum : undefined, 'auto');
});
