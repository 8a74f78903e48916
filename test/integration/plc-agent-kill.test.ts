/**
 * The bridge does not depend on the agent: the agent (which started the bridge detached, as it
 * does without systemd) is killed with kill -9 and started again 5 times while the bridge polls
 * every 100 ms. The bridge keeps its pid (never restarted: the next agent adopts it), and the
 * WMS sees no seq gap and no missed poll interval.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgePing, writeBridgeConfig } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';

const ROOT = 'edge/gw-test';

let broker: Broker;
let sim: SimProcess;
let wms: MqttClient;
let agent: AgentProcess | undefined;
let bridgeSocket = '';

before(async () => {
  broker = await startBroker();
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  sim = await startSimProcess(['--churn', '1']);
  wms = await mqttClient(broker.url);
});

after(async () => {
  await agent?.stop();
  const p = bridgeSocket ? await bridgePing(bridgeSocket) : undefined;
  if (p) process.kill(p.pid, 'SIGTERM');
  if (p) await waitFor(async () => (await bridgePing(bridgeSocket)) === undefined, { timeoutMs: 10_000, what: 'the bridge to stop' }).catch(() => process.kill(p.pid, 'SIGKILL'));
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

test('agent kill -9 and restart x5 under load: the bridge keeps running, no seq gap, no missed interval', { timeout: 180_000 }, async () => {
  const dir = tempDir('plc-agent-kill');
  const bridgeConfig = writeBridgeConfig(join(dir, 'bridge'), {
    mqtt: { url: broker.url },
    devices: [
      {
        name: 'plc0',
        host: '127.0.0.1',
        port: sim.ports[0],
        unitId: 1,
        timeoutMs: 500,
        groups: [
          { name: 'fast', intervalMs: 100, tags: Array.from({ length: 100 }, (_, i) => ({ name: `t${i}`, area: 'holding', address: i, type: 'uint16' })) },
          { name: 'slow', intervalMs: 500, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] },
        ],
      },
    ],
  });
  bridgeSocket = join(dir, 'bridge', 'data', 'plc-bridge.sock');
  const got: Received[] = await collect(wms, `${ROOT}/plc/#`);
  const agentConfig = { mqtt: { url: broker.url }, plcBridge: { config: bridgeConfig, launch: 'auto' } };
  const dataDir = join(dir, 'agent');
  agent = startAgent({ dataDir, config: agentConfig });
  await agentConnected(agent, 20_000);
  await waitFor(async () => (await bridgePing(bridgeSocket))?.role === 'active', { timeoutMs: 20_000, what: `the agent to start the bridge; agent log:\n${agent.logText().slice(-3000)}` });
  const bridgePid = (await bridgePing(bridgeSocket))!.pid;
  await waitFor(() => dataMessages(got, `${ROOT}/plc/`).length >= 10, { timeoutMs: 10_000, what: 'data' });

  for (let i = 1; i <= 5; i++) {
    await agent.kill9();
    await new Promise((r) => setTimeout(r, 500));
    agent = startAgent({ dataDir, config: agentConfig });
    await agentConnected(agent, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    const p = await bridgePing(bridgeSocket);
    assert.equal(p?.pid, bridgePid, `round ${i}: the same bridge process runs (not restarted); agent log:\n${agent.logText().slice(-2000)}`);
  }
  const status = (await agent.admin('status')) as { components?: { name: string; restarts?: number }[] };
  const bridge = status.components?.find((c) => c.name === 'plc-bridge');
  assert.ok(bridge, `the agent supervises the bridge: ${JSON.stringify(status.components)}`);
  assert.equal(bridge.restarts ?? 0, 0, 'the bridge was never restarted');

  const fast = dataMessages(got, `${ROOT}/plc/plc0/fast`);
  assert.ok(fast.length >= 50, `data messages: ${fast.length}`);
  const report = gapReport(fast, 100);
  assert.deepEqual(report.seqGaps, [], 'no seq gap');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
  // Cycles polled before the bridge's first connection are replayed as historical; after that,
  // the agent's kills never cost the bridge its broker connection.
  const firstLive = Math.min(...fast.filter((m) => !m.historical).map((m) => m.seq));
  assert.deepEqual(fast.filter((m) => m.historical && m.seq > firstLive).map((m) => m.seq), [], 'nothing went through the store after the bridge first connected');
});
