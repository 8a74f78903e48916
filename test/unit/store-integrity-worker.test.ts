/**
 * The monthly's full store check off the event loop (recovery/store-backup.ts
 * integrityCheckOffThread): integrity_check of the live store in a worker thread, through a
 * read-only connection of its own: it passes a sound store that the agent's connection holds open
 * with writes still in its WAL, finds a damaged one, and the event loop keeps turning meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../lib/sqlite.js';
import { integrityCheckOffThread } from '../../recovery/store-backup.js';
import { loopTurnsDuring } from '../helpers/util.js';

function store(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'integrity-')), 'agent.db');
  const db = openDatabase(path);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 3000; i++) ins.run(`value ${i} ${'x'.repeat(200)}`);
  })();
  db.close();
  return path;
}

test('integrity_check in a worker: a sound store in use passes, and the loop turns while it runs', async () => {
  const path = store();
  const live = openDatabase(path);
  live.prepare('INSERT INTO t (v) VALUES (?)').run('in the WAL only');
  const { value: problems, turns: ticks } = await loopTurnsDuring(() => integrityCheckOffThread(path));
  assert.deepEqual(problems, []);
  assert.ok(ticks > 1, `the event loop turned ${ticks} times during the check`);
  // The agent's connection is untouched: it goes on writing.
  live.prepare('INSERT INTO t (v) VALUES (?)').run('after');
  live.close();
});

test('integrity_check in a worker finds a damaged store', async () => {
  const path = store();
  // Garbage over pages in the middle of the file (the table's and the index's b-trees).
  const fd = openSync(path, 'r+');
  for (const page of [20, 40, 60, 80]) writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, page * 4096 + 100);
  closeSync(fd);
  const problems = await integrityCheckOffThread(path);
  assert.ok(problems.length > 0, 'problems found');
});
