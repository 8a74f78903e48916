/**
 * Broker failover (`mqtt.urls`, issue 18) with two real Mosquitto instances, the real agent and
 * the real PLC bridge: both start on the first broker; the first is stopped (both move to the
 * second, and say so in `status`); the second is stopped and the first started again (both come
 * back to the first). Each broker is also asked directly: the gateway's retained `online` status
 * is on the broker it moved to.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBroker, type Broker } from '../helpers/broker.js';
import { startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgeSocketOf, onePlc, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { rpcRequest } from '../../lib/rpc.js';
import { collect, freePort, mqttClient, tempDir, waitFor } from '../helpers/util.js';

const GW = 'gw-failover';
let b1: Broker;
let b2: Broker;
let agent: AgentProcess;
let bridge: BridgeProcess;
let bridgeDir: string;

before(async () => {
  b1 = await startBroker();
  b2 = await startBroker();
});

after(async () => {
  await bridge?.stop();
  await agent?.stop();
  await b1?.stop();
  await b2?.stop();
});

interface Linked {
  connected: boolean;
  url: string;
}

async function agentLink(): Promise<Linked | undefined> {
  const s = (await agent.admin('status').catch(() => undefined)) as { broker?: { connected: boolean; url: string } } | undefined;
  return s?.broker;
}

async function bridgeLink(): Promise<Linked | undefined> {
  const s = (await rpcRequest(bridgeSocketOf(bridgeDir), 'status').catch(() => undefined)) as { mqtt?: { connected: boolean; broker: string } } | undefined;
  return s?.mqtt ? { connected: s.mqtt.connected, url: s.mqtt.broker } : undefined;
}

/** Both are connected to `b`, by their own account and by what `b` holds of them. */
async function bothOn(b: Broker, what: string): Promise<void> {
  const on = async (get: () => Promise<Linked | undefined>): Promise<boolean> => {
    const l = await get();
    return l?.connected === true && l.url === b.url;
  };
  await waitFor(async () => (await on(agentLink)) && (await on(bridgeLink)), {
    what: `${what}: agent ${JSON.stringify(await agentLink())}, bridge ${JSON.stringify(await bridgeLink())}\n${agent.logText().slice(-2000)}`,
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  const c = await mqttClient(b.url, { clientId: `probe-${Date.now()}` });
  try {
    const got = await collect(c, `edge/${GW}/#`);
    const online = (topic: string): boolean => got.some((m) => m.topic === topic && m.retain && (m.payload as { state?: string }).state === 'online');
    await waitFor(() => online(`edge/${GW}/status`) && online(`edge/${GW}/plc/status`), { what: `retained online statuses on ${b.url}`, timeoutMs: 10_000 });
  } finally {
    await c.endAsync(true);
  }
}

test('the agent and the bridge move to the next broker when one stops, and back', async () => {
  const mqtt = { url: 'mqtt://127.0.0.1:1', urls: [b1.url, b2.url], reconnect: { initialMs: 100, maxMs: 1000 } };
  agent = startAgent({ dataDir: join(tempDir('failover'), 'data'), gatewayId: GW, config: { mqtt } });
  bridgeDir = tempDir('failover-bridge');
  const plcPort = await freePort(); // nothing listens: the device is down, the MQTT link is what is tested
  bridge = startBridge(writeBridgeConfig(bridgeDir, { ...onePlc(b1.url, plcPort, [{ name: 'g', intervalMs: 1000, tags: [{ name: 'r0', area: 'holding', address: 0, type: 'uint16' }] }]), gatewayId: GW, mqtt }));
  await bothOn(b1, 'both on the first broker');
  await b1.stop();
  await bothOn(b2, 'both moved to the second broker');
  await b2.stop();
  await b1.restart();
  await bothOn(b1, 'both back on the first broker');
  assert.ok(bridge.logText().includes('reconnecting to the broker'));
});
