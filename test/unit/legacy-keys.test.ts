/**
 * The store keeper's old interval keys (restore.integrityCheckIntervalMs, restore.backupIntervalMs)
 * mapped onto the schedules of the built-in procedures store-check and store-backup
 * (core/legacy-keys.ts): an existing configuration keeps working, with a note that says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../core/config.js';
import { DEFAULT_BACKUP_INTERVAL_MS, DEFAULT_INTEGRITY_CHECK_INTERVAL_MS, intervalCron, legacyScheduleNotes } from '../../core/legacy-keys.js';

const base = { gatewayId: 'gw-1' };

test('intervalCron: exact where a cron repeats that period, else the longest under it', () => {
  assert.deepEqual(intervalCron(60_000), { cron: '* * * * *', exact: true });
  assert.deepEqual(intervalCron(15 * 60_000), { cron: '*/15 * * * *', exact: true });
  assert.deepEqual(intervalCron(3_600_000), { cron: '0 * * * *', exact: true });
  assert.deepEqual(intervalCron(6 * 3_600_000), { cron: '0 */6 * * *', exact: true });
  assert.deepEqual(intervalCron(86_400_000), { cron: '0 0 * * *', exact: true });
  assert.deepEqual(intervalCron(7 * 86_400_000), { cron: '0 0 * * 0', exact: true });
  assert.deepEqual(intervalCron(90 * 60_000), { cron: '0 * * * *', exact: false }, '90 min: hourly, more often rather than less');
  assert.deepEqual(intervalCron(7 * 60_000), { cron: '*/6 * * * *', exact: false });
  assert.deepEqual(intervalCron(90_000), { cron: '* * * * *', exact: false });
  assert.deepEqual(intervalCron(3 * 86_400_000), { cron: '0 0 */3 * *', exact: false });
  assert.deepEqual(intervalCron(30 * 86_400_000), { cron: '0 0 */30 * *', exact: false });
});

test('the defaults are the schema defaults, and at their defaults (even written out) the keys change nothing', () => {
  const c = validateConfig(base);
  assert.equal(c.restore.backupIntervalMs, DEFAULT_BACKUP_INTERVAL_MS);
  assert.equal(c.restore.integrityCheckIntervalMs, DEFAULT_INTEGRITY_CHECK_INTERVAL_MS);
  assert.deepEqual(c.maintenance.schedules, {});
  const explicit = validateConfig({ ...base, restore: { backupIntervalMs: 21_600_000, integrityCheckIntervalMs: 3_600_000 } });
  assert.deepEqual(explicit.maintenance.schedules, {}, 'deploy/config.example.yaml writes them out at their defaults');
  assert.deepEqual(legacyScheduleNotes(explicit), []);
});

test('another value moves the schedule of store-check or store-backup, with a note; maintenance.schedules keeps its other keys and its own cron wins', () => {
  const c = validateConfig({ ...base, restore: { backupIntervalMs: 3_600_000, integrityCheckIntervalMs: 600_000 }, maintenance: { schedules: { 'store-check': { jitterSec: 5 } } } });
  assert.deepEqual(c.maintenance.schedules['store-backup'], { cron: '0 * * * *' });
  assert.deepEqual(c.maintenance.schedules['store-check'], { jitterSec: 5, cron: '*/10 * * * *' });
  const notes = legacyScheduleNotes(c);
  assert.equal(notes.length, 2);
  assert.match(notes[0] ?? '', /^restore\.integrityCheckIntervalMs \(600000\) is replaced by the schedule of the procedure store-check: mapped to maintenance\.schedules\.store-check\.cron "\*\/10 \* \* \* \*"; set that key instead$/);
  assert.match(notes[1] ?? '', /restore\.backupIntervalMs \(3600000\) .*maintenance\.schedules\.store-backup\.cron "0 \* \* \* \*"/);

  const wins = validateConfig({ ...base, restore: { backupIntervalMs: 3_600_000 }, maintenance: { schedules: { 'store-backup': { cron: '30 2 * * *', enabled: false } } } });
  assert.deepEqual(wins.maintenance.schedules['store-backup'], { cron: '30 2 * * *', enabled: false });
  assert.match(legacyScheduleNotes(wins)[0] ?? '', /maintenance\.schedules\.store-backup\.cron \("30 2 \* \* \*"\) is set and wins/);
  const odd = validateConfig({ ...base, restore: { backupIntervalMs: 5 * 3_600_000 } });
  assert.deepEqual(odd.maintenance.schedules['store-backup'], { cron: '0 */4 * * *' });
  assert.match(legacyScheduleNotes(odd)[0] ?? '', /the nearest cron period not longer than it/);
});
