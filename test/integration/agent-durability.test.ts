/**
 * Delivery through failures, against a real Mosquitto: the broker restarted five times while the
 * agent publishes events, and the agent killed with kill -9 with messages in its outbox.
 * Every QoS 1 event must arrive at least once, first sightings in order, none lost.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';

interface Note {
  type: string;
  code: string;
  message: string;
}

/** The numbers carried by `seq-test` notes, in arrival order (duplicates kept). */
function numbers(got: Received[], code: string): number[] {
  return got
    .map((m) => m.payload as Note)
    .filter((p) => p.type === 'note' && p.code === code)
    .map((p) => Number(p.message));
}

/** Every number 0..n-1 seen, and each first sighting after the one before it. */
function assertCompleteInOrder(seen: number[], n: number): void {
  const first: number[] = [];
  const set = new Set<number>();
  for (const x of seen) {
    if (!set.has(x)) {
      set.add(x);
      first.push(x);
    }
  }
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !set.has(i));
  assert.deepEqual(missing, [], `lost events: ${missing.slice(0, 20).join(', ')}`);
  assert.deepEqual(first, Array.from({ length: n }, (_, i) => i), 'first sightings out of order');
}

/** A WMS that keeps its session (clean=false) so events queue at the broker while it is away. */
async function persistentWms(broker: Broker, clientId: string, filter: string): Promise<{ client: MqttClient; got: Received[] }> {
  const client = await mqttClient(broker.url, { clientId, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 100 });
  const got = await collect(client, filter);
  return { client, got };
}

describe('delivery through broker restarts', () => {
  let broker: Broker;
  let agent: AgentProcess | undefined;
  let wms: MqttClient | undefined;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    await agent?.stop();
    await wms?.endAsync(true);
    await broker.stop();
  });

  test('broker stopped and restarted 5 times while events flow: none lost, in order, status back online each time', async (t) => {
    if (broker.kind !== 'mosquitto') return t.skip('needs mosquitto: the embedded broker keeps no sessions across a restart');
    const w = await persistentWms(broker, 'wms-restarts', 'edge/gw-dur/#');
    wms = w.client;
    agent = startAgent({
      dataDir: join(tempDir('dur-'), 'data'),
      gatewayId: 'gw-dur',
      config: { mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } } },
    });
    await agentConnected(agent);
    const a = agent;
    let sent = 0;
    let producing = true;
    const producer = (async () => {
      while (producing) {
        await a.admin('event', { code: 'seq-test', message: String(sent) });
        sent++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    for (let i = 0; i < 5; i++) {
      await waitFor(() => numbers(w.got, 'seq-test').length > sent / 2 && sent > (i + 1) * 20, { timeoutMs: 15_000, what: `events flowing before restart ${i + 1}` });
      await broker.stop();
      await new Promise((r) => setTimeout(r, 300)); // events queue in the outbox meanwhile
      await broker.restart();
      await agentConnected(a, 20_000);
    }
    producing = false;
    await producer;
    const n = sent;
    await waitFor(() => new Set(numbers(w.got, 'seq-test')).size >= n, { timeoutMs: 30_000, what: `all ${n} events at the WMS` });
    assertCompleteInOrder(numbers(w.got, 'seq-test'), n);
    const onlines = w.got.filter((m) => m.topic === 'edge/gw-dur/status' && (m.payload as { state: string }).state === 'online');
    assert.ok(onlines.length >= 6, `status online after each reconnect (saw ${onlines.length})`);
    const s = (await a.admin('status')) as { outbox: { depth: number }; broker: { connects: number } };
    assert.ok(s.broker.connects >= 6);
    await waitFor(async () => ((await a.admin('status')) as { outbox: { depth: number } }).outbox.depth === 0, { timeoutMs: 10_000, what: 'outbox empty' });
  });
});

describe('delivery after kill -9', () => {
  let broker: Broker;
  const agents: AgentProcess[] = [];
  let wms: MqttClient | undefined;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await wms?.endAsync(true);
    await broker.stop();
  });

  test('events queued while the broker is down survive kill -9 of the agent and arrive after restart, in order', async () => {
    const dataDir = join(tempDir('k9-'), 'data');
    const config = { mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 500 } } };
    const first = startAgent({ dataDir, gatewayId: 'gw-k9', config });
    agents.push(first);
    await agentConnected(first);
    await broker.stop();
    await waitFor(async () => !((await first.admin('status')) as { broker: { connected: boolean } }).broker.connected, { timeoutMs: 10_000, what: 'agent sees the broker gone' });
    const N = 200;
    for (let i = 0; i < N; i++) await first.admin('event', { code: 'k9-test', message: String(i) });
    const before = (await first.admin('status')) as { outbox: { depth: number } };
    assert.ok(before.outbox.depth >= N, `outbox holds the events (depth ${before.outbox.depth})`);
    await first.kill9();

    await broker.restart();
    const w = await persistentWms(broker, 'wms-k9', 'edge/gw-k9/#');
    wms = w.client;
    const second = startAgent({ dataDir, gatewayId: 'gw-k9', config });
    agents.push(second);
    await waitFor(() => new Set(numbers(w.got, 'k9-test')).size >= N, { timeoutMs: 20_000, what: `all ${N} events after restart\n${second.logText().slice(-2000)}` });
    assertCompleteInOrder(numbers(w.got, 'k9-test'), N);
    await waitFor(async () => ((await second.admin('status')) as { outbox: { depth: number } }).outbox.depth === 0, { timeoutMs: 10_000, what: 'outbox empty' });
  });
});
