/**
 * Health against the real agent and a real Mosquitto: `~/health` arrives with the metrics; an
 * alert from a threshold set low (memory used above 1 %) produces exactly one `alert` event on
 * `~/events` and shows in `edge-agent status --json`; `edge-agent health --since 1h --json`
 * returns history, also with the daemon down; after a restart the alert is not raised again,
 * and with the threshold raised it is cleared exactly once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-health';

interface Snapshot {
  ts: string;
  metrics: Record<string, number>;
  alerts: { code: string; metric: string }[];
}

interface HealthJson {
  tier: string;
  metrics: Record<string, { t: string; n: number; min: number; avg: number; max: number }[]>;
  alerts: { code: string }[];
}

describe('health monitor', () => {
  let broker: Broker;
  let wms: MqttClient;
  let health: Received[];
  let events: Received[];
  const dataDir = join(tempDir('agent-health-'), 'data');
  const agents: AgentProcess[] = [];
  const start = (memory: { raise: number; clear: number; forMs: number }): AgentProcess => {
    const a = startAgent({
      dataDir,
      gatewayId: GW,
      config: { mqtt: { url: broker.url }, health: { sampleIntervalMs: 300, publishIntervalMs: 1000, thresholds: { memory } } },
    });
    agents.push(a);
    return a;
  };
  const snapshots = (): Snapshot[] => health.map((r) => r.payload as Snapshot);
  const alertEvents = (type: string): Record<string, unknown>[] =>
    events.map((e) => e.payload as Record<string, unknown>).filter((p) => p.type === type && p.code === 'memory-high');
  const healthCli = async (): Promise<{ code: number | null; report: HealthJson; stderr: string }> => {
    const r = await runCli(['health', '--since', '1h', '--json', '--data-dir', dataDir, '--config', join(dataDir, 'config.yaml')]);
    return { code: r.code, report: JSON.parse(r.stdout || '{}') as HealthJson, stderr: r.stderr };
  };
  /** Waits for `n` more snapshots than there are now: proof that that many samples went by. */
  const moreSnapshots = async (n: number, a: AgentProcess): Promise<void> => {
    const have = health.length;
    await waitFor(() => health.length >= have + n, { timeoutMs: 20_000, what: `${n} more ~/health snapshots\n${a.logText().slice(-2000)}` });
  };

  before(async () => {
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    health = await collect(wms, `edge/${GW}/health`, 0);
    events = await collect(wms, `edge/${GW}/events`);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await wms?.endAsync();
    await broker?.stop();
  });

  test('~/health carries the metrics; a low threshold raises exactly one alert, in status too; history via the CLI', async () => {
    const agent = start({ raise: 1, clear: 0.5, forMs: 0 });
    await agentConnected(agent, 20_000);
    await waitFor(() => snapshots().some((s) => s.metrics['broker.connected'] === 1 && s.metrics['cpu.pct'] !== undefined), {
      timeoutMs: 20_000,
      what: `a ~/health snapshot with the broker connected and CPU\n${agent.logText().slice(-2000)}`,
    });
    const snap = snapshots().find((s) => s.metrics['broker.connected'] === 1 && s.metrics['cpu.pct'] !== undefined)!;
    for (const m of ['mem.usedPct', 'agent.rssMB', 'agent.cpuPct', 'agent.loopLagMs', 'outbox.depth', 'disk.data.usedPct', 'disk.data.inodesUsedPct', 'cpu.load1', 'health.sampleMs']) {
      assert.equal(typeof snap.metrics[m], 'number', `${m} in ${JSON.stringify(snap.metrics)}`);
    }
    assert.ok(snap.metrics['agent.rssMB']! > 10 && snap.metrics['agent.rssMB']! < 1024);
    assert.ok(!Number.isNaN(Date.parse(snap.ts)));

    await waitFor(() => alertEvents('alert').length > 0, { timeoutMs: 20_000, what: `the memory-high alert on ~/events\n${agent.logText().slice(-2000)}` });
    // Many more samples with memory still above 1 %: still exactly one event.
    await moreSnapshots(5, agent);
    const raised = alertEvents('alert');
    assert.equal(raised.length, 1, JSON.stringify(raised));
    assert.equal(raised[0]!.metric, 'mem.usedPct');
    assert.equal(raised[0]!.threshold, 1);
    assert.equal(raised[0]!.severity, 'warning');
    assert.equal(typeof raised[0]!.value, 'number');
    assert.equal(typeof raised[0]!.ts, 'string');
    assert.equal(alertEvents('alert-cleared').length, 0);
    assert.ok(snapshots().at(-1)!.alerts.some((a) => a.code === 'memory-high'));

    const st = await runCli(['status', '--json', '--config', agent.configPath]);
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { alerts: { code: string; metric: string }[]; health?: Snapshot };
    assert.deepEqual(
      status.alerts.map((a) => `${a.code} ${a.metric}`),
      ['memory-high mem.usedPct'],
    );
    assert.equal(typeof status.health?.metrics['mem.usedPct'], 'number');

    // The history is written every six samples (1.8 s here).
    let res: Awaited<ReturnType<typeof healthCli>> | undefined;
    await waitFor(
      async () => {
        res = await healthCli();
        return res.code === 0 && (res.report.metrics['mem.usedPct']?.length ?? 0) > 0;
      },
      { timeoutMs: 20_000, intervalMs: 500, what: `edge-agent health --json with samples: ${JSON.stringify(res)}` },
    );
    assert.equal(res!.report.tier, 'raw');
    const mem = res!.report.metrics['mem.usedPct']!;
    assert.ok(mem.every((p) => p.n > 0 && p.min <= p.avg && p.avg <= p.max));
    assert.ok(res!.report.metrics['agent.rssMB']);
    assert.deepEqual(res!.report.alerts.map((a) => a.code), ['memory-high']);
  });

  test('with the daemon down the CLI still reads the history; a restart does not raise the alert again', async () => {
    const first = agents.at(-1)!;
    await first.stop();
    const down = await healthCli();
    assert.equal(down.code, 0, down.stderr);
    assert.ok((down.report.metrics['mem.usedPct']?.length ?? 0) > 0);
    assert.deepEqual(down.report.alerts.map((a) => a.code), ['memory-high']);

    const again = start({ raise: 1, clear: 0.5, forMs: 0 });
    await agentConnected(again, 20_000);
    await moreSnapshots(4, again);
    assert.equal(alertEvents('alert').length, 1, 'the restored alert is not raised again');
    assert.equal(alertEvents('alert-cleared').length, 0);
    await again.stop();
  });

  test('with the threshold raised above the value, the restored alert clears exactly once', async () => {
    const agent = start({ raise: 99.9, clear: 99.8, forMs: 0 });
    await agentConnected(agent, 20_000);
    await waitFor(() => alertEvents('alert-cleared').length > 0, { timeoutMs: 20_000, what: `alert-cleared on ~/events\n${agent.logText().slice(-2000)}` });
    await moreSnapshots(4, agent);
    const cleared = alertEvents('alert-cleared');
    assert.equal(cleared.length, 1);
    assert.equal(cleared[0]!.severity, 'info');
    assert.equal(typeof cleared[0]!.raisedAt, 'string');
    assert.equal(alertEvents('alert').length, 1);
    const st = JSON.parse((await runCli(['status', '--json', '--config', agent.configPath])).stdout) as { alerts: unknown[] };
    assert.deepEqual(st.alerts, []);
  });
});
