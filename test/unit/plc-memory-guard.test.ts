import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FRESH_CHECKS, memoryAction } from '../../plc-bridge/memory-guard.js';

test('a budget reached within the first check intervals is below the baseline: no handover', () => {
  // Over from the start: the budget fires on its second sample.
  assert.equal(memoryAction(2000, 1000), 'below-baseline');
  assert.equal(memoryAction(0, 10_000), 'below-baseline');
  assert.equal(memoryAction(FRESH_CHECKS * 1000 - 1, 1000), 'below-baseline');
});

test('a budget reached after the instance ran a while: hand over to a fresh instance', () => {
  assert.equal(memoryAction(FRESH_CHECKS * 1000, 1000), 'handover');
  assert.equal(memoryAction(3_600_000, 10_000), 'handover');
  // The window scales with the check interval: 30 s is early for a 10 s interval.
  assert.equal(memoryAction(30_000, 10_000), 'below-baseline');
});
