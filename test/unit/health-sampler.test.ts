/**
 * health/procfs.ts parsers on captured file contents; the Sampler on a made-up /proc, /sys and
 * /run in a temp dir; the monitor's events and early publishing with a fake sampler and clock.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cpuPercent, parseMeminfo, parseNetDev, parsePidStatTicks, parseProcStatCpu, parseVmRss, usedPercent } from '../../health/procfs.js';
import { Sampler, type Sample } from '../../health/sampler.js';
import { AlertEngine } from '../../health/alerts.js';
import { HEALTH_MIGRATIONS, HealthHistory, readActiveAlerts } from '../../health/history.js';
import { bucketsChanged, HealthMonitor, type HealthSnapshot } from '../../health/monitor.js';
import { healthRules, bridgeInfo } from '../../agent/health-wiring.js';
import { validateConfig } from '../../core/config.js';
import { openDatabase } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import type { Clock } from '../../lib/clock.js';
import type { AgentEvent } from '../../core/ports.js';
import { tempDir } from '../helpers/util.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const MEMINFO = `MemTotal:        8000000 kB
MemFree:          500000 kB
MemAvailable:    2000000 kB
Buffers:          100000 kB
Cached:          1000000 kB
SwapTotal:       1000000 kB
SwapFree:         750000 kB
`;
const NETDEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
  eth0: 5000 50 3 2 0 0 0 0 7000 70 1 0 0 0 0 0
`;

test('procfs parsers', () => {
  const a = parseProcStatCpu('cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n');
  const b = parseProcStatCpu('cpu  200 0 150 750 100 0 0 0 0 0\n');
  assert.ok(a && b);
  assert.deepEqual(a, { busy: 200, total: 1000 });
  assert.equal(cpuPercent(a, b), 75);
  assert.equal(cpuPercent(a, a), undefined);
  assert.deepEqual(parseMeminfo(MEMINFO), { totalBytes: 8000000 * 1024, availableBytes: 2000000 * 1024, swapTotalBytes: 1000000 * 1024, swapFreeBytes: 750000 * 1024 });
  assert.equal(parseMeminfo('MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB\n')!.availableBytes, 200 * 1024);
  assert.deepEqual([...parseNetDev(NETDEV)], [
    ['lo', { errors: 0 }],
    ['eth0', { errors: 6 }],
  ]);
  // A command name with spaces and parentheses; utime 7, stime 5.
  assert.equal(parsePidStatTicks('42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 100 0 0'), 12);
  assert.equal(parseVmRss('Name:\tx\nVmRSS:\t   2048 kB\n'), 2048 * 1024);
  assert.equal(usedPercent(100, 20, 10), (80 / 90) * 100);
});

function fakeHost(): { proc: string; sys: string; run: string } {
  const root = tempDir('health-host-');
  dirs.push(root);
  const put = (p: string, text: string): void => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  };
  put('proc/stat', 'cpu  100 0 100 700 100 0 0 0 0 0\n');
  put('proc/meminfo', MEMINFO);
  put('proc/net/dev', NETDEV);
  put('proc/777/status', 'VmRSS:\t10240 kB\n');
  put('proc/777/stat', '777 (plc) S 1 1 1 0 -1 0 0 0 0 0 100 100 0 0');
  put('sys/class/thermal/thermal_zone0/temp', '45000\n');
  put('sys/class/thermal/thermal_zone1/temp', '61500\n');
  put('sys/class/hwmon/hwmon0/temp1_input', '-273000\n');
  put('sys/devices/pci0/net/eth0/operstate', 'up\n');
  put('sys/devices/virtual/net/lo/operstate', 'unknown\n');
  mkdirSync(join(root, 'sys/class/net'), { recursive: true });
  symlinkSync('../../devices/pci0/net/eth0', join(root, 'sys/class/net/eth0'));
  symlinkSync('../../devices/virtual/net/lo', join(root, 'sys/class/net/lo'));
  put('run/systemd/timesync/synchronized', '');
  return { proc: join(root, 'proc'), sys: join(root, 'sys'), run: join(root, 'run') };
}

test('the sampler reads every metric the host offers, and leaves out what it does not', async () => {
  const host = fakeHost();
  let now = 1_000_000;
  const clock = { now: () => now } as Clock;
  const data = tempDir('health-data-');
  dirs.push(data);
  const sampler = new Sampler({
    filesystems: { data, slot: join(data, 'not', 'yet', 'there') },
    clock,
    procRoot: host.proc,
    sysRoot: host.sys,
    runRoot: host.run,
    inputs: {
      outboxDepth: () => 12,
      broker: () => ({ connected: true, rttMs: 3.4 }),
      bridge: async () => ({ pid: 777, storeDepth: 5, mqttConnected: true, devices: { press1: { link: 'up', lastGoodAgeMs: 250 }, press2: { link: 'down' } } }),
    },
  });
  sampler.start();
  try {
    const first = (await sampler.sample()).metrics;
    assert.equal(first['mem.usedPct'], 75);
    assert.equal(first['swap.usedPct'], 25);
    assert.equal(first['temp.maxC'], 61.5, 'the -273 reading of a disconnected sensor is ignored');
    assert.equal(first['net.eth0.up'], 1);
    assert.equal(first['net.lo.up'], undefined, 'virtual interfaces are left out');
    assert.equal(first['clock.synced'], 1);
    assert.equal(first['outbox.depth'], 12);
    assert.equal(first['broker.connected'], 1);
    assert.equal(first['broker.rttMs'], 3);
    assert.equal(first['bridge.up'], 1);
    assert.equal(first['bridge.rssMB'], 10);
    assert.equal(first['plc.press1.up'], 1);
    assert.equal(first['plc.press1.lastGoodAgeMs'], 250);
    assert.equal(first['plc.press2.up'], 0);
    assert.equal(first['plc.press2.lastGoodAgeMs'], undefined);
    assert.ok(first['disk.data.usedPct']! > 0 && first['disk.data.usedPct']! <= 100);
    assert.ok(first['disk.slot.freeMB']! > 0, 'a missing path counts as its nearest existing parent');
    assert.equal(first['cpu.pct'], undefined, 'CPU needs two readings');
    assert.equal(typeof first['agent.rssMB'], 'number');
    assert.equal(typeof first['health.sampleMs'], 'number');

    writeFileSync(join(host.proc, 'stat'), 'cpu  200 0 150 750 100 0 0 0 0 0\n');
    writeFileSync(join(host.proc, 'net', 'dev'), NETDEV.replace('3 2 0', '13 2 0'));
    writeFileSync(join(host.proc, '777', 'stat'), '777 (plc) S 1 1 1 0 -1 0 0 0 0 0 150 150 0 0');
    now += 10_000;
    const second = (await sampler.sample()).metrics;
    assert.equal(second['cpu.pct'], 75);
    assert.equal(second['net.eth0.errors'], 10);
    // 100 ticks of 10 ms in 10 s: 10 % of a core.
    assert.equal(second['bridge.cpuPct'], 10);
    assert.equal(typeof second['agent.cpuPct'], 'number');
    assert.equal(typeof second['agent.loopLagMs'], 'number');
  } finally {
    sampler.stop();
  }
  const down = new Sampler({ filesystems: {}, clock, procRoot: host.proc, sysRoot: host.sys, runRoot: join(host.run, 'none'), inputs: { bridge: () => Promise.reject(new Error('ENOENT')) } });
  const m = (await down.sample()).metrics;
  assert.equal(m['bridge.up'], 0);
  assert.equal(m['clock.synced'], undefined, 'no timesyncd: no clock metric');
  assert.equal(Object.keys(m).some((k) => k.startsWith('plc.')), false);
});

test('bridgeInfo reads the bridge status defensively', () => {
  assert.deepEqual(bridgeInfo({ pid: 9, devices: { a: { link: 'up', lastGoodAgeMs: 5 }, b: 'junk' }, store: { depth: 2 }, mqtt: { connected: false } }), {
    pid: 9,
    storeDepth: 2,
    mqttConnected: false,
    devices: { a: { link: 'up', lastGoodAgeMs: 5 }, b: { link: 'down', lastGoodAgeMs: undefined } },
  });
  assert.deepEqual(bridgeInfo(null), { pid: undefined, storeDepth: undefined, mqttConnected: undefined, devices: {} });
});

test('buckets: a percentage moving into another 10-point band or a link flipping counts; CPU does not', () => {
  assert.equal(bucketsChanged(undefined, {}), true);
  assert.equal(bucketsChanged({ 'mem.usedPct': 41 }, { 'mem.usedPct': 49 }), false);
  assert.equal(bucketsChanged({ 'mem.usedPct': 49 }, { 'mem.usedPct': 50 }), true);
  assert.equal(bucketsChanged({ 'cpu.pct': 5 }, { 'cpu.pct': 95 }), false);
  assert.equal(bucketsChanged({ 'broker.connected': 1 }, { 'broker.connected': 0 }), true);
  assert.equal(bucketsChanged({ 'plc.p1.up': 1 }, {}), true);
});

test('the monitor: one event per transition, alerts stored, ~/health on time and early', async () => {
  const d = tempDir('health-monitor-');
  dirs.push(d);
  const db = openDatabase(join(d, 'agent.db'), { migrations: [HEALTH_MIGRATIONS] });
  const config = validateConfig({ gatewayId: 'x', health: { thresholds: { memory: { raise: 80, clear: 70, forMs: 20_000 } } } });
  let now = Date.UTC(2026, 10, 22);
  const clock: Clock = { now: () => now, setTimeout: () => setTimeout(() => undefined, 0), clearTimeout: () => undefined, setInterval: () => setInterval(() => undefined, 1e9), clearInterval: () => undefined };
  const values = [50, 51, 85, 86, 87, 88, 60, 61];
  let i = 0;
  const sampler = { start: () => undefined, stop: () => undefined, sample: async (): Promise<Sample> => ({ ts: now, metrics: { 'mem.usedPct': values[i++]! }, info: { uptimeSec: 5 } }) };
  const events: AgentEvent[] = [];
  const published: HealthSnapshot[] = [];
  const history = new HealthHistory({ db, retention: config.health.retention });
  const mon = new HealthMonitor({
    sampler,
    history,
    engine: new AlertEngine(healthRules(config.health), config.health.degradation),
    clock,
    logger: silentLogger(),
    sampleIntervalMs: 10_000,
    publishIntervalMs: 60_000,
    event: (ev) => events.push(ev),
    publish: (s) => published.push(s),
    components: () => ({ 'wms-link': 'running' }),
  });
  for (let n = 0; n < values.length; n++) {
    await mon.tick();
    now += 10_000;
  }
  assert.deepEqual(
    events.map((e) => `${e.type} ${e.code}`),
    ['alert memory-high', 'alert-cleared memory-high'],
  );
  const raised = events[0]!;
  assert.equal(raised.metric, 'mem.usedPct');
  assert.equal(raised.value, 87);
  assert.equal(raised.threshold, 80);
  assert.equal(raised.severity, 'warning');
  assert.equal(events[1]!.value, 60);
  // Published: the first sample, the move to the 80s band, the raise, the clear (60s band; also a transition).
  assert.deepEqual(
    published.map((s) => s.metrics['mem.usedPct']),
    [50, 85, 87, 60],
  );
  assert.deepEqual(published[2]!.alerts.map((a) => a.code), ['memory-high']);
  assert.deepEqual(published[2]!.components, { 'wms-link': 'running' });
  assert.deepEqual(mon.lastSnapshot()!.alerts, []);
  assert.deepEqual(readActiveAlerts(db), []);
  await mon.stop();
  assert.equal((db.prepare('SELECT count(*) AS n FROM health_raw').get() as { n: number }).n, values.length, 'stop() wrote the buffered samples');
  db.close();
});
