/**
 * health/history.ts against a real SQLite file in a temp dir: rollups (downsampling), retention
 * per tier, `since` queries picking the tier, the stored active alerts. Time is made up.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { HEALTH_MIGRATIONS, HealthHistory, queryHistory, readActiveAlerts, readRawSince, type Retention } from '../../health/history.js';
import type { ActiveAlert } from '../../health/alerts.js';
import { tempDir } from '../helpers/util.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** A round hour, so minute and hour buckets line up with the test's arithmetic. */
const T0 = Date.UTC(2026, 10, 1, 0, 0, 0);
const RET: Retention = { rawHours: 24, minuteDays: 7, hourDays: 90 };

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function store(): Db {
  const d = tempDir('health-history-');
  dirs.push(d);
  return openDatabase(join(d, 'agent.db'), { migrations: [HEALTH_MIGRATIONS] });
}

const count = (db: Db, sql: string): number => (db.prepare(sql).get() as { n: number }).n;

test('samples are rolled up into minutes and hours: count, min, average, max', () => {
  const db = store();
  const h = new HealthHistory({ db, retention: RET });
  // Two hours of samples every 10 s; cpu.pct cycles 0..50 within each minute, mem grows by the minute.
  for (let t = T0; t < T0 + 2 * HOUR; t += 10_000) {
    const inMinute = ((t - T0) % MIN) / 10_000;
    h.record(t, { 'cpu.pct': inMinute * 10, 'mem.usedPct': 40 + Math.floor((t - T0) / MIN) / 10 });
  }
  assert.equal(h.pending(), 720);
  h.flush(T0 + 2 * HOUR);
  assert.equal(h.pending(), 0);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_raw'), 1440);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_rollup WHERE tier = 1'), 2 * 120);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_rollup WHERE tier = 2'), 2 * 2);

  const minute = queryHistory(db, { sinceMs: 2 * HOUR, now: T0 + 2 * HOUR, retention: { ...RET, rawHours: 1 }, buckets: 120 });
  assert.equal(minute.tier, 'minute');
  assert.equal(minute.bucketMs, MIN);
  const cpu = minute.metrics['cpu.pct']!;
  assert.equal(cpu.length, 120);
  for (const p of cpu) assert.deepEqual({ n: p.n, min: p.min, avg: p.avg, max: p.max }, { n: 6, min: 0, avg: 25, max: 50 });
  assert.equal(minute.metrics['mem.usedPct']![119]!.avg, 40 + 11.9);

  const hourly = queryHistory(db, { sinceMs: 10 * DAY, now: T0 + 2 * HOUR, retention: RET, buckets: 240 });
  assert.equal(hourly.tier, 'hour');
  assert.equal(hourly.bucketMs, HOUR);
  const mem = hourly.metrics['mem.usedPct']!;
  assert.equal(mem.length, 2);
  assert.equal(mem[0]!.n, 360);
  assert.equal(mem[0]!.min, 40);
  assert.equal(mem[0]!.max, 45.9);
  assert.ok(Math.abs(mem[0]!.avg - 42.95) < 1e-9);
  db.close();
});

test('since queries: raw for short ranges, about the asked number of buckets, nothing outside the range', () => {
  const db = store();
  const h = new HealthHistory({ db, retention: RET });
  for (let t = T0; t < T0 + 3 * HOUR; t += 10_000) h.record(t, { x: (t - T0) / 1000 });
  h.flush(T0 + 3 * HOUR);
  const now = T0 + 3 * HOUR;
  const q = queryHistory(db, { sinceMs: HOUR, now, retention: RET, buckets: 12 });
  assert.equal(q.tier, 'raw');
  assert.equal(q.bucketMs, 5 * MIN);
  assert.equal(q.from, now - HOUR);
  const x = q.metrics.x!;
  assert.equal(x.length, 12);
  assert.equal(x.reduce((a, p) => a + p.n, 0), 360);
  assert.equal(x[0]!.t, now - HOUR);
  assert.equal(x[0]!.min, 2 * 3600);
  assert.equal(x[11]!.max, 3 * 3600 - 10);
  // 24 h: minutes (raw is only used up to 3 h).
  assert.equal(queryHistory(db, { sinceMs: DAY, now, retention: RET }).tier, 'minute');
  db.close();
});

test('retention removes each tier after its own time; rollups outlive the raw samples', () => {
  const db = store();
  const ret: Retention = { rawHours: 1, minuteDays: 1, hourDays: 2 };
  const h = new HealthHistory({ db, retention: ret });
  // One sample a minute for three days.
  for (let t = T0; t < T0 + 3 * DAY; t += MIN) h.record(t, { m: 1 });
  const now = T0 + 3 * DAY;
  h.flush(now);
  const oldest = (tier: string): number => (db.prepare(`SELECT min(t) AS n FROM ${tier}`).get() as { n: number }).n;
  assert.ok(oldest('health_raw') >= now - HOUR);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_raw'), 60);
  assert.ok((db.prepare('SELECT min(t) AS n FROM health_rollup WHERE tier = 1').get() as { n: number }).n >= now - DAY);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_rollup WHERE tier = 1'), 24 * 60);
  assert.equal(count(db, 'SELECT count(*) AS n FROM health_rollup WHERE tier = 2'), 48);
  // A two-day query still finds hourly data where raw and minutes are gone.
  const q = queryHistory(db, { sinceMs: 2 * DAY, now, retention: ret, buckets: 48 });
  assert.equal(q.tier, 'hour');
  assert.equal(q.metrics.m!.length, 48);
  assert.ok(q.metrics.m!.every((p) => p.n === 60 && p.avg === 1));
  db.close();
});

test('raw samples read back as samples, for the trend windows after a restart', () => {
  const db = store();
  const h = new HealthHistory({ db, retention: RET });
  h.record(T0, { a: 1, b: 2 });
  h.record(T0 + 10_000, { a: 3 });
  h.flush(T0 + 20_000);
  assert.deepEqual(readRawSince(db, T0), [
    { ts: T0, metrics: { a: 1, b: 2 } },
    { ts: T0 + 10_000, metrics: { a: 3 } },
  ]);
  assert.deepEqual(readRawSince(db, T0 + 1), [{ ts: T0 + 10_000, metrics: { a: 3 } }]);
  db.close();
});

test('active alerts are stored and replaced as a set', () => {
  const db = store();
  const h = new HealthHistory({ db, retention: RET });
  const a: ActiveAlert = { key: 'threshold:memory:mem.usedPct', kind: 'threshold', rule: 'memory', code: 'memory-high', metric: 'mem.usedPct', severity: 'warning', value: 93, threshold: 90, since: T0 };
  h.saveAlerts([a, { ...a, key: 'threshold:disk:disk.data.usedPct', rule: 'disk', code: 'disk-high', metric: 'disk.data.usedPct', since: T0 - 1 }]);
  assert.deepEqual(
    readActiveAlerts(db).map((x) => x.code),
    ['disk-high', 'memory-high'],
  );
  h.saveAlerts([a]);
  assert.deepEqual(readActiveAlerts(db), [a]);
  h.saveAlerts([]);
  assert.deepEqual(readActiveAlerts(db), []);
  db.close();
});

test('a store without health tables reads as empty, not as an error', () => {
  const d = tempDir('health-history-');
  dirs.push(d);
  const db = openDatabase(join(d, 'old.db'));
  assert.deepEqual(readActiveAlerts(db), []);
  assert.deepEqual(queryHistory(db, { sinceMs: HOUR, now: T0, retention: RET }).metrics, {});
  db.close();
});
