/**
 * The `update-health` report (agent/update-health.ts): due healthReportSec after the commit,
 * also across a restart, which it counts; incidents and alerts since the commit; sent once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../lib/log.js';
import { UpdateHealth, type UpdateHealthOptions } from '../../agent/update-health.js';
import type { AgentEvent } from '../../core/ports.js';
import { fakeClock } from '../helpers/fake-clock.js';
import { tempDir } from '../helpers/util.js';

test('the report comes healthReportSec after the commit, counts a restart in between, and comes once', async () => {
  const clock = fakeClock(Date.parse('2026-12-07T10:00:00Z'));
  const dataDir = tempDir('update-health');
  const events: AgentEvent[] = [];
  const opts = (): UpdateHealthOptions => ({
    dataDir, reportSec: 600, version: '1.1.0', slot: 'B', clock, logger: silentLogger(),
    event: (ev) => events.push(ev),
    incidentsSince: (since) => (since === Date.parse('2026-12-07T10:00:00Z') ? 2 : -1),
    alerts: () => [{ code: 'old', since: '2026-12-07T09:00:00.000Z' }, { code: 'cpu-high', since: '2026-12-07T10:05:00.000Z' }],
  });
  const first = new UpdateHealth(opts());
  await first.start();
  first.committed('u-1', 'ro-1');
  await clock.advance(300_000);
  await first.stop(); // the agent restarts half-way
  const second = new UpdateHealth(opts());
  await second.start();
  await clock.advance(299_000);
  assert.equal(events.length, 0, 'not before its time');
  await clock.advance(1000);
  assert.equal(events.length, 1);
  assert.deepEqual(
    { ...events[0], message: undefined },
    { type: 'update-health', severity: 'warning', code: 'update-health', message: undefined, command: 'u-1', rolloutId: 'ro-1', version: '1.1.0', slot: 'B', committedAt: '2026-12-07T10:00:00.000Z', restarts: 1, incidents: 2, alerts: ['cpu-high'], healthy: false },
  );
  await second.stop();
  const third = new UpdateHealth(opts());
  await third.start();
  await clock.advance(3600_000);
  assert.equal(events.length, 1, 'reported once');
  await third.stop();
});
