/**
 * The PLC bridge end to end: the real `edge-agent plc-bridge` process, a real Mosquitto, and the
 * simulated PLC (demo/plc-sim.ts) in this process. Data flows with increasing seq and the
 * status is retained; writes round-trip with read-back; every bad write is rejected with its code
 * and leaves the PLC untouched; a repeated id is not executed twice.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { PlcSim } from '../../demo/plc-sim.js';
import { getValues, setValues } from '../../demo/plc-sim-pdu.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgeActive, bridgeSocketOf, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';

const GW = 'gw-test';
const ROOT = `edge/${GW}`;

interface Data {
  seq: number;
  ts: string;
  values: Record<string, { v: unknown; q: string; ts: string; reason?: string }>;
  historical?: boolean;
}

function dataOf(got: Received[], topic: string): Data[] {
  return got.filter((m) => m.topic === topic).map((m) => m.payload as Data);
}

function resOf(got: Received[], id: string): { status: string; reason?: { code: string }; result?: { readBack?: Record<string, unknown> } }[] {
  return got.filter((m) => m.topic === `${ROOT}/res/${id}`).map((m) => m.payload as { status: string; reason?: { code: string } });
}

describe('plc bridge end to end', () => {
  let broker: Broker;
  let sim: PlcSim;
  let bridge: BridgeProcess;
  let wms: MqttClient;
  let got: Received[];
  let ticker: NodeJS.Timeout;
  let dir: string;

  before(async () => {
    broker = await startBroker();
    sim = new PlcSim({ port: 0 });
    const port = await sim.start();
    // A counter that changes faster than the poll, so every cycle has something to report.
    let n = 0;
    ticker = setInterval(() => setValues(sim.regs, 'holding', 0, [++n & 0xffff]), 10);
    setValues(sim.regs, 'holding', 10, [0b1010_0000_0000_0101]);
    setValues(sim.regs, 'input', 0, [0x42f6, 0xe979]);
    dir = tempDir('plc-e2e');
    const config = writeBridgeConfig(dir, {
      mqtt: { url: broker.url },
      devices: [
        {
          name: 'sorter1',
          host: '127.0.0.1',
          port,
          unitId: 1,
          timeoutMs: 500,
          groups: [
            {
              name: 'fast',
              intervalMs: 100,
              tags: [
                { name: 'counter', area: 'holding', address: 0, type: 'uint16' },
                { name: 'speed', area: 'holding', address: 2, type: 'int16', scale: 0.1, access: 'read-write', min: -100, max: 100 },
                { name: 'target', area: 'holding', address: 4, type: 'float32', access: 'read-write' },
                { name: 'jam', area: 'holding', address: 10, type: 'bool', bit: 3, access: 'read-write' },
                { name: 'running', area: 'coil', address: 0, type: 'bool', access: 'read-write' },
                { name: 'temp', area: 'input', address: 0, type: 'float32' },
                { name: 'label', area: 'holding', address: 20, type: 'string', length: 4, access: 'read-write' },
              ],
            },
          ],
        },
      ],
    });
    wms = await mqttClient(broker.url);
    got = await collect(wms, `${ROOT}/#`);
    bridge = startBridge(config);
    await bridgeActive(bridgeSocketOf(dir), bridge);
  });

  after(async () => {
    clearInterval(ticker);
    await bridge?.stop();
    await wms?.endAsync();
    await sim?.stop();
    await broker?.stop();
  });

  test('values arrive with quality, seq increasing by one, and a retained online status', async () => {
    const topic = `${ROOT}/plc/sorter1/fast`;
    await waitFor(() => dataOf(got, topic).length >= 10, { timeoutMs: 15_000, what: 'ten data messages' });
    const msgs = dataOf(got, topic);
    for (let i = 1; i < msgs.length; i++) assert.equal(msgs[i]!.seq, msgs[i - 1]!.seq + 1, 'seq increases by one');
    // A cycle that ran before the Modbus connection was up reports its tags bad, never made up.
    const firstGood = msgs.findIndex((m) => m.values.counter?.q === 'good');
    assert.ok(firstGood >= 0, 'good values arrive');
    for (const m of msgs.slice(0, firstGood)) {
      assert.equal(m.values.counter?.v, null, `a bad value carries no value: ${JSON.stringify(m.values.counter)}`);
      assert.ok(m.values.counter?.reason, 'and a reason');
    }
    const first = msgs[firstGood]!;
    assert.ok(Math.abs((first.values.temp?.v as number) - 123.456) < 1e-3, `temp decoded: ${JSON.stringify(first.values.temp)}`);
    assert.equal(first.values.jam?.v, false);
    assert.equal(first.historical, undefined);
    for (const m of msgs) assert.equal(Date.parse(m.ts) % 100, 0, 'cycle timestamps on the 100 ms grid');
    const status = got.filter((m) => m.topic === `${ROOT}/plc/status`).at(-1);
    assert.ok(status?.retain !== undefined);
    const body = status.payload as { state: string; devices: Record<string, { link: string }> };
    assert.equal(body.state, 'online');
    await waitFor(() => (got.filter((m) => m.topic === `${ROOT}/plc/status`).at(-1)?.payload as typeof body).devices.sorter1?.link === 'up', { timeoutMs: 5000, what: 'link up in status' });
  });

  test('writes round-trip with read-back; a bit goes by mask write and leaves its neighbours alone', async () => {
    const id = 'w-ok-1';
    await wms.publishAsync(`${ROOT}/plc/sorter1/set`, JSON.stringify({ id, tags: { speed: -12.3, target: 42.5, jam: true, running: true, label: 'AB12' } }), { qos: 1 });
    await waitFor(() => resOf(got, id).some((r) => r.status === 'successful' || r.status === 'failed' || r.status === 'rejected'), { timeoutMs: 10_000, what: 'terminal status' });
    const final = resOf(got, id).at(-1)!;
    assert.equal(final.status, 'successful', JSON.stringify(final));
    assert.deepEqual(final.result?.readBack, { speed: -12.3, target: 42.5, jam: true, running: true, label: 'AB12' });
    assert.equal(getValues(sim.regs, 'holding', 2, 1)[0], 0xffff - 123 + 1, 'int16 -123 raw');
    assert.equal(getValues(sim.regs, 'holding', 10, 1)[0], 0b1010_0000_0000_1101, 'only bit 3 changed');
    assert.equal(getValues(sim.regs, 'coil', 0, 1)[0], 1);
  });

  test('every bad write is rejected with its code and the PLC is untouched', async () => {
    const before = { h: getValues(sim.regs, 'holding', 1, 30), c: getValues(sim.regs, 'coil', 0, 8) };
    const cases: [string, unknown, string][] = [
      ['b-unknown', { tags: { nope: 1 } }, 'unknown-tag'],
      ['b-readonly', { tags: { counter: 5 } }, 'read-only'],
      ['b-type', { tags: { speed: 'fast' } }, 'wrong-type'],
      ['b-range', { tags: { speed: 1000 } }, 'out-of-range'],
      ['b-expired', { tags: { speed: 1 }, expiresAt: '2020-01-01T00:00:00Z' }, 'expired'],
      ['b-mixed', { tags: { speed: 1, nope: 2 } }, 'unknown-tag'],
      ['b-empty', { tags: {} }, 'invalid-params'],
    ];
    for (const [id, body] of cases) await wms.publishAsync(`${ROOT}/plc/sorter1/set`, JSON.stringify({ id, ...(body as object) }), { qos: 1 });
    await wms.publishAsync(`${ROOT}/plc/sorter1/set`, '{"id": "b-json", "tags": {', { qos: 1 });
    await wms.publishAsync(`${ROOT}/plc/nodevice/set`, JSON.stringify({ id: 'b-device', tags: { speed: 1 } }), { qos: 1 });
    const expected: [string, string][] = [...cases.map(([id, , code]) => [id, code] as [string, string]), ['b-json', 'invalid-json'], ['b-device', 'unknown-device']];
    await waitFor(() => expected.every(([id]) => resOf(got, id).length > 0), { timeoutMs: 10_000, what: 'an answer to every bad write' });
    for (const [id, code] of expected) {
      const r = resOf(got, id);
      assert.deepEqual(r.map((x) => x.status), ['rejected'], `${id}: ${JSON.stringify(r)}`);
      assert.equal(r[0]!.reason?.code, code, id);
    }
    const afterH = getValues(sim.regs, 'holding', 1, 30);
    assert.deepEqual(afterH.slice(1), before.h.slice(1), 'registers untouched (holding 0 is the test counter)');
    assert.deepEqual(getValues(sim.regs, 'coil', 0, 8), before.c);
  });

  test('a repeated id is not executed again; its status is published again', async () => {
    const id = 'w-dup-1';
    const payload = JSON.stringify({ id, tags: { speed: 7 } });
    await wms.publishAsync(`${ROOT}/plc/sorter1/set`, payload, { qos: 1 });
    await waitFor(() => resOf(got, id).some((r) => r.status === 'successful'), { timeoutMs: 10_000, what: 'first execution' });
    setValues(sim.regs, 'holding', 2, [99]);
    const answers = resOf(got, id).length;
    await wms.publishAsync(`${ROOT}/plc/sorter1/set`, payload, { qos: 1 });
    await waitFor(() => resOf(got, id).length > answers, { timeoutMs: 10_000, what: 'the status published again' });
    assert.equal(resOf(got, id).at(-1)?.status, 'successful');
    assert.equal(getValues(sim.regs, 'holding', 2, 1)[0], 99, 'not written a second time');
  });
});
