/**
 * The broker unreachable for 2 minutes (issue #5: "no component is restarted"), with the real
 * things: mosquitto, the agent (`plcBridge.launch: auto`, default recovery settings) supervising
 * the real PLC bridge (polling the simulated PLC every 200 ms) and one declared service
 * (test/fixtures/service.js, heartbeat probe). Mosquitto is stopped for 120 s, then started again.
 *
 * Afterwards: no component was restarted (restarts 0, same pids, no incident), the agent is
 * online again, and the bridge's data from the outage reached the WMS (a persistent session)
 * replayed with `historical: true`, with no seq gap in the whole stream.
 *
 * This file takes two and a half to three minutes: the outage itself, then up to 30 s until the
 * agent's and the bridge's reconnect backoff (capped at 30 s) tries again. recovery.test.ts has a
 * 15 s outage in its one-minute run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { PlcSim } from '../../demo/plc-sim.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, REPO, startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgePing, writeBridgeConfig } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { rpcRequest } from '../../lib/rpc.js';
import { openDatabase } from '../../lib/sqlite.js';
import { IncidentStore } from '../../recovery/incidents.js';
import type { ComponentStatus } from '../../recovery/supervisor.js';

const SERVICE = join(REPO, 'dist', 'test', 'fixtures', 'service.js');
const ROOT = 'edge/gw-test';
const INTERVAL_MS = 200;
const OUTAGE_MS = 120_000;

let broker: Broker;
let sim: PlcSim;
let wms: MqttClient;
let agent: AgentProcess | undefined;
let dir = '';
let dataDir = '';
let socket = '';
let data: Received[] = [];
let status: Received[] = [];

const components = async (): Promise<Record<string, ComponentStatus>> => {
  const s = (await agent!.admin('status')) as { components?: ComponentStatus[] };
  return Object.fromEntries((s.components ?? []).map((c) => [c.name, c]));
};

const allIncidents = (): number => {
  const db = openDatabase(join(dataDir, 'agent.db'), { readonly: true });
  try {
    const s = new IncidentStore(db);
    return s.available() ? s.list({ limit: 1000 }).length : 0;
  } finally {
    db.close();
  }
};

const bridgeStatus = async (): Promise<{ mqtt: { connected: boolean }; store: { depth: number; dropped: number } } | undefined> =>
  (await rpcRequest(socket, 'status', {}, 2000).catch(() => undefined)) as { mqtt: { connected: boolean }; store: { depth: number; dropped: number } } | undefined;

before(async () => {
  broker = await startBroker();
  sim = new PlcSim({ port: 0, churn: 1 });
  await sim.start();
  dir = tempDir('recovery-outage');
  // A persistent session: the WMS keeps its subscription across the broker's restart.
  wms = await mqttClient(broker.url, { clientId: `wms-outage-${process.pid}`, clean: false, reconnectPeriod: 200 });
  data = await collect(wms, `${ROOT}/plc/#`);
  status = await collect(wms, `${ROOT}/status`);
  const bridgeConfig = writeBridgeConfig(join(dir, 'bridge'), {
    mqtt: { url: broker.url },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.port, unitId: 1, groups: [{ name: 'fast', intervalMs: INTERVAL_MS, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  socket = join(dir, 'bridge', 'data', 'plc-bridge.sock');
  dataDir = join(dir, 'agent');
  const svcSocket = join(dir, 'svc.sock');
  agent = startAgent({
    dataDir,
    config: {
      mqtt: { url: broker.url },
      plcBridge: { config: bridgeConfig, launch: 'auto' },
      recovery: { services: [{ name: 'steady', command: [process.execPath, SERVICE, 'serve', svcSocket], probe: { kind: 'heartbeat', socket: svcSocket } }] },
    },
  });
  await agentConnected(agent, 20_000);
  await waitFor(
    async () => {
      const c = await components();
      return c['plc-bridge']?.state === 'running' && c.steady?.state === 'running';
    },
    { timeoutMs: 30_000, what: `the bridge and the service running\n${agent.logText().slice(-3000)}` },
  );
});

after(async () => {
  await agent?.kill9();
  // The bridge and the service are detached on purpose (they outlive the agent): their pid files say who they are.
  try {
    for (const f of readdirSync(join(dataDir, 'recovery')).filter((n) => n.endsWith('.pid'))) {
      const pid = (JSON.parse(readFileSync(join(dataDir, 'recovery', f), 'utf8')) as { pid: number }).pid;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } catch {
    /* no recovery dir: nothing was started */
  }
  await wms?.endAsync(true);
  await sim?.stop();
  await broker?.stop();
});

test('the broker unreachable for 120 s: no component restarted, the agent online again, the outage data replayed as historical', { timeout: 240_000 }, async () => {
  const prefix = `${ROOT}/plc/`;
  await waitFor(() => dataMessages(data, prefix).filter((m) => !m.historical).length >= 10, { timeoutMs: 20_000, what: 'live data before the outage' });
  const before = await components();
  const bridgePid = (await bridgePing(socket))?.pid;
  assert.ok(bridgePid, 'the bridge answers its ping');
  assert.equal(before['plc-bridge']?.pid, bridgePid);
  assert.equal(allIncidents(), 0, 'no incident before the outage');

  await broker.stop();
  const stoppedAt = Date.now();
  await waitFor(async () => ((await agent!.admin('status')) as { broker: { connected: boolean } }).broker.connected === false, { timeoutMs: 10_000, what: 'the agent disconnected' });
  await waitFor(async () => (await bridgeStatus())?.mqtt.connected === false, { timeoutMs: 10_000, what: 'the bridge disconnected' });
  // The outage itself is the condition under test: two minutes without a broker.
  await new Promise((r) => setTimeout(r, OUTAGE_MS - (Date.now() - stoppedAt)));
  const during = await components();
  const statusMark = status.length;
  await broker.restart();
  const restartedAt = Date.now();

  // Both reconnect when their backoff (capped at 30 s, jitter) next tries.
  await agentConnected(agent!, 60_000);
  await waitFor(() => status.slice(statusMark).some((m) => (m.payload as { state?: string }).state === 'online'), { timeoutMs: 20_000, what: "the agent's online status after the outage" });
  await waitFor(
    async () => {
      const s = await bridgeStatus();
      const live = dataMessages(data, prefix).filter((m) => !m.historical);
      return s?.mqtt.connected === true && s.store.depth === 0 && (live.at(-1)?.tick ?? 0) > restartedAt;
    },
    { timeoutMs: 90_000, intervalMs: 250, what: 'the bridge reconnected, its store replayed, live data again' },
  );

  const after = await components();
  for (const name of ['plc-bridge', 'steady']) {
    for (const [when, c] of [['during', during[name]], ['after', after[name]]] as const) {
      assert.equal(c?.state, 'running', `${name} ${when} the outage`);
      assert.equal(c?.pid, before[name]?.pid, `${name} kept its process (${when})`);
      assert.equal(c?.restarts, 0, `${name} was not restarted (${when})`);
    }
  }
  assert.equal(allIncidents(), 0, 'no incident');
  assert.equal((await bridgePing(socket))?.pid, bridgePid, 'the same bridge process answers');

  const msgs = dataMessages(data, prefix);
  const report = gapReport(msgs, INTERVAL_MS);
  assert.equal(report.topics, 1);
  assert.deepEqual(report.seqGaps, [], 'no seq gap across the outage');
  assert.equal(report.historicalDisorder, 0, 'replayed in order');
  // Polled while no broker was there: every one of them can only have come from the store.
  const outage = msgs.filter((m) => m.tick > stoppedAt && m.tick < restartedAt);
  assert.ok(outage.length >= (0.9 * OUTAGE_MS) / INTERVAL_MS, `cycles of the outage received: ${outage.length}`);
  assert.deepEqual(
    outage.filter((m) => !m.historical).map((m) => m.seq),
    [],
    'every cycle of the outage arrives with historical: true',
  );
  assert.equal((await bridgeStatus())?.store.dropped, 0, 'nothing dropped by the store bounds');
});
