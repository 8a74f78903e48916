import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Outbox, OUTBOX_MIGRATIONS, type OutboxSender } from '../../agent/outbox.js';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';

function setup(limits = { maxMessages: 1000, maxBytes: 1 << 20, inflight: 4 }): { db: Db; outbox: Outbox; path: string } {
  const path = join(mkdtempSync(join(tmpdir(), 'outbox-')), 'a.db');
  const db = openDatabase(path, { migrations: [OUTBOX_MIGRATIONS] });
  const outbox = new Outbox({ db, logger: silentLogger(), clock: systemClock, limits });
  outbox.open();
  return { db, outbox, path };
}

/** A sender that records publishes and lets the test acknowledge them. */
function fakeSender(): OutboxSender & { sent: { topic: string; payload: string; cb: (err?: Error) => void }[] } {
  const sent: { topic: string; payload: string; cb: (err?: Error) => void }[] = [];
  return { sent, publish: (topic, payload, _o, cb) => sent.push({ topic, payload: payload.toString(), cb }) };
}

test('messages are committed before they are sent, sent in order within the window, deleted on ack', () => {
  const { db, outbox } = setup();
  const s = fakeSender();
  outbox.attach(s);
  for (let i = 0; i < 10; i++) outbox.enqueue({ topic: 't', payload: `m${i}`, kind: 'event' });
  assert.equal(s.sent.length, 0, 'nothing is sent before the buffer is committed');
  outbox.flush();
  assert.equal((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n, 10);
  assert.deepEqual(s.sent.map((x) => x.payload), ['m0', 'm1', 'm2', 'm3'], 'the inflight window is 4');
  for (const x of s.sent.slice(0, 4)) x.cb();
  assert.deepEqual(s.sent.map((x) => x.payload).slice(4), ['m4', 'm5', 'm6', 'm7']);
  outbox.flush();
  // Acks are deleted in a batch on the next turn; close() forces it through detach().
  outbox.close();
  assert.equal((db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n, 6);
});

test('after a reconnect everything unacknowledged is sent again from the lowest seq', () => {
  const { outbox } = setup();
  const a = fakeSender();
  outbox.attach(a);
  for (let i = 0; i < 6; i++) outbox.enqueue({ topic: 't', payload: `m${i}`, kind: 'event' });
  outbox.flush();
  a.sent[1]!.cb();
  a.sent[0]!.cb(new Error('connection lost'));
  outbox.detach();
  const b = fakeSender();
  outbox.attach(b);
  assert.deepEqual(b.sent.map((x) => x.payload), ['m0', 'm2', 'm3', 'm4'], 'm1 was acknowledged; the rest comes again in order');
  a.sent[2]!.cb(); // a late callback from the old connection changes nothing
  assert.equal(outbox.stats().inflight, 4);
});

test('the outbox survives a reopen with its rows and continues the sequence', () => {
  const { db, outbox, path } = setup();
  outbox.enqueue({ topic: 't', payload: 'a', kind: 'event' });
  outbox.enqueue({ topic: 't', payload: 'b', kind: 'status', retain: true });
  outbox.close();
  db.close();
  const db2 = openDatabase(path, { migrations: [OUTBOX_MIGRATIONS] });
  const o2 = new Outbox({ db: db2, logger: silentLogger(), clock: systemClock, limits: { maxMessages: 100, maxBytes: 1 << 20, inflight: 10 } });
  o2.open();
  assert.equal(o2.stats().depth, 2);
  assert.equal(o2.enqueueNow({ topic: 't', payload: 'c', kind: 'event' }), 3);
  const s = fakeSender();
  o2.attach(s);
  assert.deepEqual(s.sent.map((x) => x.payload), ['a', 'b', 'c']);
  db2.close();
});

test('when full, oldest telemetry goes first, then events; statuses are never dropped', () => {
  const { db, outbox } = setup({ maxMessages: 100, maxBytes: 1 << 20, inflight: 4 });
  for (let i = 0; i < 40; i++) outbox.enqueue({ topic: 's', payload: `s${i}`, kind: 'status' });
  for (let i = 0; i < 40; i++) outbox.enqueue({ topic: 'e', payload: `e${i}`, kind: 'event' });
  for (let i = 0; i < 40; i++) outbox.enqueue({ topic: 'm', payload: `m${i}`, kind: 'telemetry' });
  outbox.flush();
  const kinds = (k: string): string[] => (db.prepare('SELECT payload FROM outbox WHERE kind = ? ORDER BY seq').all(k) as { payload: Buffer }[]).map((r) => r.payload.toString());
  assert.equal(kinds('status').length, 40);
  assert.equal(kinds('event').length, 40);
  assert.deepEqual(kinds('telemetry'), Array.from({ length: 20 }, (_, i) => `m${i + 20}`));
  for (let i = 0; i < 100; i++) outbox.enqueue({ topic: 's', payload: `x${i}`, kind: 'status' });
  outbox.flush();
  assert.equal(kinds('status').length, 140, 'statuses stay even past the bound');
  assert.equal(kinds('telemetry').length + kinds('event').length, 0);
  assert.equal(outbox.stats().dropped, 80);
});

test('the byte bound is enforced as well as the count', () => {
  const { outbox } = setup({ maxMessages: 10_000, maxBytes: 10_000, inflight: 4 });
  for (let i = 0; i < 50; i++) outbox.enqueue({ topic: 'e', payload: 'x'.repeat(1000), kind: 'event' });
  outbox.flush();
  const st = outbox.stats();
  assert.ok(st.bytes <= 10_000, `bytes ${st.bytes}`);
  assert.equal(st.depth, 10);
});
