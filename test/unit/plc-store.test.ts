import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ForwardStore, type StoredInput } from '../../plc-bridge/store.js';
import { silentLogger } from '../../lib/log.js';
import type { Clock } from '../../lib/clock.js';
import { tempDir } from '../helpers/util.js';

/** A clock whose `now` the test moves; the store uses no timers of the clock. */
function fakeClock(start = 1_700_000_000_000): Clock & { t: number } {
  const c = {
    t: start,
    now: () => c.t,
    setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
    clearTimeout: (t: NodeJS.Timeout | undefined) => clearTimeout(t),
    setInterval: (fn: () => void, ms: number) => setInterval(fn, ms),
    clearInterval: (t: NodeJS.Timeout | undefined) => clearInterval(t),
  };
  return c;
}

function openStore(path: string, o: { maxBytes?: number; maxAgeSec?: number; clock?: Clock } = {}): ForwardStore {
  const s = new ForwardStore({ path, maxBytes: o.maxBytes ?? 1 << 20, maxAgeSec: o.maxAgeSec ?? 3600, logger: silentLogger(), ...(o.clock ? { clock: o.clock } : {}) });
  s.open();
  return s;
}

const data = (i: number, size = 0): StoredInput => ({ topic: 'edge/gw/plc/d/g', payload: JSON.stringify({ seq: i, pad: 'x'.repeat(size) }), qos: 1, retain: false, kind: 'data' });
const result = (id: string, size = 0): StoredInput => ({
  topic: `edge/gw/res/${id}`,
  payload: JSON.stringify({ id, status: 'successful', pad: 'x'.repeat(size) }),
  qos: 1,
  retain: true,
  kind: 'result',
});
const seqOf = (payload: string): number => (JSON.parse(payload) as { seq: number }).seq;

test('rows come back oldest first, page by id, and leave on ack', () => {
  const s = openStore(join(tempDir('plc-store'), 'b.db'));
  for (let i = 1; i <= 10; i++) s.push(data(i));
  s.push(result('r1'));
  const first = s.peek(4);
  assert.deepEqual(first.map((r) => seqOf(r.payload)), [1, 2, 3, 4]);
  assert.deepEqual(first[0] && { qos: first[0].qos, retain: first[0].retain, kind: first[0].kind }, { qos: 1, retain: false, kind: 'data' });
  const after = s.peek(100, first[3]!.id);
  assert.equal(after.length, 7);
  assert.equal(after.at(-1)?.kind, 'result');
  assert.equal(after.at(-1)?.retain, true);
  s.ack(first.map((r) => r.id));
  s.ack([first[0]!.id]); // twice: nothing more happens
  assert.deepEqual(s.peek(100).map((r) => r.kind === 'data' ? seqOf(r.payload) : r.kind), [5, 6, 7, 8, 9, 10, 'result']);
  assert.equal(s.stats().depth, 7);
  s.close();
});

test('push is buffered until the next tick or flush(); stats count the buffer', async () => {
  const path = join(tempDir('plc-store'), 'b.db');
  const s = openStore(path);
  const other = openStore(path);
  s.push(data(1));
  assert.equal(other.stats().depth, 0, 'not committed yet');
  assert.equal(s.stats().depth, 1);
  await new Promise((r) => setImmediate(r));
  assert.equal(other.stats().depth, 1, 'committed on the next turn of the event loop');
  s.push(data(2));
  s.flush();
  assert.equal(other.stats().depth, 2);
  s.close();
  other.close();
});

test('the byte bound drops the oldest data first, counts it, and never drops results', () => {
  const s = openStore(join(tempDir('plc-store'), 'b.db'), { maxBytes: 10_000 });
  s.push(result('early'));
  for (let i = 1; i <= 40; i++) s.push(data(i, 900));
  s.flush();
  const st = s.stats();
  assert.ok(st.bytes <= 10_000, `bytes ${st.bytes} within the bound`);
  assert.ok(st.dropped > 0 && st.droppedBytes > 0);
  const rows = s.peek(1000);
  assert.equal(rows[0]?.kind, 'result', 'the result is still there, first');
  const seqs = rows.filter((r) => r.kind === 'data').map((r) => seqOf(r.payload));
  assert.equal(seqs.at(-1), 40, 'the newest data is kept');
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => 41 - seqs.length + i), 'what remains is the newest, contiguous, in order');
  assert.equal(st.dropped, 40 - seqs.length);
  assert.equal(st.depth, rows.length);

  // Results alone over the bound stay.
  for (let i = 0; i < 30; i++) s.push(result(`r${i}`, 500));
  s.flush();
  assert.ok(s.stats().bytes > 10_000, 'over the bound with results only');
  assert.equal(s.peek(1000).filter((r) => r.kind === 'result').length, 31);
  assert.equal(s.peek(1000).filter((r) => r.kind === 'data').length, 0, 'all data gave way to results');
  s.close();
});

test('the age bound drops data older than maxAgeSec, oldest first, and counts it', () => {
  const clock = fakeClock();
  const s = openStore(join(tempDir('plc-store'), 'b.db'), { maxAgeSec: 60, clock });
  for (let i = 1; i <= 5; i++) s.push(data(i));
  s.push(result('r'));
  s.flush();
  clock.t += 30_000;
  for (let i = 6; i <= 8; i++) s.push(data(i));
  s.flush();
  assert.equal(s.stats().oldestAgeMs, 30_000);
  clock.t += 40_000; // the first five are 70 s old, the last three 40 s
  const rows = s.peek(100);
  assert.deepEqual(rows.map((r) => (r.kind === 'data' ? seqOf(r.payload) : r.kind)), ['result', 6, 7, 8]);
  const st = s.stats();
  assert.equal(st.dropped, 5);
  assert.equal(st.depth, 4);
  s.close();
});

test('rows, counters and write ids persist across a reopen; ids keep growing after the table empties', () => {
  const path = join(tempDir('plc-store'), 'b.db');
  const s = openStore(path, { maxBytes: 3000 });
  for (let i = 1; i <= 10; i++) s.push(data(i, 500));
  s.push(result('r'));
  assert.deepEqual(s.claimWrite('w1', 'd1'), { claimed: true });
  s.recordWrite('w1', '{"status":"successful"}', true);
  s.close();

  const s2 = openStore(path, { maxBytes: 3000 });
  const before = s2.stats();
  assert.ok(before.dropped > 0);
  const rows = s2.peek(100);
  assert.equal(before.depth, rows.length);
  assert.deepEqual(s2.claimWrite('w1', 'd1'), { claimed: false, lastMessage: '{"status":"successful"}' });
  const maxId = Math.max(...rows.map((r) => r.id));
  s2.ack(rows.map((r) => r.id));
  assert.equal(s2.stats().depth, 0);
  assert.equal(s2.stats().bytes, 0);
  s2.push(data(99));
  const next = s2.peek(10);
  assert.ok(next[0]!.id > maxId, 'a cursor past the old rows still sees the new one');
  assert.equal(s2.stats().dropped, before.dropped, 'the drop counter survived');
  s2.close();
});

test('claimWrite is atomic across two connections to the same file', () => {
  const path = join(tempDir('plc-store'), 'b.db');
  const a = openStore(path);
  const b = openStore(path);
  const ids = Array.from({ length: 200 }, (_, i) => `w-${i}`);
  let wonA = 0;
  let wonB = 0;
  for (const id of ids) {
    // Both instances race for every id, in alternating order.
    const [first, second] = ids.indexOf(id) % 2 === 0 ? [a, b] : [b, a];
    const r1 = first.claimWrite(id, 'd');
    const r2 = second.claimWrite(id, 'd');
    assert.equal(r1.claimed, true);
    assert.equal(r2.claimed, false, `${id} claimed once only`);
    if (first === a) wonA++;
    else wonB++;
  }
  assert.equal(wonA + wonB, ids.length);
  a.recordWrite('w-0', '{"status":"executing"}', false);
  assert.deepEqual(b.claimWrite('w-0', 'd'), { claimed: false, lastMessage: '{"status":"executing"}' });
  assert.deepEqual(b.claimWrite('w-1', 'd'), { claimed: false }, 'claimed but no status recorded yet');
  a.close();
  b.close();
});

test('pruneWrites forgets ids not touched for the given age', () => {
  const clock = fakeClock();
  const s = openStore(join(tempDir('plc-store'), 'b.db'), { clock });
  s.claimWrite('old', 'd');
  clock.t += 10_000;
  s.claimWrite('new', 'd');
  assert.equal(s.pruneWrites(5_000), 1);
  assert.deepEqual(s.claimWrite('old', 'd'), { claimed: true }, 'forgotten, so claimable again');
  assert.equal(s.claimWrite('new', 'd').claimed, false);
  s.close();
});

test('the counters stay right when two connections push and ack the same file', () => {
  const path = join(tempDir('plc-store'), 'b.db');
  const a = openStore(path);
  const b = openStore(path);
  for (let i = 0; i < 20; i++) (i % 2 ? a : b).push(data(i));
  a.flush();
  b.flush();
  const rows = a.peek(100);
  assert.equal(rows.length, 20);
  a.ack(rows.slice(0, 15).map((r) => r.id));
  b.ack(rows.slice(10).map((r) => r.id)); // overlaps a's acks: already gone, not counted twice
  assert.equal(a.stats().depth, 0);
  assert.equal(b.stats().bytes, 0);
  a.close();
  b.close();
});

test('push after close fails at the caller', () => {
  const s = openStore(join(tempDir('plc-store'), 'b.db'));
  s.close();
  assert.throws(() => s.push(data(1)));
});
