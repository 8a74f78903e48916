/**
 * Handover between bridge instances (what an update does): three consecutive handovers while
 * the bridge polls every 100 ms and the WMS keeps writing. The data stream has no seq gap and
 * no missed interval across them, every write gets exactly one terminal status, and the PLC saw
 * exactly one write request per set (none executed twice).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgeActive, bridgeExitLogged, bridgePing, bridgeSocketOf, COUNTER_TAG, holdingTags, onePlc, SETPOINT_GROUP, pidAlive, startBridge, upgradeBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';

const ROOT = 'edge/gw-test';
const TERMINAL = new Set(['successful', 'failed', 'rejected', 'cancelled']);

let broker: Broker;
let sim: SimProcess;
let wms: MqttClient;
const bridges: BridgeProcess[] = [];
/** Successors the bridges started (upgrade): not children of this process. */
const successors: number[] = [];

before(async () => {
  broker = await startBroker();
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  sim = await startSimProcess(['--churn', '1']);
  wms = await mqttClient(broker.url);
});

after(async () => {
  for (const pid of successors) if (pidAlive(pid)) process.kill(pid, 'SIGTERM');
  for (const b of bridges) await b.stop();
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

test('3 handovers under load with writes in flight: no gap, no write twice', { timeout: 150_000 }, async () => {
  const dir = tempDir('plc-handover');
  const config = writeBridgeConfig(dir, onePlc(broker.url, sim.ports[0], [{ name: 'fast', intervalMs: 100, tags: [COUNTER_TAG, ...holdingTags(40, 10)] }, SETPOINT_GROUP]));
  const socket = bridgeSocketOf(dir);
  const got: Received[] = await collect(wms, `${ROOT}/#`);
  const first = startBridge(config);
  bridges.push(first);
  await bridgeActive(socket, first);
  await waitFor(() => dataMessages(got, `${ROOT}/plc/plc0/fast`).length >= 10, { timeoutMs: 10_000, what: 'data' });

  // Writes every 40 ms for the whole test, each id once.
  let sent = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      const id = `hw-${++sent}`;
      await wms.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id, tags: { setpoint: sent } }), { qos: 1 });
      await new Promise((r) => setTimeout(r, 40));
    }
  })();
  const writesBefore = (await sim.stats()).writes;

  // Each round the running bridge starts its successor itself (`upgrade`, what an update does).
  let current = first.pid;
  for (let round = 1; round <= 3; round++) {
    await new Promise((r) => setTimeout(r, 1500));
    const next = await upgradeBridge(socket);
    successors.push(next);
    const ping = await bridgePing(socket);
    assert.equal(ping?.pid, next, `round ${round}: the successor answers on the main socket`);
    assert.equal(ping.role, 'active');
    const code = await bridgeExitLogged(first.logs, current);
    assert.equal(code, 0, `round ${round}: the old instance exits 0 after the handover; log:\n${first.logText().slice(-2000)}`);
    current = next;
  }
  await new Promise((r) => setTimeout(r, 1500));
  writing = false;
  await writer;

  const ids = Array.from({ length: sent }, (_, i) => `hw-${i + 1}`);
  const terminal = (id: string): { status: string; ts: string }[] =>
    got.filter((m) => m.topic === `${ROOT}/res/${id}`).map((m) => m.payload as { status: string; ts: string }).filter((p) => TERMINAL.has(p.status));
  await waitFor(() => ids.every((id) => terminal(id).length > 0), { timeoutMs: 20_000, what: 'a terminal status for every write' });
  for (const id of ids) {
    // While both instances are subscribed, the one that did not claim the id publishes its
    // latest status again: the same message, never a second execution.
    const distinct = new Set(terminal(id).map((p) => JSON.stringify(p)));
    assert.equal(distinct.size, 1, `${id} reached one terminal status: ${[...distinct].join(' | ')}`);
    assert.equal(terminal(id)[0]!.status, 'successful', id);
  }
  assert.equal((await sim.stats()).writes - writesBefore, sent, 'the PLC saw exactly one write request per set');
  assert.deepEqual(await sim.holding(100, 1), [sent], 'the last write is in the PLC');

  const fast = dataMessages(got, `${ROOT}/plc/plc0/fast`);
  const report = gapReport(fast, 100);
  assert.deepEqual(report.seqGaps, [], 'seq continues across handovers');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
  assert.equal(report.duplicates, 0, 'no seq published twice');
  const pids = new Set([first.pid, ...successors]);
  assert.equal(pids.size, 4);
});
