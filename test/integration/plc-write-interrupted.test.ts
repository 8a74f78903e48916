/**
 * A write that a bridge process claimed and never finished (issue #12, item 1): the process is
 * killed (kill -9) while one set is being written and another waits behind it. The next session
 * closes both `failed` with `interrupted` (their outcome is unknown: not retried), and sending
 * the id again gets that terminal status, not `executing`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { bridgeActive, bridgeSocketOf, onePlc, SETPOINT_GROUP, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';

const ROOT = 'edge/gw-test';

let broker: Broker;
let wms: MqttClient;
/** A "PLC" that accepts connections and never answers: a write sent to it stays in flight. */
let silent: Server;
const sockets: Socket[] = [];
const bridges: BridgeProcess[] = [];

before(async () => {
  broker = await startBroker();
  wms = await mqttClient(broker.url);
  silent = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
});

after(async () => {
  for (const b of bridges) await b.stop();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => silent.close(() => r()));
  await wms?.endAsync();
  await broker?.stop();
});

interface Status {
  status: string;
  reason?: { code: string };
  result?: { was?: string };
}

test('writes claimed by a killed process are closed interrupted at the next start, and not retried', { timeout: 60_000 }, async () => {
  const dir = tempDir('plc-interrupted');
  const port = (silent.address() as { port: number }).port;
  const config = writeBridgeConfig(dir, onePlc(broker.url, port, [{ ...SETPOINT_GROUP, intervalMs: 1000 }], 30_000));
  const res = new Map<string, Status[]>();
  wms.on('message', (topic, payload) => {
    if (!topic.startsWith(`${ROOT}/res/`)) return;
    const id = topic.slice(`${ROOT}/res/`.length);
    res.set(id, [...(res.get(id) ?? []), JSON.parse(payload.toString()) as Status]);
  });
  await wms.subscribeAsync(`${ROOT}/res/#`, { qos: 1 });
  const socket = bridgeSocketOf(dir);
  const first = startBridge(config);
  bridges.push(first);
  await bridgeActive(socket, first);
  await waitFor(() => sockets.length > 0, { timeoutMs: 10_000, what: 'the bridge to connect to the PLC' });

  await wms.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id: 'int-1', tags: { setpoint: 1 } }), { qos: 1 });
  await wms.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id: 'int-2', tags: { setpoint: 2 } }), { qos: 1 });
  await waitFor(() => res.get('int-1')?.some((s) => s.status === 'executing') === true && res.get('int-2')?.some((s) => s.status === 'accepted') === true, {
    timeoutMs: 10_000,
    what: 'int-1 executing and int-2 accepted',
  });
  await first.kill9();

  const second = startBridge(config);
  bridges.push(second);
  await bridgeActive(socket, second);
  const terminal = (id: string): Status | undefined => res.get(id)?.find((s) => s.status !== 'accepted' && s.status !== 'executing');
  await waitFor(() => terminal('int-1') !== undefined && terminal('int-2') !== undefined, { timeoutMs: 15_000, what: 'a terminal status for both writes after the restart' });
  for (const [id, was] of [
    ['int-1', 'executing'],
    ['int-2', 'accepted'],
  ] as const) {
    const t = terminal(id)!;
    assert.equal(t.status, 'failed', `${id}: ${JSON.stringify(t)}`);
    assert.equal(t.reason?.code, 'interrupted', id);
    assert.equal(t.result?.was, was, id);
  }

  // Sent again: the same terminal status, not `executing`, and nothing new is written.
  const before = res.get('int-1')!.length;
  await wms.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id: 'int-1', tags: { setpoint: 1 } }), { qos: 1 });
  await waitFor(() => res.get('int-1')!.length > before, { timeoutMs: 10_000, what: 'the status of int-1 again' });
  const again = res.get('int-1')!.slice(before);
  assert.deepEqual(again.map((s) => s.status), ['failed'], JSON.stringify(again));
  assert.equal(again[0]!.reason?.code, 'interrupted');
});
