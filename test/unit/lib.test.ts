import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backoffDelay, Backoff } from '../../lib/backoff.js';
import { writeJsonAtomic, readJsonFile } from '../../lib/atomic.js';
import { openDatabase, quickCheck } from '../../lib/sqlite.js';
import { watchdogIntervalMs } from '../../lib/sdnotify.js';

test('backoff grows, is capped, and jitter stays in range', () => {
  const p = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 1 };
  assert.equal(backoffDelay(p, 0, () => 1), 100);
  assert.equal(backoffDelay(p, 3, () => 1), 800);
  assert.equal(backoffDelay(p, 10, () => 1), 1000);
  assert.equal(backoffDelay(p, 10, () => 0), 500);
  const b = new Backoff(p, () => 1);
  b.next();
  b.next();
  assert.equal(b.next(), 400);
  b.reset();
  assert.equal(b.next(), 100);
});

test('atomic JSON write replaces content and leaves no temp file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
  const f = join(dir, 's.json');
  assert.equal(readJsonFile(f), undefined);
  writeJsonAtomic(f, { a: 1 });
  writeJsonAtomic(f, { a: 2 });
  assert.deepEqual(readJsonFile(f), { a: 2 });
  assert.deepEqual(readdirSync(dir), ['s.json']);
  assert.match(readFileSync(f, 'utf8'), /"a": 2/);
});

test('sqlite opens in WAL/FULL and runs each domain migration once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'db-'));
  const sets = [{ domain: 'x', migrations: [{ version: 1, up: 'CREATE TABLE t(a)' }, { version: 2, up: 'ALTER TABLE t ADD COLUMN b' }] }];
  let db = openDatabase(join(dir, 'a.db'), { migrations: sets });
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('synchronous', { simple: true }), 2);
  db.close();
  db = openDatabase(join(dir, 'a.db'), { migrations: sets });
  db.prepare('INSERT INTO t(a, b) VALUES (1, 2)').run();
  assert.deepEqual(quickCheck(db), []);
  db.close();
});

test('watchdog interval is half of WATCHDOG_USEC and only for our pid', () => {
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000' }, 5), 10_000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '6' }, 5), undefined);
  assert.equal(watchdogIntervalMs({}, 5), undefined);
});
