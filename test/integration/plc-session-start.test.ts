/**
 * What the WMS sees when a bridge session starts and ends (issue #12, items 12 and 13), black-box:
 * the real bridge, a real Mosquitto, the simulated PLC in its own process.
 * - A restart shows no false `bad`: the first report of each session comes from a real read, and
 *   no value is reported `bad` while the PLC answers.
 * - The Last Will never contradicts what was published before it: after minutes of good reads a
 *   kill -9 must not tell the WMS `link: down, lastReadAt: null`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { MqttClient } from 'mqtt';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgeActive, bridgeSocketOf, COUNTER_TAG, onePlc, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { dataMessages } from '../helpers/plc-data.js';

const ROOT = 'edge/gw-test';

let broker: Broker;
let sim: SimProcess;
let wms: MqttClient;
const bridges: BridgeProcess[] = [];
/**
 * In front of the PLC: refuses (resets) the first connection of each bridge session, then
 * forwards. A PLC that is not ready when the bridge starts; its first polls cannot read.
 */
let gate: Server;
let refuseNext = true;
const piped: Socket[] = [];

before(async () => {
  broker = await startBroker();
  sim = await startSimProcess(['--churn', '1']);
  wms = await mqttClient(broker.url);
  gate = createServer((s) => {
    s.on('error', () => undefined);
    if (refuseNext) {
      refuseNext = false;
      s.resetAndDestroy();
      return;
    }
    const up = connect(sim.ports[0]!, '127.0.0.1');
    up.on('error', () => s.destroy());
    s.on('close', () => up.destroy());
    up.on('close', () => s.destroy());
    s.pipe(up).pipe(s);
    piped.push(s, up);
  });
  await new Promise<void>((r) => gate.listen(0, '127.0.0.1', () => r()));
});

after(async () => {
  for (const s of piped) s.destroy();
  await new Promise<void>((r) => gate.close(() => r()));
  for (const b of bridges) await b.stop();
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

function config(dir: string, port: number): string {
  return writeBridgeConfig(dir, onePlc(broker.url, port, [{ name: 'fast', intervalMs: 100, tags: [COUNTER_TAG, { name: 'r1', area: 'holding', address: 1, type: 'uint16' }] }]));
}

interface PlcStatus {
  state: string;
  session?: string;
  devices?: Record<string, { link: string; lastReadAt: string | null }>;
}

const statuses = (got: Received[]): PlcStatus[] => got.filter((m) => m.topic === `${ROOT}/plc/status`).map((m) => m.payload as PlcStatus);

test('restarts: the first report of every session is a real read, never a false bad', { timeout: 90_000 }, async () => {
  const dir = tempDir('plc-session');
  const path = config(dir, (gate.address() as { port: number }).port);
  const socket = bridgeSocketOf(dir);
  const got: Received[] = await collect(wms, `${ROOT}/plc/#`);
  const topic = `${ROOT}/plc/plc0/fast`;
  const sessions = 4;
  for (let i = 0; i < sessions; i++) {
    const from = got.length;
    refuseNext = true;
    const b = startBridge(path);
    bridges.push(b);
    await bridgeActive(socket, b);
    await waitFor(() => dataMessages(got.slice(from), topic).length >= 5, { timeoutMs: 15_000, what: `data of session ${i + 1}` });
    await b.stop();
    const msgs = dataMessages(got.slice(from), topic).sort((x, y) => x.seq - y.seq);
    const first = msgs[0]!;
    assert.equal(first.seq, 1, `session ${i + 1} starts at seq 1`);
    assert.deepEqual(
      Object.entries(first.values).map(([k, v]) => [k, v.q]),
      [
        ['counter', 'good'],
        ['r1', 'good'],
      ],
      `session ${i + 1}: seq 1 reports every value, read good: ${JSON.stringify(first)}`,
    );
    for (const m of msgs) for (const [k, v] of Object.entries(m.values)) assert.notEqual(v.q, 'bad', `session ${i + 1} seq ${m.seq}: ${k} ${JSON.stringify(v)}`);
  }
});

test('the Last Will after a kill -9 does not contradict the device states published before it', { timeout: 60_000 }, async () => {
  const dir = tempDir('plc-will');
  const path = config(dir, sim.ports[0]!);
  const socket = bridgeSocketOf(dir);
  const got: Received[] = await collect(wms, `${ROOT}/plc/#`);
  const b = startBridge(path);
  bridges.push(b);
  await bridgeActive(socket, b);
  await waitFor(() => statuses(got).some((s) => s.state === 'online' && s.devices?.plc0?.link === 'up'), { timeoutMs: 10_000, what: 'an online status with plc0 up' });
  await waitFor(() => dataMessages(got, `${ROOT}/plc/plc0/fast`).some((m) => m.values.counter?.q === 'good'), { timeoutMs: 10_000, what: 'good reads of plc0' });
  // Minutes of reads in the issue; a second here: the will was fixed at connect all the same.
  await new Promise((r) => setTimeout(r, 1000));
  const lastOnline = statuses(got).filter((s) => s.state === 'online').at(-1)!;
  const lastGood = dataMessages(got, `${ROOT}/plc/plc0/fast`).filter((m) => m.values.counter?.q === 'good').at(-1)!;
  const seen = got.length;
  await b.kill9();
  await waitFor(() => statuses(got.slice(seen)).some((s) => s.state === 'offline'), { timeoutMs: 10_000, what: 'the Last Will' });
  const will = statuses(got.slice(seen)).find((s) => s.state === 'offline')!;
  assert.equal(will.session, lastOnline.session, 'the will of the session that was online');
  const dev = will.devices?.plc0;
  if (dev !== undefined) {
    // If it says anything about the device, it is what was last published (link up, good
    // values read), or later.
    assert.equal(dev.link, 'up', `the will says link ${dev.link}: ${JSON.stringify(will)}`);
    assert.ok(dev.lastReadAt !== null && Date.parse(dev.lastReadAt) >= Date.parse(lastGood.values.counter!.ts), `the will's lastReadAt: ${JSON.stringify(will)}`);
  }
});
