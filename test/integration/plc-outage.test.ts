/**
 * Store and forward under load: the broker is stopped for 30 s while the bridge polls 2 devices
 * x 2 groups every 100 ms. After the broker is back, the WMS (a persistent session, so the broker
 * keeps what it missed) has every seq of every group topic exactly once in the union of live and
 * replayed data, replayed data carries `historical: true` and arrives in order, and no poll
 * interval is missing. The PLCs run in their own process (a busy test process must not slow them).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgeActive, bridgeSocketOf, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { rpcRequest } from '../../lib/rpc.js';

const ROOT = 'edge/gw-test';
const OUTAGE_MS = 30_000;

let broker: Broker;
let sim: SimProcess;
let bridge: BridgeProcess;
let wms: MqttClient;
let dir: string;

function tags(n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({ name: `t${i}`, area: 'holding', address: i, type: 'uint16' }));
}

before(async () => {
  broker = await startBroker();
  // Registers 0..200 change on every read, so every cycle of both groups has a report.
  sim = await startSimProcess(['--devices', '2', '--churn', '201']);
  const devices = sim.ports.map((port, d) => ({
    name: `plc${d}`,
    host: '127.0.0.1',
    port,
    unitId: 1,
    timeoutMs: 500,
    groups: [
      { name: 'a', intervalMs: 100, tags: tags(50) },
      { name: 'b', intervalMs: 100, tags: tags(100).map((t, i) => ({ ...t, name: `u${i}`, address: 200 + i })) },
    ],
  }));
  dir = tempDir('plc-outage');
  const config = writeBridgeConfig(dir, { mqtt: { url: broker.url }, store: { replayPerSec: 500 }, devices });
  wms = await mqttClient(broker.url, { clientId: 'wms-outage', clean: false, reconnectPeriod: 200 });
  bridge = startBridge(config);
  await bridgeActive(bridgeSocketOf(dir), bridge);
});

after(async () => {
  await bridge?.stop();
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

test('30 s broker outage under load: no seq gap after replay, order kept, historical set', { timeout: 120_000 }, async () => {
  const got: Received[] = await collect(wms, `${ROOT}/plc/#`);
  await waitFor(() => dataMessages(got, `${ROOT}/plc/`).length >= 40, { timeoutMs: 15_000, what: 'live data before the outage' });
  await broker.stop();
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  await broker.restart();
  // 4 topics x 10 cycles/s x 30 s = about 1,200 messages to replay at 500/s.
  await waitFor(
    () => {
      const msgs = dataMessages(got, `${ROOT}/plc/`);
      const hist = msgs.filter((m) => m.historical).length;
      const live = msgs.filter((m) => !m.historical);
      const afterOutage = live.length > 0 && live.at(-1)!.tick > Date.now() - 2000;
      return hist >= 4 * 10 * (OUTAGE_MS / 1000) * 0.9 && afterOutage && gapReport(msgs, 100).seqGaps.length === 0;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: 'the replay to close every seq gap' },
  );
  const msgs = dataMessages(got, `${ROOT}/plc/`);
  const report = gapReport(msgs, 100);
  assert.equal(report.topics, 4);
  assert.deepEqual(report.seqGaps, [], 'no seq gap');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
  assert.equal(report.historicalDisorder, 0, 'replayed in order');
  const hist = msgs.filter((m) => m.historical);
  assert.ok(hist.length >= 1000, `historical messages: ${hist.length}`);
  const status = (await rpcRequest(bridgeSocketOf(dir), 'status')) as { store: { dropped: number; depth: number } };
  assert.equal(status.store.dropped, 0, 'nothing dropped by the store bounds');
});
