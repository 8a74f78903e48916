/**
 * plc-bridge/report.ts: report by exception with deadbands, the quality of values (good, stale,
 * bad) from read outcomes, and the periodic full report. Time is plain numbers (no clock).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedTag, TagType } from '../../plc-bridge/config.js';
import type { Value } from '../../plc-bridge/codec.js';
import { GroupReporter, type CycleInput, type TagValue } from '../../plc-bridge/report.js';

function tag(name: string, type: TagType = 'float32', extra: Partial<ResolvedTag> = {}): ResolvedTag {
  return { name, area: 'holding', start: 0, count: 2, type, order: 'ABCD', scale: 1, offset: 0, access: 'read', deadband: 0, ...extra };
}

const T0 = Date.parse('2024-06-01T12:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

/** A cycle's input from {name: v} and {name: reason}, every good read answered at readAt (one block). */
function input(r: GroupReporter, now: number, good: Record<string, Value>, failed: Record<string, string> = {}, readAt = now): CycleInput {
  return {
    now,
    values: r.tags.map((t) => good[t.name]),
    failed: r.tags.map((t) => failed[t.name]),
    blockOf: new Uint32Array(r.tags.length),
    readAt: [readAt],
  };
}

/** One cycle at T0 + dt: good values as {name: v} (read at the cycle time), failures as {name: reason}. */
function cycle(r: GroupReporter, dt: number, good: Record<string, Value>, failed: Record<string, string> = {}): Record<string, TagValue> | undefined {
  return r.update(input(r, T0 + dt, good, failed));
}

const OPTS = { staleAfterMs: 3000, fullEveryMs: 60_000 };

test('the first cycle reports every tag; then nothing until something changes', () => {
  const r = new GroupReporter([tag('a'), tag('b', 'string'), tag('c', 'bool')], OPTS);
  assert.deepEqual(cycle(r, 0, { a: 1, b: 'x', c: false }), {
    a: { v: 1, q: 'good', ts: iso(T0) },
    b: { v: 'x', q: 'good', ts: iso(T0) },
    c: { v: false, q: 'good', ts: iso(T0) },
  });
  assert.equal(cycle(r, 100, { a: 1, b: 'x', c: false }), undefined);
  assert.deepEqual(cycle(r, 200, { a: 1, b: 'y', c: false }), { b: { v: 'y', q: 'good', ts: iso(T0 + 200) } });
  assert.deepEqual(cycle(r, 300, { a: 1, b: 'y', c: true }), { c: { v: true, q: 'good', ts: iso(T0 + 300) } });
  assert.deepEqual(cycle(r, 400, { a: 1.0001, b: 'y', c: true }), { a: { v: 1.0001, q: 'good', ts: iso(T0 + 400) } }, 'deadband 0: any change');
});

test('deadband: only moves larger than the deadband from the last REPORTED value', () => {
  const r = new GroupReporter([tag('a', 'float32', { deadband: 0.5 })], OPTS);
  cycle(r, 0, { a: 10 });
  assert.equal(cycle(r, 100, { a: 10.5 }), undefined, 'exactly the deadband is not more');
  assert.equal(cycle(r, 200, { a: 10.3 }), undefined);
  // A slow creep is reported once it is more than the deadband away from what was reported.
  assert.deepEqual(cycle(r, 300, { a: 10.51 }), { a: { v: 10.51, q: 'good', ts: iso(T0 + 300) } });
  assert.equal(cycle(r, 400, { a: 10.2 }), undefined);
  assert.deepEqual(cycle(r, 500, { a: 9.9 }), { a: { v: 9.9, q: 'good', ts: iso(T0 + 500) } }, 'downwards too');
});

test('a failed read: stale with the last good value and its own ts, then bad with v null and the reason', () => {
  const r = new GroupReporter([tag('a')], OPTS);
  cycle(r, 0, { a: 5 });
  assert.deepEqual(cycle(r, 1000, {}, { a: 'timeout' }), { a: { v: 5, q: 'stale', ts: iso(T0), reason: 'timeout' } });
  assert.equal(cycle(r, 2000, {}, { a: 'timeout' }), undefined, 'still stale: nothing new');
  assert.equal(cycle(r, 3000, {}, { a: 'timeout' }), undefined, 'staleAfterMs is inclusive');
  assert.deepEqual(cycle(r, 3001, {}, { a: 'timeout' }), { a: { v: null, q: 'bad', ts: iso(T0 + 3001), reason: 'timeout' } });
  assert.equal(cycle(r, 4000, {}, { a: 'timeout' }), undefined);
  assert.deepEqual(cycle(r, 5000, { a: 5 }), { a: { v: 5, q: 'good', ts: iso(T0 + 5000) } }, 'back to good is reported even with the same value');
});

test('the stale value is the last GOOD value even when it was not reported (inside the deadband)', () => {
  const r = new GroupReporter([tag('a', 'float32', { deadband: 1 })], OPTS);
  cycle(r, 0, { a: 5 });
  cycle(r, 100, { a: 5.5 });
  assert.deepEqual(cycle(r, 200, {}, { a: 'connection-reset' }), { a: { v: 5.5, q: 'stale', ts: iso(T0 + 100), reason: 'connection-reset' } });
});

test('a tag never read good is bad at once; a reason change is reported', () => {
  const r = new GroupReporter([tag('a'), tag('b')], OPTS);
  assert.deepEqual(cycle(r, 0, { b: 1 }, { a: 'modbus-exception' }), {
    a: { v: null, q: 'bad', ts: iso(T0), reason: 'modbus-exception' },
    b: { v: 1, q: 'good', ts: iso(T0) },
  });
  assert.equal(cycle(r, 100, { b: 1 }, { a: 'modbus-exception' }), undefined);
  assert.deepEqual(cycle(r, 200, { b: 1 }, { a: 'device-skipped' }), { a: { v: null, q: 'bad', ts: iso(T0 + 200), reason: 'device-skipped' } });
});

test('decode-error (NaN from the PLC) is bad at once, without a stale period', () => {
  const r = new GroupReporter([tag('a')], OPTS);
  cycle(r, 0, { a: 5 });
  assert.deepEqual(cycle(r, 100, {}, { a: 'decode-error' }), { a: { v: null, q: 'bad', ts: iso(T0 + 100), reason: 'decode-error' } });
});

test('a tag in neither map counts as failed (invalid-response): nothing is made up', () => {
  const r = new GroupReporter([tag('a')], OPTS);
  cycle(r, 0, { a: 5 });
  assert.deepEqual(cycle(r, 100, {}), { a: { v: 5, q: 'stale', ts: iso(T0), reason: 'invalid-response' } });
});

test('every value is sent again once fullEveryMs has passed since it was last reported', () => {
  const r = new GroupReporter([tag('a'), tag('b')], { staleAfterMs: 3000, fullEveryMs: 10_000 });
  cycle(r, 0, { a: 1, b: 1 });
  assert.equal(cycle(r, 5000, { a: 1, b: 1 }), undefined);
  cycle(r, 6000, { a: 1, b: 2 });
  assert.deepEqual(cycle(r, 10_000, { a: 1, b: 2 }), { a: { v: 1, q: 'good', ts: iso(T0 + 10_000) } }, 'a is due, b was reported at 6000');
  assert.deepEqual(cycle(r, 16_000, { a: 1, b: 2 }), { b: { v: 2, q: 'good', ts: iso(T0 + 16_000) } });
  // Bad values are repeated too (a PLC that answers with an exception: a tag never read that
  // fails without an answer is not reported at all, see below).
  const bad = new GroupReporter([tag('x')], { staleAfterMs: 3000, fullEveryMs: 10_000 });
  cycle(bad, 0, {}, { x: 'modbus-exception' });
  assert.equal(cycle(bad, 9999, {}, { x: 'modbus-exception' }), undefined);
  assert.deepEqual(cycle(bad, 10_000, {}, { x: 'modbus-exception' }), { x: { v: null, q: 'bad', ts: iso(T0 + 10_000), reason: 'modbus-exception' } });
});

test('the value ts is the read time, not the cycle time', () => {
  const r = new GroupReporter([tag('a')], OPTS);
  const out = r.update(input(r, T0 + 50, { a: 3 }, {}, T0 + 37));
  assert.deepEqual(out, { a: { v: 3, q: 'good', ts: iso(T0 + 37) } });
});

test('snapshot: the current view of every tag, reported or not; write-only tags have none', () => {
  const r = new GroupReporter([tag('a', 'float32', { deadband: 10 }), tag('b'), tag('w', 'int16', { access: 'write' })], OPTS);
  assert.deepEqual(r.snapshot(), {});
  cycle(r, 0, { a: 1, b: 2, w: 9 });
  cycle(r, 100, { a: 2 }, { b: 'timeout' });
  assert.deepEqual(r.snapshot(), {
    a: { v: 2, q: 'good', ts: iso(T0 + 100) },
    b: { v: 2, q: 'stale', ts: iso(T0), reason: 'timeout' },
  });
  const snap = r.snapshot();
  snap.a!.v = 99;
  assert.equal(r.snapshot().a!.v, 2, 'a copy');
});

test('inputs are indexed by position in the configured tags (write-only ones included); each value takes its block read time', () => {
  const r = new GroupReporter([tag('w', 'int16', { access: 'write' }), tag('a'), tag('b', 'string'), tag('c')], OPTS);
  const out = r.update({
    now: T0 + 90,
    values: [undefined, 1, 'x', undefined],
    failed: [undefined, undefined, undefined, 'modbus-exception'],
    blockOf: Uint32Array.from([0, 1, 0, 0]),
    readAt: [T0 + 20, T0 + 60],
  });
  assert.deepEqual(out, {
    a: { v: 1, q: 'good', ts: iso(T0 + 60) },
    b: { v: 'x', q: 'good', ts: iso(T0 + 20) },
    c: { v: null, q: 'bad', ts: iso(T0 + 90), reason: 'modbus-exception' },
  });
});

test('a value that went bad keeps its last good value for when it comes back inside the deadband', () => {
  // Bad reports v null, but the deadband compares against the last REPORTED value, which was null:
  // coming back good is a quality change and reported whatever the value.
  const r = new GroupReporter([tag('a', 'float32', { deadband: 5 })], OPTS);
  cycle(r, 0, { a: 10 });
  assert.deepEqual(cycle(r, 100, {}, { a: 'decode-error' }), { a: { v: null, q: 'bad', ts: iso(T0 + 100), reason: 'decode-error' } });
  assert.deepEqual(cycle(r, 200, { a: 11 }), { a: { v: 11, q: 'good', ts: iso(T0 + 200) } });
  assert.equal(cycle(r, 300, { a: 12 }), undefined, 'then the deadband applies from 11');
  // A stale period after a bad one carries the last good value again.
  assert.deepEqual(cycle(r, 400, {}, { a: 'timeout' }), { a: { v: 12, q: 'stale', ts: iso(T0 + 300), reason: 'timeout' } });
});

test('update returns fresh objects: changing a published value does not change the state', () => {
  const r = new GroupReporter([tag('a')], OPTS);
  const first = cycle(r, 0, { a: 1 });
  first!.a!.v = 7;
  first!.a!.q = 'bad';
  assert.deepEqual(r.snapshot(), { a: { v: 1, q: 'good', ts: iso(T0) } });
  assert.equal(cycle(r, 100, { a: 1 }), undefined, 'the reported value is still 1, good');
});

test('a tag never read is not reported while the PLC has not answered: the first report is a real read (issue #12)', () => {
  const r = new GroupReporter([tag('a'), tag('b')], OPTS);
  // The first cycles of a session, before the Modbus connection is up: nothing to report.
  assert.equal(cycle(r, 0, {}, { a: 'not-connected', b: 'not-connected' }), undefined);
  assert.equal(cycle(r, 100, {}, { a: 'timeout', b: 'connection-refused' }), undefined);
  assert.deepEqual(r.snapshot(), {}, 'no view of a value never read');
  // The first real read reports every tag it has: good, or bad where the PLC answered with an error.
  assert.deepEqual(cycle(r, 200, { a: 1 }, { b: 'modbus-exception' }), {
    a: { v: 1, q: 'good', ts: iso(T0 + 200) },
    b: { v: null, q: 'bad', ts: iso(T0 + 200), reason: 'modbus-exception' },
  });
  // Once reported, a tag's failures are reported as before.
  assert.deepEqual(cycle(r, 300, {}, { a: 'not-connected', b: 'not-connected' }), {
    a: { v: 1, q: 'stale', ts: iso(T0 + 200), reason: 'not-connected' },
    b: { v: null, q: 'bad', ts: iso(T0 + 300), reason: 'not-connected' },
  });
});
