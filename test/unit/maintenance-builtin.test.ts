/**
 * The built-in procedures shipped in dist/maintenance/procedures/: valid, described for people
 * (category, severity, notes on every step), using only the built-in actions the runner
 * implements, and scheduled where docs/maintenance.md says (the weekly one inside the default
 * window, because its bridge handover makes it disruptive).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../core/config.js';
import { silentLogger } from '../../lib/log.js';
import { openDatabase } from '../../lib/sqlite.js';
import { loadCatalog, shippedProceduresDir } from '../../maintenance/catalog.js';
import { nextSlot } from '../../maintenance/cron.js';
import { SCHEDULE_MIGRATIONS } from '../../maintenance/schedule-store.js';
import type { Procedure } from '../../maintenance/schema.js';
import { MaintenanceWindows } from '../../maintenance/windows.js';

/** The built-in actions these procedures may name (issue 14's list; the runner implements them). */
const ACTIONS = new Set([
  'files-cleanup',
  'disk-space',
  'store-check',
  'store-optimize',
  'store-backup',
  'store-verify-backup',
  'store-rotate-backups',
  'slot-verify',
  'config-verify',
  'cert-expiry',
  'plc-bridge-handover',
  'component-restart',
  'diagnostics',
  'trend-report',
  'security-review',
  'restore-test',
]);

const catalog = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: join(tmpdir(), 'no-such-procedures-dir'), agentUid: process.getuid?.() ?? 0 });
const procedure = (id: string): Procedure => {
  const e = catalog.entries.find((x) => x.id === id);
  assert.ok(e, `${id} ships`);
  assert.equal(e.status, 'valid', JSON.stringify(e.problems));
  assert.ok(e.procedure);
  return e.procedure;
};

test('the daily, weekly, monthly and full diagnostic procedures ship valid, with notes on every step and only known actions', () => {
  for (const id of ['maintenance-daily', 'maintenance-weekly', 'maintenance-monthly', 'diagnostic-full']) {
    const p = procedure(id);
    for (const s of [...p.steps, ...p.rollback]) {
      assert.ok(s.notes && s.notes.length > 10, `${id}.${s.id} has notes`);
      if (s.type === 'action') assert.ok(ACTIONS.has(s.action), `${id}.${s.id}: ${s.action} is a built-in action`);
    }
  }
  assert.equal(procedure('diagnostic-full').category, 'diagnostic');
  assert.equal(procedure('maintenance-weekly').disruptive, true, 'the bridge handover');
  assert.equal(procedure('maintenance-daily').disruptive, false);
  assert.equal(procedure('maintenance-monthly').disruptive, false);
  assert.equal(procedure('diagnostic-full').schedule, undefined, 'scheduled only by maintenance.schedules');
});

test('store-check and store-backup ship valid, read-only or backing up only, on the periods of the timers they replace: hourly and every 6 hours', () => {
  const from = new Date(2026, 11, 7, 12, 0, 0).getTime();
  for (const [id, periodMs, action] of [['store-check', 3_600_000, 'store-check'], ['store-backup', 6 * 3_600_000, 'store-backup']] as const) {
    const p = procedure(id);
    assert.equal(p.disruptive, false);
    assert.deepEqual(p.steps.map((s) => (s.type === 'action' ? s.action : s.type)), [action]);
    for (const s of p.steps) assert.ok(s.notes && s.notes.length > 10, `${id}.${s.id} has notes`);
    assert.ok(p.schedule);
    const a = nextSlot(p.schedule, from) ?? 0;
    const b = nextSlot(p.schedule, a) ?? 0;
    const c = nextSlot(p.schedule, b) ?? 0;
    assert.deepEqual([b - a, c - b], [periodMs, periodMs], `${id} runs every ${periodMs} ms`);
    assert.ok(p.schedule.catchUpSec * 1000 >= periodMs, `${id}: a slot missed while the agent was down runs after its start`);
  }
});

test('their schedules: daily 03:30, weekly Sunday 02:30 inside the default window, monthly on the first Sunday at 03:00', () => {
  const from = new Date(2026, 11, 7, 12, 0, 0).getTime(); // a Monday, local time
  const daily = procedure('maintenance-daily').schedule;
  const weekly = procedure('maintenance-weekly').schedule;
  const monthly = procedure('maintenance-monthly').schedule;
  assert.ok(daily && weekly && monthly);
  const d = new Date(nextSlot(daily, from) ?? 0);
  assert.deepEqual([d.getDate(), d.getHours(), d.getMinutes()], [8, 3, 30]);
  const w = nextSlot(weekly, from) ?? 0;
  assert.deepEqual([new Date(w).getDay(), new Date(w).getHours(), new Date(w).getMinutes()], [0, 2, 30]);
  const m = new Date(nextSlot(monthly, from) ?? 0);
  assert.deepEqual([m.getFullYear(), m.getMonth(), m.getDate(), m.getHours()], [2027, 0, 3, 3], 'the first Sunday of January 2027');

  const config = validateConfig({ gatewayId: 'gw' });
  const db = openDatabase(join(mkdtempSync(join(tmpdir(), 'builtin-')), 'a.db'), { migrations: [SCHEDULE_MIGRATIONS] });
  const windows = new MaintenanceWindows({ db, log: silentLogger(), windows: config.maintenance.windows, announceSec: config.maintenance.announceSec, maxDeferSec: config.maintenance.maxDeferSec, emit: () => undefined });
  assert.equal(windows.isInsideWindow(w), true, 'the weekly slot is inside the default window');
  assert.equal(windows.isInsideWindow(w + weekly.jitterSec * 1000), true, 'and so is its latest random start');
  assert.equal(windows.isInsideWindow(d.getTime()), false, 'the daily one needs no window');
});
