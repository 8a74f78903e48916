/**
 * Retained results do not pile up on the broker (issue 18): with MQTT 5 `~/res/{id}` carries a
 * message expiry (commands.resultExpirySec) and a real Mosquitto drops it when it has passed;
 * with MQTT 3.1.1 the agent clears a result (empty retained publish) when it forgets the command
 * id. Whether a topic holds a retained message is asked as a new subscriber would: subscribe,
 * then publish a probe on the same filter; retained messages come before the probe.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';
import { collect, mqttClient, tempDir, waitFor } from '../helpers/util.js';

let broker: Broker;
let wms: MqttClient;
const agents: AgentProcess[] = [];

before(async () => {
  broker = await startBroker();
  wms = await mqttClient(broker.url, { clientId: 'wms-retained' });
});

after(async () => {
  for (const a of agents) await a.stop();
  await wms?.endAsync(true);
  await broker?.stop();
});

/** The retained payload of `topic` that a new subscriber gets, or undefined when there is none. */
async function retained(topic: string): Promise<string | undefined> {
  const c = await mqttClient(broker.url, { clientId: `probe-${randomUUID()}`, protocolVersion: 5 });
  try {
    const probe = `${topic}/probe-${randomUUID()}`;
    const got = await collect(c, `${topic}/#`);
    await c.publishAsync(probe, 'probe', { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === probe), { what: 'the probe', timeoutMs: 5000, intervalMs: 10 });
    const r = got.find((m) => m.topic === topic && m.retain);
    return r === undefined ? undefined : JSON.stringify(r.payload);
  } finally {
    await c.endAsync(true);
  }
}

async function agent(gw: string, config: Record<string, unknown>): Promise<AgentProcess> {
  const a = startAgent({ dataDir: join(tempDir('retained'), 'data'), gatewayId: gw, config: { mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } }, ...config } });
  agents.push(a);
  await agentConnected(a);
  return a;
}

/**
 * A command the agent rejects at once: its `rejected` status is published retained. Sent again
 * (same id: the agent answers it once and only republishes its status) until the result is
 * there: `agentConnected` says connected, not yet subscribed, and a command published in between
 * is not delivered (seen on a loaded machine).
 */
async function rejectedCommand(gw: string, id: string): Promise<void> {
  const has = async (): Promise<boolean> => (await retained(`edge/${gw}/res/${id}`))?.includes('"rejected"') === true;
  for (let n = 1; ; n++) {
    await wms.publishAsync(`edge/${gw}/cmd/no-such-op`, JSON.stringify({ id }), { qos: 1 });
    try {
      await waitFor(has, { what: `the retained result of ${id}`, timeoutMs: 2000 });
      return;
    } catch (err) {
      if (n >= 10) throw err;
    }
  }
}

test('MQTT 5: a retained result carries a message expiry and the broker drops it', async () => {
  await agent('gw-v5', { mqtt: { url: broker.url, protocolVersion: 5, reconnect: { initialMs: 100, maxMs: 1000 } }, commands: { resultExpirySec: 2 } });
  await rejectedCommand('gw-v5', 'r5-1');
  await waitFor(async () => (await retained('edge/gw-v5/res/r5-1')) === undefined, { what: 'the retained result to expire', timeoutMs: 20_000, intervalMs: 500 });
});

test('MQTT 3.1.1: a retained result is cleared when the agent forgets the command', async () => {
  const config = { mqtt: { url: broker.url, protocolVersion: 4, reconnect: { initialMs: 100, maxMs: 1000 } } };
  const a = await agent('gw-v4', config);
  await rejectedCommand('gw-v4', 'r4-1');
  await rejectedCommand('gw-v4', 'r4-keep');
  await a.stop();
  // r4-1 finished 40 days ago (beyond commands.retentionDays); r4-keep is recent.
  const db = new Database(join(a.dataDir, 'agent.db'));
  db.prepare("UPDATE commands SET updated_at = updated_at - 40 * 86400000 WHERE id = 'r4-1'").run();
  db.close();
  const b = startAgent({ dataDir: a.dataDir, gatewayId: 'gw-v4', config });
  agents.push(b);
  await agentConnected(b);
  await waitFor(async () => (await retained('edge/gw-v4/res/r4-1')) === undefined, { what: 'the forgotten result to be cleared', timeoutMs: 20_000, intervalMs: 300 });
  assert.ok((await retained('edge/gw-v4/res/r4-keep'))?.includes('"rejected"'), 'the result of a command still remembered stays');
});
