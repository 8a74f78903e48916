/**
 * The poller's grid: cycles at multiples of the interval, a late timer or a slow cycle costs no
 * tick (one owed tick runs right after), only a long stall skips ahead and is counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../lib/log.js';
import { Poller, nextTick, phases, type CycleResult } from '../../plc-bridge/poller.js';
import type { GroupConfig, ResolvedTag } from '../../plc-bridge/config.js';
import { PlcError } from '../../plc-bridge/errors.js';
import { fakeClock } from '../helpers/fake-clock.js';


const tag: ResolvedTag = { name: 'a', area: 'holding', start: 0, count: 1, type: 'uint16', order: 'ABCD', scale: 1, offset: 0, access: 'read', deadband: 0 };
const group: GroupConfig = { name: 'g', intervalMs: 100, staleAfterMs: 300, tags: [tag] };

test('nextTick is the next multiple of the interval, shifted by the phase', () => {
  assert.equal(nextTick(1000, 100), 1100);
  assert.equal(nextTick(1050, 100), 1100);
  assert.equal(nextTick(1000, 1000, 250), 1250);
  assert.equal(nextTick(1250, 1000, 250), 2250);
  assert.equal(nextTick(1249, 1000, 250), 1250);
});

test('groups sharing an interval are spread evenly over it, deterministically', () => {
  const keys = [
    { key: 'a/g', intervalMs: 1000 },
    { key: 'b/g', intervalMs: 1000 },
    { key: 'c/g', intervalMs: 1000 },
    { key: 'd/g', intervalMs: 1000 },
    { key: 'a/fast', intervalMs: 100 },
  ];
  const p = phases(keys);
  assert.deepEqual([...p.entries()], [['a/g', 0], ['b/g', 250], ['c/g', 500], ['d/g', 750], ['a/fast', 0]]);
  assert.deepEqual([...phases(keys).entries()], [...p.entries()], 'the same config gives the same grid (two instances in a handover)');
});

test('cycles run on the grid; a slow read owes one tick that runs right after, none is lost', async () => {
  const clock = fakeClock(10_000);
  const ticks: number[] = [];
  let slow = 0;
  const poller = new Poller({
    group,
    maxGap: 0,
    clock,
    logger: silentLogger(),
    reader: {
      read: () =>
        new Promise((resolve) => {
          const ms = slow > 0 ? (slow--, 150) : 5;
          clock.setTimeout(() => resolve([1]), ms);
        }),
    },
    onCycle: (r: CycleResult) => ticks.push(r.tick),
  });
  poller.start();
  await clock.advance(350);
  assert.deepEqual(ticks, [10_100, 10_200, 10_300]);
  slow = 1;
  await clock.advance(400);
  assert.deepEqual(ticks.slice(3), [10_400, 10_500, 10_600, 10_700], 'the tick that came during the slow read ran after it');
  assert.equal(poller.overruns, 0);
  poller.stop();
});

test('a stall longer than two intervals skips ahead and counts the skipped ticks', async () => {
  const clock = fakeClock(20_000);
  const ticks: number[] = [];
  let stall = false;
  const poller = new Poller({
    group,
    maxGap: 0,
    clock,
    logger: silentLogger(),
    reader: { read: () => new Promise((resolve) => clock.setTimeout(() => resolve([1]), stall ? 1000 : 5)) },
    onCycle: (r: CycleResult) => ticks.push(r.tick),
  });
  poller.start();
  await clock.advance(150);
  stall = true;
  await clock.advance(1200);
  stall = false;
  await clock.advance(300);
  poller.stop();
  assert.ok(poller.overruns > 0, 'skipped ticks are counted');
  for (let i = 1; i < ticks.length; i++) assert.ok(ticks[i]! > ticks[i - 1]!, 'ticks only go forward');
});

test('a failed read marks the block tags failed with the error code; nothing made up', async () => {
  const clock = fakeClock(30_000);
  const results: CycleResult[] = [];
  const err = new PlcError('timeout', 'no answer within 500 ms');
  const poller = new Poller({ group, maxGap: 0, clock, logger: silentLogger(), reader: { read: () => Promise.reject(err) }, onCycle: (r) => results.push(r) });
  poller.start();
  await clock.advance(150);
  poller.stop();
  assert.equal(results.length, 1);
  assert.deepEqual(results[0]!.values, [undefined]);
  assert.deepEqual(results[0]!.failed, ['timeout']);
});

test('outcomes are indexed by position in group.tags, with one read time per block', async () => {
  const clock = fakeClock(40_000);
  const tags: ResolvedTag[] = [
    { ...tag, name: 'far', start: 100 },
    { ...tag, name: 'w', start: 50, access: 'write' },
    { ...tag, name: 'near', start: 0 },
    { ...tag, name: 'coil', area: 'coil', start: 5, type: 'bool' },
  ];
  const results: CycleResult[] = [];
  const poller = new Poller({
    group: { ...group, tags },
    maxGap: 0,
    clock,
    logger: silentLogger(),
    reader: {
      read: (area, start) =>
        new Promise((resolve, reject) =>
          clock.setTimeout(() => (area === 'coil' ? reject(new PlcError('timeout', 'no answer')) : resolve([start + 1])), start === 100 ? 30 : 10),
        ),
    },
    onCycle: (r) => results.push(r),
  });
  assert.deepEqual(poller.blocks.map((b) => `${b.area}:${b.start}`), ['coil:5', 'holding:0', 'holding:100']);
  poller.start();
  await clock.advance(200);
  poller.stop();
  const r = results[0]!;
  assert.deepEqual(r.values, [101, undefined, 1, undefined]);
  assert.deepEqual(r.failed, [undefined, undefined, undefined, 'timeout']);
  assert.deepEqual([...r.blockOf], [2, 0, 1, 0], 'block of each tag (a write-only tag has none: 0, never read)');
  assert.ok(Number.isNaN(r.readAt[0]), 'the failed block has no read time');
  assert.equal(r.readAt[1], 40_100 + 10 + 10, 'each block its own answer time');
  assert.equal(r.readAt[2], 40_100 + 10 + 10 + 30);
});
