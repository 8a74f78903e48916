/**
 * The start of a rollout's update (ota/rollout.ts): never before notBefore or the window, spread
 * uniformly, cut at the deadline; a deadline already past is a rejection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { admitRollout, planStart, startVerdict, wantsWait } from '../../ota/rollout.js';

const NOW = Date.parse('2026-12-07T10:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

test('no rollout params: no wait, start now', () => {
  assert.equal(wantsWait({}), false);
  assert.equal(planStart({}, NOW, () => 0.5), NOW);
  assert.equal(startVerdict({}, NOW), undefined);
});

test('notBefore and spreadSec: a uniform start in [notBefore, notBefore + spread)', () => {
  const p = { notBefore: iso(NOW + 60_000), spreadSec: 600 };
  assert.equal(wantsWait(p), true);
  assert.equal(planStart(p, NOW, () => 0), NOW + 60_000);
  assert.equal(planStart(p, NOW, () => 0.5), NOW + 60_000 + 300_000);
  assert.ok(planStart(p, NOW, () => 0.999999) < NOW + 60_000 + 600_000);
  // A notBefore already past counts from now.
  assert.equal(planStart({ notBefore: iso(NOW - 5000), spreadSec: 10 }, NOW, () => 0.5), NOW + 5000);
});

test('the spread is cut at the deadline', () => {
  const p = { spreadSec: 3600, deadline: iso(NOW + 60_000) };
  assert.ok(planStart(p, NOW, () => 0.999999) < NOW + 60_000);
  assert.equal(planStart(p, NOW, () => 0.5), NOW + 29_999);
});

test('a deadline at or before arrival is rejected deadline-passed; notBefore at the deadline is invalid', () => {
  assert.equal(admitRollout({ deadline: iso(NOW) }, NOW, false)?.code, 'deadline-passed');
  assert.equal(admitRollout({ deadline: iso(NOW + 1) }, NOW, false), undefined);
  assert.equal(admitRollout({ deadline: iso(NOW + 10), notBefore: iso(NOW + 10) }, NOW, false)?.code, 'invalid-params');
  assert.equal(startVerdict({ deadline: iso(NOW) }, NOW)?.code, 'deadline-passed');
});

test('window: rejected without a window service; waits for the next window; fails without one', () => {
  assert.equal(admitRollout({ window: true }, NOW, false)?.code, 'no-window-service');
  assert.equal(admitRollout({ window: true }, NOW, true), undefined);
  assert.equal(planStart({ window: true }, NOW, () => 0, () => NOW + 3600_000), NOW + 3600_000);
  assert.throws(() => planStart({ window: true }, NOW, () => 0, () => undefined), { code: 'no-window' });
});
