/**
 * lib/loops.ts LoopMonitor with a fake clock: liveness is decided by `now()` alone, so the test
 * moves time by hand. The event-loop histogram is never started here, so lag is 0 throughout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../lib/clock.js';
import { LoopMonitor } from '../../lib/loops.js';

/** A Clock whose time only moves when the test says so; timers are not used by LoopMonitor. */
function fakeClock(start = 1_000_000): Clock & { advance(ms: number): void } {
  let t = start;
  const noTimers = (): never => {
    throw new Error('LoopMonitor is not expected to use timers');
  };
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    setTimeout: noTimers,
    clearTimeout: () => undefined,
    setInterval: noTimers,
    clearInterval: () => undefined,
  };
}

test('a loop that keeps ticking within its deadline is healthy', () => {
  const clock = fakeClock();
  const m = new LoopMonitor({ clock, maxLagMs: 1000 });
  m.register('wms-link', 5000);
  for (let i = 0; i < 10; i++) {
    clock.advance(4000);
    m.tick('wms-link');
    assert.deepEqual(m.check(), { ok: true, eventLoopLagMs: 0, stale: [] });
  }
  // Right at the deadline still counts as on time.
  clock.advance(5000);
  assert.equal(m.check().ok, true);
});

test('a loop past its deadline makes check() not ok and is named in stale', () => {
  const clock = fakeClock();
  const m = new LoopMonitor({ clock, maxLagMs: 1000 });
  m.register('wms-link', 5000);
  m.register('outbox', 60_000);
  clock.advance(3000);
  m.tick('wms-link');
  clock.advance(5001);
  const h = m.check();
  assert.equal(h.ok, false);
  assert.deepEqual(h.stale, [{ name: 'wms-link', ageMs: 5001 }]);

  // Registration counts as the first tick: a loop that never ticked goes stale after its deadline.
  clock.advance(60_000 - 8001 + 1);
  assert.deepEqual(
    m.check().stale.map((s) => s.name),
    ['wms-link', 'outbox'],
  );

  // A tick makes it healthy again.
  m.tick('wms-link');
  m.tick('outbox');
  assert.deepEqual(m.check(), { ok: true, eventLoopLagMs: 0, stale: [] });
});

test('unregister removes a loop, stale or not; a tick for an unknown name registers nothing', () => {
  const clock = fakeClock();
  const m = new LoopMonitor({ clock, maxLagMs: 1000 });
  m.register('a', 1000);
  m.register('b', 1000);
  clock.advance(2000);
  assert.deepEqual(
    m.check().stale.map((s) => s.name),
    ['a', 'b'],
  );
  m.unregister('a');
  assert.deepEqual(
    m.check().stale.map((s) => s.name),
    ['b'],
  );
  m.unregister('b');
  assert.deepEqual(m.check(), { ok: true, eventLoopLagMs: 0, stale: [] });

  m.tick('never-registered');
  clock.advance(10_000_000);
  assert.equal(m.check().ok, true);
});

test('start() and stop() leave the loop checks working', () => {
  const clock = fakeClock();
  const m = new LoopMonitor({ clock, maxLagMs: 60_000 });
  m.start();
  try {
    m.register('a', 1000);
    clock.advance(500);
    assert.equal(m.check().ok, true);
    clock.advance(1000);
    assert.deepEqual(m.check().stale, [{ name: 'a', ageMs: 1500 }]);
  } finally {
    m.stop();
  }
  assert.equal(m.check().eventLoopLagMs, 0);
});

test('check(periodMs): a caller on a fixed period that runs late by more than maxLagMs sees lag, from the monotonic clock alone', () => {
  const clock = fakeClock();
  let mono = 0;
  const m = new LoopMonitor({ clock, maxLagMs: 1000, monotonic: () => mono });
  // The first call has nothing to compare with.
  assert.deepEqual(m.check(500), { ok: true, eventLoopLagMs: 0, stale: [] });
  mono += 520;
  assert.equal(m.check(500).ok, true);
  // A 3 s block: the 500 ms timer fires 2.5 s late; the histogram may not have sampled yet.
  mono += 3000;
  assert.deepEqual(m.check(500), { ok: false, eventLoopLagMs: 2500, stale: [] });
  // On time again: healthy at once.
  mono += 500;
  assert.equal(m.check(500).ok, true);
  // Exactly maxLagMs late still counts as healthy.
  mono += 1500;
  assert.equal(m.check(500).ok, true);
  // A wall-clock jump is not lag: only the monotonic clock counts.
  clock.advance(-3_600_000);
  mono += 500;
  assert.equal(m.check(500).ok, true);
  // check() without a period and peek() never judge lateness, and peek() does not move the mark.
  mono += 10_000;
  assert.equal(m.peek().ok, true);
  assert.equal(m.check().ok, true);
  mono += 500;
  assert.equal(m.check(500).ok, true);
});
