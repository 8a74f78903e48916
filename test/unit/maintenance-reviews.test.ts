/**
 * The reviews behind the monthly and weekly procedures' built-in actions: the performance review
 * (health/perf-review.ts) over real hour rollups, the security review's verdicts
 * (maintenance/security-review.ts) and the files it gathers (agent/maintenance-reviews.ts), the
 * restore test (recovery/restore-test.ts) on real backups and known-good copies, the daily
 * comparison with the known-good copy, and the report's tables (`maintenance report RUN`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from '../../lib/sqlite.js';
import { validateConfig } from '../../core/config.js';
import { HEALTH_MIGRATIONS, HealthHistory } from '../../health/history.js';
import { formatPerfReview, perfReview, readHourRollups, type PerfReview } from '../../health/perf-review.js';
import { reviewFile, reviewFiles, type FileFacts } from '../../maintenance/security-review.js';
import { reviewActions, reviewedFiles } from '../../agent/maintenance-reviews.js';
import { restoreTest, restoreTestOffThread } from '../../recovery/restore-test.js';
import { compareKnownGood, takeKnownGood } from '../../recovery/known-good.js';
import { RECOVERY_MIGRATIONS, IncidentStore } from '../../recovery/incidents.js';
import { takeStoreBackup } from '../../recovery/store-backup.js';
import { formatReport } from '../../agent/cli/maintenance-format.js';
import { systemClock } from '../../lib/clock.js';
import { tempDir } from '../helpers/util.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);

test('the performance review: a month of hour rollups per component against the month before, with restarts and incidents', () => {
  const dir = tempDir('perf-review-');
  const db = openDatabase(join(dir, 'agent.db'), { migrations: [HEALTH_MIGRATIONS] });
  const h = new HealthHistory({ db, retention: { rawHours: 24 * 90, minuteDays: 1, hourDays: 90 } });
  // 60 days, a sample every 6 hours: the agent grew from 80 to 100 MB, the disk filled by 2 MB a day.
  for (let t = NOW - 60 * DAY; t < NOW; t += 6 * HOUR) {
    const recent = t >= NOW - 30 * DAY;
    const day = (t - (NOW - 60 * DAY)) / DAY;
    h.record(t, { 'agent.rssMB': recent ? 100 : 80, 'agent.cpuPct': recent ? 4 : 2, 'bridge.rssMB': 50, 'cpu.pct': 10, 'mem.usedPct': 40, 'disk.data.freeMB': 10_000 - 2 * day, 'disk.data.usedPct': 50 + day / 10 });
  }
  h.flush(NOW);
  const rows = readHourRollups(db, NOW - 60 * DAY, NOW);
  assert.ok(rows.length >= 200, `hour rows: ${rows.length}`);
  const incidents = [
    { at: NOW - 2 * DAY, component: 'plc-bridge', action: 'restart' },
    { at: NOW - 3 * DAY, component: 'plc-bridge', action: 'restart' },
    { at: NOW - 40 * DAY, component: 'plc-bridge', action: 'restart' },
    { at: NOW - 5 * DAY, component: 'store', action: 'restore-backup' },
  ];
  const r = perfReview(rows, incidents, 30, NOW);
  const get = (c: string, m: string): { current: number | null; previous: number | null; change: number | null } => {
    const x = r.components.find((k) => k.component === c)?.rows.find((k) => k.measure === m);
    assert.ok(x, `${c} ${m}`);
    return { current: x.current, previous: x.previous, change: x.change };
  };
  assert.deepEqual(get('agent', 'memory avg'), { current: 100, previous: 80, change: 20 });
  assert.deepEqual([get('agent', 'CPU avg').current, get('agent', 'CPU avg').previous], [4, 2]);
  assert.deepEqual([get('plc-bridge', 'restarts').current, get('plc-bridge', 'restarts').previous, get('plc-bridge', 'incidents').current], [2, 1, 2]);
  assert.deepEqual([get('store', 'restarts').current, get('store', 'incidents').current], [0, 1]);
  const growth = get('disk data', 'growth');
  assert.ok(growth.current !== null && Math.abs(growth.current - 59) < 2, `a month at 2 MB a day: ${growth.current}`);
  assert.equal(get('agent', 'event-loop lag peak').current, null, 'no samples: no figure, not 0');
  assert.equal(r.hours.current, 120);
  const text = formatPerfReview(r).join('\n');
  assert.match(text, /^agent\s+last 30 days\s+30 days before\s+change$/m);
  assert.match(text, /^memory avg \(MB\)\s+100\s+80\s+\+20$/m);
  assert.match(text, /^event-loop lag peak \(ms\)\s+-\s+-\s+-$/m);
  assert.match(text, /^store\s+last 30 days/m);
  db.close();
});

test('the review with no health tables and no incidents: every component, no figures', () => {
  const db = openDatabase(join(tempDir('perf-review-empty-'), 'agent.db'));
  const r = perfReview(readHourRollups(db, NOW - 14 * DAY, NOW), [], 7, NOW);
  assert.deepEqual(r.components.map((c) => c.component), ['agent', 'plc-bridge', 'system']);
  assert.equal(r.hours.current, 0);
  db.close();
});

const file = (o: Partial<FileFacts>): FileFacts => ({ path: '/x', what: 'x', kind: 'configuration', secret: false, mode: 0o100640, uid: 0, gid: 1000, isDirectory: false, ...o });
const AGENT = { uid: 1000, gid: 1000 };

test('the security review: secrets readable by others, files writable by others, foreign owners', () => {
  assert.deepEqual(reviewFile(file({ secret: true }), AGENT), [], 'root:agent 0640 holding a password is the documented setup');
  assert.deepEqual(reviewFile(file({ secret: true, mode: 0o100644 }), AGENT).map((f) => f.severity), ['failure']);
  assert.match(reviewFile(file({ secret: true, mode: 0o100644 }), AGENT)[0]!.problem, /anyone can read it \(mode 0644\)/);
  assert.deepEqual(reviewFile(file({ kind: 'private-key', secret: true, mode: 0o100640 }), AGENT).map((f) => f.severity), ['warning']);
  assert.deepEqual(reviewFile(file({ secret: true, gid: 4242 }), AGENT).map((f) => f.severity), ['warning'], 'a foreign group reads a secret');
  assert.deepEqual(reviewFile(file({ mode: 0o100666 }), AGENT).map((f) => f.severity), ['failure', 'warning'], 'anyone, and its group, can write it');
  assert.deepEqual(reviewFile(file({ kind: 'procedure', mode: 0o100664 }), AGENT).map((f) => f.severity), ['warning']);
  assert.deepEqual(reviewFile(file({ kind: 'procedure', uid: 4242 }), AGENT).map((f) => f.severity), ['failure']);
  assert.deepEqual(reviewFile(file({ kind: 'directory', isDirectory: true, mode: 0o40755, uid: 1000 }), AGENT).map((f) => f.severity), ['warning'], 'others can list the data directory');
  assert.deepEqual(reviewFile(file({ kind: 'directory', isDirectory: true, mode: 0o41777 }), AGENT), [], 'a sticky directory');
  assert.deepEqual(reviewFile(file({ kind: 'data', mode: 0o100644, uid: 4242 }), AGENT), [], 'data that holds no secret may be read');
  const s = reviewFiles([file({}), file({ kind: 'private-key', secret: true }), file({ mode: 0o100646 })], AGENT);
  assert.deepEqual([s.ok, s.reviewed, s.failures, s.warnings, s.findings[0]!.severity], [false, 3, 1, 1, 'failure']);
});

test('the security review gathers the configuration, keys, procedures and the data directory, and changes nothing', async () => {
  const root = tempDir('sec-review-');
  const dataDir = join(root, 'data');
  mkdirSync(join(dataDir, 'certs'), { recursive: true });
  const procs = join(root, 'procedures');
  mkdirSync(procs);
  chmodSync(procs, 0o755);
  writeFileSync(join(procs, 'p.yaml'), 'id: p\n');
  chmodSync(join(procs, 'p.yaml'), 0o644);
  const key = join(dataDir, 'certs', 'client.key');
  writeFileSync(key, '-----BEGIN PRIVATE KEY-----\n');
  chmodSync(key, 0o644);
  const configPath = join(root, 'config.yaml');
  writeFileSync(configPath, 'gatewayId: gw\n');
  chmodSync(configPath, 0o640);
  const config = validateConfig({ gatewayId: 'gw', dataDir, maintenance: { proceduresDir: procs }, mqtt: { url: 'mqtt://x', password: 'pw' } });
  const paths = reviewedFiles(config, configPath).map((f) => f.path);
  for (const p of [configPath, key, procs, join(procs, 'p.yaml'), dataDir]) assert.ok(paths.includes(p), `${p} reviewed`);
  const db = openDatabase(join(dataDir, 'agent.db'));
  const r = await reviewActions({ config, configPath, db, clock: systemClock })['security-review']!({}, { runId: 'r', signal: new AbortController().signal, logger: undefined as never });
  assert.equal(r.ok, false);
  assert.match(r.message, /client\.key \(certs\): anyone can read it \(mode 0644\) and it holds a secret/);
  const { statSync } = await import('node:fs');
  assert.equal(statSync(key).mode & 0o777, 0o644, 'a review changes no mode');
  db.close();
});

test('the restore test: the newest store backup and known-good copies restored into a temporary directory that is removed', async () => {
  const dataDir = tempDir('restore-test-');
  const db = openDatabase(join(dataDir, 'agent.db'), { migrations: [RECOVERY_MIGRATIONS] });
  const incidents = new IncidentStore(db);
  for (let i = 0; i < 5; i++) incidents.record({ at: NOW, component: 'c', cause: 'x', action: 'restart' });
  await takeStoreBackup({ db, dataDir, keep: 3, now: () => NOW });
  incidents.record({ at: NOW, component: 'c', cause: 'x', action: 'restart' });
  const source = join(dataDir, 'config.yaml');
  writeFileSync(source, 'gatewayId: gw\n');
  takeKnownGood({ dataDir, source, content: Buffer.from('gatewayId: gw\n'), keep: 3 });
  const r = restoreTest({ dataDir, live: db, configs: [source] });
  assert.equal(r.ok, true, JSON.stringify(r.problems));
  assert.equal(r.cleaned, true);
  assert.equal(existsSync(r.tempDir), false);
  assert.deepEqual(readdirSync(join(dataDir, 'tmp')), [], 'nothing left in tmp');
  assert.deepEqual(r.store?.tables.find((t) => t.table === 'incidents'), { table: 'incidents', restored: 5, live: 6 });
  assert.deepEqual(r.configs.map((c) => [c.ok, c.sameAsLive]), [[true, true]]);

  // A damaged backup and a known-good copy that no longer matches its sidecar both fail it.
  const { listStoreBackups } = await import('../../recovery/store-backup.js');
  const newest = listStoreBackups(dataDir)[0]!;
  writeFileSync(newest.path, Buffer.alloc(8192, 7));
  const copy = compareKnownGood(dataDir, source).copy!;
  writeFileSync(copy, 'gatewayId: tampered\n');
  const bad = restoreTest({ dataDir, live: db, configs: [source] });
  assert.equal(bad.ok, false);
  assert.equal(bad.cleaned, true);
  assert.match(bad.problems.join('\n'), /the restored store (does not open|fails integrity_check)/);
  assert.match(bad.problems.join('\n'), /does not match its sidecar/);
  db.close();
});

test('the restore test with no backup yet fails and still cleans up', () => {
  const dataDir = tempDir('restore-none-');
  const r = restoreTest({ dataDir, live: undefined, configs: [] });
  assert.deepEqual([r.ok, r.cleaned, r.problems], [false, true, ['there is no backup of the store to restore']]);
});

test('a configuration file against its newest known-good copy', () => {
  const dataDir = tempDir('kg-compare-');
  const source = join(dataDir, 'c.yaml');
  writeFileSync(source, 'a: 1\n');
  assert.equal(compareKnownGood(dataDir, source).state, 'none');
  takeKnownGood({ dataDir, source, content: Buffer.from('a: 1\n'), keep: 2 });
  assert.equal(compareKnownGood(dataDir, source).state, 'same');
  writeFileSync(source, 'a: 2\n');
  assert.equal(compareKnownGood(dataDir, source).state, 'differs');
});

test('maintenance report prints a trend-report step as a table per component', () => {
  const review: PerfReview = perfReview([{ metric: 'agent.rssMB', t: NOW - HOUR, n: 1, sum: 90, min: 90, max: 90 }], [], 7, NOW);
  const text = formatReport({ runId: 'r1', procedure: 'maintenance-weekly', state: 'succeeded', steps: [{ id: 'trend-report', outcome: 'ok', elapsedMs: 3, message: 'review', data: review }] });
  assert.match(text, /^ {2}trend-report:$/m);
  assert.match(text, /^ {4}agent\s+last 7 days\s+7 days before\s+change$/m);
  assert.match(text, /^ {4}memory avg \(MB\)\s+90\s+-\s+-$/m);
});

test('the restore test off the event loop (a worker thread) gives the same report, the live counts through its own read-only handle', async () => {
  const dataDir = tempDir('restore-worker-');
  const livePath = join(dataDir, 'agent.db');
  const db = openDatabase(livePath, { migrations: [RECOVERY_MIGRATIONS] });
  const incidents = new IncidentStore(db);
  for (let i = 0; i < 3; i++) incidents.record({ at: NOW, component: 'c', cause: 'x', action: 'restart' });
  await takeStoreBackup({ db, dataDir, keep: 3, now: () => NOW });
  incidents.record({ at: NOW, component: 'c', cause: 'x', action: 'restart' });
  const r = await restoreTestOffThread({ dataDir, livePath, live: db, configs: [] });
  assert.equal(r.ok, true, JSON.stringify(r.problems));
  assert.equal(r.cleaned, true);
  assert.deepEqual(r.store?.tables.find((t) => t.table === 'incidents'), { table: 'incidents', restored: 3, live: 4 });
  assert.deepEqual(readdirSync(join(dataDir, 'tmp')), []);
  db.close();
});
