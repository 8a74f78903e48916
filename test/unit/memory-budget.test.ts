import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBudget, overBudget, type MemoryExceeded } from '../../lib/memory-budget.js';
import { silentLogger } from '../../lib/log.js';
import type { Clock } from '../../lib/clock.js';

const MiB = 1024 * 1024;

/** A clock whose interval the test fires by hand. */
function manualClock(): Clock & { tick(): void; active(): boolean } {
  let fn: (() => void) | undefined;
  return {
    now: () => 0,
    setTimeout: () => setTimeout(() => undefined, 0),
    clearTimeout: (t) => clearTimeout(t),
    setInterval: (f) => {
      fn = f;
      return { unref: () => undefined } as unknown as NodeJS.Timeout;
    },
    clearInterval: () => {
      fn = undefined;
    },
    tick: () => fn?.(),
    active: () => fn !== undefined,
  };
}

function budget(samples: number[][], opts: { rssBytes?: number; heapBytes?: number; samples?: number } = {}): { b: MemoryBudget; clock: ReturnType<typeof manualClock>; fired: MemoryExceeded[] } {
  const clock = manualClock();
  const fired: MemoryExceeded[] = [];
  let i = 0;
  const b = new MemoryBudget({
    budget: { rssBytes: opts.rssBytes ?? 100 * MiB, heapBytes: opts.heapBytes ?? 50 * MiB },
    checkIntervalMs: 1000,
    clock,
    logger: silentLogger(),
    ...(opts.samples !== undefined ? { samples: opts.samples } : {}),
    memoryUsage: () => {
      const [rss, heap] = samples[Math.min(i++, samples.length - 1)] ?? [0, 0];
      return { rss: (rss ?? 0) * MiB, heapUsed: (heap ?? 0) * MiB };
    },
    onExceeded: (info) => fired.push(info),
  });
  return { b, clock, fired };
}

test('overBudget acts at the budget less the margin, per kind, and ignores a zero budget', () => {
  const b = { rssBytes: 100, heapBytes: 50 };
  assert.deepEqual(overBudget({ rss: 89, heap: 44 }, b, 0.1), []);
  assert.deepEqual(overBudget({ rss: 90, heap: 10 }, b, 0.1), ['rss']);
  assert.deepEqual(overBudget({ rss: 10, heap: 45 }, b, 0.1), ['heap']);
  assert.deepEqual(overBudget({ rss: 100, heap: 50 }, b, 0.1), ['rss', 'heap']);
  assert.deepEqual(overBudget({ rss: 1e12, heap: 1e12 }, { rssBytes: 0, heapBytes: 0 }, 0.1), []);
});

test('one spike over the threshold does not fire; two samples in a row do, once', async () => {
  const { b, clock, fired } = budget([
    [50, 10],
    [95, 10], // spike
    [50, 10],
    [95, 10],
    [96, 10],
    [99, 10],
    [99, 10],
  ]);
  await b.start();
  for (let i = 0; i < 3; i++) clock.tick();
  assert.equal(fired.length, 0, 'a single sample over the threshold must not restart the agent');
  clock.tick();
  assert.equal(fired.length, 0);
  clock.tick();
  assert.equal(fired.length, 1);
  assert.deepEqual(fired[0]?.over, ['rss']);
  assert.equal(fired[0]?.rss, 96 * MiB);
  assert.deepEqual(fired[0]?.budget, { rssBytes: 100 * MiB, heapBytes: 50 * MiB });
  assert.equal(clock.active(), false, 'the timer is released once it fired');
  b.check();
  b.check();
  assert.equal(fired.length, 1, 'onExceeded is called at most once');
  await b.stop();
});

test('the heap budget fires on its own, and the last sample is reported', async () => {
  const { b, clock, fired } = budget([[10, 46]], { samples: 1 });
  await b.start();
  clock.tick();
  assert.deepEqual(fired[0]?.over, ['heap']);
  assert.deepEqual(b.lastSample(), { rss: 10 * MiB, heap: 46 * MiB });
  await b.stop();
});

test('no budget: no timer at all; stop releases the timer', async () => {
  const off = budget([[1e6, 1e6]], { rssBytes: 0, heapBytes: 0 });
  await off.b.start();
  assert.equal(off.clock.active(), false);
  const on = budget([[1, 1]]);
  await on.b.start();
  assert.equal(on.clock.active(), true);
  await on.b.stop();
  assert.equal(on.clock.active(), false);
});

test('a throwing handler is logged, not thrown into the timer', async () => {
  const clock = manualClock();
  const b = new MemoryBudget({
    budget: { rssBytes: 20 * MiB, heapBytes: 0 },
    checkIntervalMs: 1000,
    samples: 1,
    clock,
    logger: silentLogger(),
    memoryUsage: () => ({ rss: 30 * MiB, heapUsed: 0 }),
    onExceeded: () => {
      throw new Error('boom');
    },
  });
  await b.start();
  assert.doesNotThrow(() => clock.tick());
});
