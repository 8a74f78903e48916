/**
 * The suite's pure parts: the exit code and summary from the checks, the per-group bound, and
 * the verdicts each group computes from facts (health/diag/*).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bounded, buildReport } from '../../health/diag/suite.js';
import { exitCodeOf, worst, type GroupReport } from '../../health/diag/types.js';
import { modeProblem } from '../../health/diag/config.js';
import { expiryVerdict } from '../../health/diag/identity.js';
import { brokerEndpoint } from '../../health/diag/connectivity.js';
import { clockVerdict } from '../../health/diag/time.js';
import { outboxVerdict, spaceVerdict } from '../../health/diag/storage.js';
import { componentVerdict, incidentVerdicts } from '../../health/diag/components.js';
import { bridgeDevices, deviceVerdict } from '../../health/diag/plc.js';
import { parseOnly } from '../../agent/cli/diag.js';

const NOW = Date.parse('2026-11-22T10:00:00.000Z');
const DAY = 24 * 3600_000;

const group = (name: GroupReport['name'], ...statuses: ('ok' | 'warning' | 'failure' | 'skip')[]): GroupReport => {
  const checks = statuses.map((s, i) => (s === 'skip' ? { name: `c${i}`, status: 'ok' as const, message: 'm', skipped: true } : { name: `c${i}`, status: s, message: 'm' }));
  return { name, status: worst(checks.map((c) => c.status)), durationMs: 1, checks };
};

test('exit code: 0 when all ok (skipped count as ok), 1 with warnings, 2 with any failure', () => {
  assert.equal(exitCodeOf(worst([])), 0);
  assert.equal(exitCodeOf(worst(['ok', 'ok'])), 0);
  assert.equal(exitCodeOf(worst(['ok', 'warning', 'ok'])), 1);
  assert.equal(exitCodeOf(worst(['warning', 'failure', 'ok'])), 2);
  const ctx = { source: 'cli' as const, daemon: 'running' as const, version: '1.0.0', config: undefined };
  const r = buildReport(ctx, [group('time', 'ok', 'skip'), group('plc', 'warning'), group('slots', 'failure', 'ok')], NOW, NOW + 1234);
  assert.deepEqual([r.overall, r.exitCode, r.durationMs], ['failure', 2, 1234]);
  assert.deepEqual(r.summary, { ok: 2, warning: 1, failure: 1, skipped: 1 });
  assert.equal(buildReport(ctx, [group('time', 'ok', 'skip')], NOW, NOW).exitCode, 0);
});

test('a group past its bound is cut off: its signal aborts and it reports a timeout warning', async () => {
  let seen: AbortSignal | undefined;
  const t0 = Date.now();
  const g = await bounded('connectivity', 100, (signal) => {
    seen = signal;
    return new Promise(() => undefined);
  });
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(g.status, 'warning');
  assert.equal(g.checks[0]?.name, 'timeout');
  assert.equal(seen?.aborted, true);
  const thrown = await bounded('slots', 1000, async () => {
    throw new Error('boom');
  });
  assert.deepEqual([thrown.status, thrown.checks[0]?.message], ['failure', 'the slots checks failed: boom']);
});

test('--only takes known group names', () => {
  assert.deepEqual(parseOnly('time, plc'), ['time', 'plc']);
  assert.equal(parseOnly(undefined), undefined);
  assert.throws(() => parseOnly('time,nope'), /--only takes/);
});

test('file modes: writable by others fails, by the group warns, readable by others warns only for secrets', () => {
  assert.equal(modeProblem(0o100666, false)?.status, 'failure');
  assert.equal(modeProblem(0o100664, false)?.status, 'warning');
  assert.equal(modeProblem(0o100644, false), undefined);
  assert.equal(modeProblem(0o100644, true)?.status, 'warning');
  assert.equal(modeProblem(0o100640, true), undefined);
});

test('certificate expiry: expired, not yet valid and under 7 days fail, under 30 days warns', () => {
  const v = (from: number, to: number): string => expiryVerdict(new Date(NOW + from * DAY), new Date(NOW + to * DAY), NOW, 'CN=gw').status;
  assert.equal(v(-10, -1), 'failure');
  assert.equal(v(1, 100), 'failure');
  assert.equal(v(-10, 10), 'warning');
  assert.equal(v(-10, 5), 'failure', 'the alarm with 7 days left');
  assert.equal(v(-10, 100), 'ok');
  assert.equal(expiryVerdict(new Date(NOW - DAY), new Date(NOW + 100 * DAY), NOW, 'CN=gw').details?.daysLeft, 100);
});

test('broker endpoints: default ports per scheme, TLS for mqtts/ssl/wss, IPv6 brackets removed', () => {
  assert.deepEqual(brokerEndpoint('mqtt://wms'), { scheme: 'mqtt', host: 'wms', port: 1883, tls: false });
  assert.deepEqual(brokerEndpoint('mqtts://wms'), { scheme: 'mqtts', host: 'wms', port: 8883, tls: true });
  assert.deepEqual(brokerEndpoint('wss://[::1]:9001/mqtt'), { scheme: 'wss', host: '::1', port: 9001, tls: true });
});

test('clock: before the build date fails; outside the broker certificate fails (behind) or warns (ahead)', () => {
  const built = new Date(NOW - DAY).toISOString();
  const cert = { notBefore: new Date(NOW - 10 * DAY).toISOString(), notAfter: new Date(NOW + 10 * DAY).toISOString() };
  assert.deepEqual(
    clockVerdict(NOW, built, cert).map((c) => c.status),
    ['ok', 'ok'],
  );
  assert.equal(clockVerdict(NOW - 2 * DAY, built, undefined)[0]?.status, 'failure');
  assert.equal(clockVerdict(NOW - 20 * DAY, undefined, cert)[1]?.status, 'failure');
  assert.equal(clockVerdict(NOW + 20 * DAY, undefined, cert)[1]?.status, 'warning');
  assert.equal(clockVerdict(NOW, undefined, undefined)[1]?.skipped, true);
});

test('space and inodes, outbox depth and age', () => {
  const fs = (freeMiB: number, totalMiB: number, ffree = 1000, files = 1000) => ({ bavail: freeMiB * 256, blocks: totalMiB * 256, bsize: 4096, ffree, files });
  assert.equal(spaceVerdict('d', '/', fs(10_000, 20_000)).status, 'ok');
  assert.equal(spaceVerdict('d', '/', fs(300, 2_000)).status, 'warning');
  assert.equal(spaceVerdict('d', '/', fs(300, 20_000)).status, 'failure', 'under 2% and under 4 GiB');
  assert.equal(spaceVerdict('d', '/', fs(20_000, 2_000_000)).status, 'ok', '1% of a large disk is still plenty');
  assert.equal(spaceVerdict('d', '/', fs(20, 20_000)).status, 'failure');
  assert.equal(spaceVerdict('d', '/', fs(10_000, 20_000, 5, 1000)).status, 'failure');
  assert.equal(outboxVerdict(0, undefined, NOW, 1000).status, 'ok');
  assert.equal(outboxVerdict(5, NOW - 60_000, NOW, 1000).status, 'ok');
  assert.equal(outboxVerdict(5, NOW - 3600_000, NOW, 1000).status, 'warning');
  assert.equal(outboxVerdict(950, NOW - 1000, NOW, 1000).status, 'failure');
});

test('components and incidents', () => {
  assert.equal(componentVerdict({ name: 'plc-bridge', state: 'running', restarts: 0 }).status, 'ok');
  assert.equal(componentVerdict({ name: 'plc-bridge', state: 'backoff', restarts: 2 }).status, 'warning');
  assert.equal(componentVerdict({ name: 'plc-bridge', state: 'running', alarm: { code: 'x' } }).status, 'warning');
  assert.equal(componentVerdict({ name: 'plc-bridge', state: 'failed' }).status, 'failure');
  const rows = [
    ...Array.from({ length: 4 }, (_, i) => ({ at: new Date(NOW - i * 60_000).toISOString(), component: 'svc', cause: 'exited', resolvedAt: new Date(NOW).toISOString() })),
    { at: NOW - 2 * 3600_000, component: 'bridge', cause: 'hung', resolved_at: null },
  ];
  const [restarts, open] = incidentVerdicts(rows, NOW);
  assert.deepEqual([restarts?.status, restarts?.details?.lastHour], ['warning', 4]);
  assert.deepEqual([open?.status, open?.details?.open], ['warning', 1]);
  assert.deepEqual(
    incidentVerdicts([], NOW).map((c) => c.status),
    ['ok', 'ok'],
  );
});

test('PLC devices from a bridge config, and their verdicts', () => {
  const devices = bridgeDevices({ devices: [{ name: 'sorter1', host: '10.0.0.21', port: 5020 }, { name: 'press', host: '10.0.0.22' }, { host: 'no-name' }] });
  assert.deepEqual(devices, [
    { name: 'sorter1', host: '10.0.0.21', port: 5020 },
    { name: 'press', host: '10.0.0.22', port: 502 },
  ]);
  assert.deepEqual(bridgeDevices(null), []);
  const d = devices[0]!;
  const unreachable = deviceVerdict(d, { error: 'connect ECONNREFUSED' }, undefined);
  assert.deepEqual([unreachable.name, unreachable.status], ['device:sorter1', 'failure']);
  assert.match(unreachable.message, /sorter1 is unreachable at 10\.0\.0\.21:5020/);
  assert.equal(deviceVerdict(d, { ms: 3 }, { link: 'down', error: 'timeout' }).status, 'failure');
  assert.equal(deviceVerdict(d, { ms: 3 }, { link: 'up', lastGoodAgeMs: 120_000 }).status, 'warning');
  assert.equal(deviceVerdict(d, { ms: 3 }, { link: 'up', lastGoodAgeMs: 500 }).status, 'ok');
});
