/**
 * The summary behind `edge-agent maintenance schedule`, `status` and diag
 * (maintenance/schedule-summary.ts) and diag's verdicts on it: next and last run, waiting for a
 * window, overdue, failed, disabled.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scheduleSummary, type SummaryInput } from '../../maintenance/schedule-summary.js';
import type { ScheduleRow } from '../../maintenance/schedule-store.js';
import { scheduleVerdicts } from '../../health/diag/maintenance.js';

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0); // a Monday
const H = 3_600_000;
const row = (procedure: string, r: Partial<ScheduleRow>): ScheduleRow => ({ procedure, since: NOW - 30 * 24 * H, handledSlot: null, lastSlot: null, startedAt: null, endedAt: null, outcome: null, runId: null, message: null, overlaps: 0, lastOverlapSlot: null, ...r });

const input = (rows: ScheduleRow[]): SummaryInput => ({
  procedures: [
    { id: 'daily', disruptive: false, schedule: { cron: '0 3 * * *', timezone: 'UTC', jitterSec: 600, catchUpSec: 0 } },
    { id: 'weekly', disruptive: true, schedule: { cron: '30 2 * * 0', timezone: 'UTC', jitterSec: 0, catchUpSec: 0 } },
    { id: 'off', disruptive: false, schedule: { cron: '0 * * * *', jitterSec: 0, catchUpSec: 0 } },
  ],
  overrides: { off: { enabled: false }, ghost: { cron: '0 1 * * *' } },
  windows: [{ id: 'weekly', cron: '0 2 * * 0', durationSec: 7200, timezone: 'UTC' }],
  maxDeferSec: 86_400,
  rows,
  windowRows: [],
  now: NOW,
});

test('next run, last run, waiting for a window, disabled; the next windows', () => {
  const s = scheduleSummary(input([row('daily', { handledSlot: NOW - 9 * H, lastSlot: NOW - 9 * H, startedAt: NOW - 9 * H + 60_000, endedAt: NOW - 9 * H + 90_000, outcome: 'succeeded', runId: 'r1' }), row('weekly', { handledSlot: NOW - 33.5 * H, outcome: 'waiting-window' })]));
  const by = Object.fromEntries(s.schedules.map((x) => [x.procedure, x]));
  assert.equal(by.daily?.nextRun, '2026-12-08T03:00:00.000Z');
  assert.equal(by.daily?.lastRun?.outcome, 'succeeded');
  assert.equal(by.daily?.overdue, false);
  assert.equal(by.weekly?.nextRun, '2026-12-13T02:00:00.000Z', 'waiting: it runs when the next window opens');
  assert.equal(by.off?.enabled, false);
  assert.equal(by.off?.nextRun, null);
  assert.deepEqual(s.unknownOverrides, ['ghost']);
  assert.deepEqual(s.windows.map((w) => w.start), ['2026-12-13T02:00:00.000Z', '2026-12-20T02:00:00.000Z', '2026-12-27T02:00:00.000Z']);
  assert.deepEqual(scheduleVerdicts(s).map((c) => [c.name, c.status]), [['schedules', 'ok']]);
});

test('diag: a schedule that missed its slot is overdue, one whose last run failed is a warning; a schedule never seen is not judged', () => {
  const s = scheduleSummary(input([row('daily', { handledSlot: NOW - 33 * H, lastSlot: NOW - 33 * H, outcome: 'succeeded' }), row('weekly', { handledSlot: NOW - 33.5 * H, lastSlot: NOW - 33.5 * H, outcome: 'failed', message: null })]));
  const v = scheduleVerdicts(s);
  assert.deepEqual(v.map((c) => [c.name, c.status]), [['schedule:daily', 'warning'], ['schedule:weekly', 'warning']]);
  assert.match(v[0]?.message ?? '', /overdue: its slot of 2026-12-07T03:00:00.000Z has not run/);
  assert.match(v[1]?.message ?? '', /ended failed/);
  assert.deepEqual(scheduleVerdicts(scheduleSummary(input([]))).map((c) => c.status), ['ok'], 'no rows: a store the scheduler never wrote');
});
