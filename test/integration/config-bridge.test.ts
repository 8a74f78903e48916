/**
 * The `config` operation on the PLC bridge (docs/config-apply.md): a tag list change applied
 * through a handover by the agent that supervises the bridge, with a real Mosquitto, a simulated
 * PLC in its own process and the real bridge: no seq gap, the new tag appears, the removed one
 * stops; the file is the new one, known-good, and the change is in the audit trail.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, waitFor, type Received } from '../helpers/util.js';
import { startSupervisedBridge, type SupervisedBridge } from '../helpers/supervised-bridge.js';
import { bridgePing } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { wmsFor, type Wms } from '../helpers/config-apply.js';
import { configHash } from '../../core/config-edit.js';
import { listKnownGood } from '../../recovery/known-good.js';

const GW = 'gw-test';
const INTERVAL_MS = 200;
let broker: Broker;
let client: MqttClient;
let wms: Wms;
let data: Received[];
let sb: SupervisedBridge;

before(async () => {
  broker = await startBroker();
  client = await mqttClient(broker.url);
  wms = await wmsFor(client, GW);
  data = await collect(client, `edge/${GW}/plc/#`);
  sb = await startSupervisedBridge({ broker, simArgs: ['--churn', '3'], intervalMs: INTERVAL_MS, escalation: { restoreConfigAfter: 50, rollbackAfter: 60, slowRetryAfter: 70 }, name: 'config-bridge-' });
});

after(async () => {
  await sb.stop();
  await client.endAsync();
  await broker.stop();
});

type Tag = { name: string; area: string; address: number; type: string };
interface BridgeDoc {
  devices: { groups: { name: string; tags: Tag[] }[] }[];
}

const tagsSeen = (from: number): Set<string> => new Set(dataMessages(data.slice(from), `edge/${GW}/plc/plc0/fast`).flatMap((m) => Object.keys(m.values)));

test('a PLC bridge tag list change is applied through a handover: no seq gap, the new tag appears, the removed one stops', async () => {
  const apply = async (id: string, tags: Tag[]): Promise<number> => {
    await wms.send('config', `get-${id}`, { action: 'get', target: 'plc-bridge' });
    const g = (await wms.outcome(`get-${id}`)).result as { hash: string; config: BridgeDoc };
    assert.equal(g.hash, configHash(readFileSync(sb.bridgeConfig)));
    const doc = structuredClone(g.config);
    doc.devices[0]!.groups[0]!.tags = tags;
    const pid0 = (await bridgePing(sb.socket))!.pid;
    await wms.send('config', id, { action: 'apply', target: 'plc-bridge', baseHash: g.hash, config: doc });
    const r = await wms.outcome(id, 90_000);
    assert.equal(r.status, 'successful', JSON.stringify(r));
    assert.deepEqual(r.result?.changed, ['devices']);
    const p = await bridgePing(sb.socket);
    assert.equal(p?.role, 'active');
    assert.notEqual(p?.pid, pid0, 'a successor took the new file over');
    assert.equal(configHash(readFileSync(sb.bridgeConfig)), r.result?.toHash);
    return data.length;
  };
  const counter = { name: 'counter', area: 'holding', address: 0, type: 'uint16' };
  const extra = { name: 'extra', area: 'holding', address: 1, type: 'uint16' };

  await waitFor(() => tagsSeen(0).has('counter'), { timeoutMs: 20_000, what: 'counter published' });
  assert.ok(!tagsSeen(0).has('extra'));
  const afterAdd = await apply('add-extra', [counter, extra]);
  await waitFor(() => tagsSeen(afterAdd).has('extra'), { timeoutMs: 20_000, what: 'the new tag published' });

  const afterRemove = await apply('drop-counter', [extra]);
  const mark = data.length;
  await waitFor(() => dataMessages(data.slice(mark), `edge/${GW}/plc/plc0/fast`).length >= 10, { timeoutMs: 20_000, what: 'ten messages after the second handover' });
  const late = tagsSeen(mark);
  assert.ok(late.has('extra'));
  assert.ok(!late.has('counter'), 'the removed tag stopped');
  assert.ok(afterRemove <= mark);

  const report = gapReport(dataMessages(data, `edge/${GW}/plc/plc0/fast`), 10 * INTERVAL_MS);
  assert.deepEqual(report.seqGaps, [], 'seq continues across the handovers');
  assert.equal(report.duplicates, 0);
  assert.equal(listKnownGood(sb.dataDir, sb.bridgeConfig)[0]?.sha256, configHash(readFileSync(sb.bridgeConfig)));
});
