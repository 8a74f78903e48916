/**
 * Black box against an independent Modbus server (Debian's python3-pymodbus) and a real
 * Mosquitto: values of every type in every byte/word order arrive correctly at the WMS, and
 * writes of every writable type round-trip (read-back in the result, then in the next poll).
 *
 * The expected registers are built here from Node's Buffer encoders, not from plc-bridge/codec.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { startPymodbus, type PymodbusServer } from '../helpers/pymodbus.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgeActive, bridgeSocketOf, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';

const ROOT = 'edge/gw-test';
const ORDERS = ['ABCD', 'CDAB', 'BADC', 'DCBA'] as const;
type Order = (typeof ORDERS)[number];

/** Big-endian bytes of the value -> wire registers in the given order. */
function wire(be: Buffer, order: Order, swapWords = true): number[] {
  let words: number[] = [];
  for (let i = 0; i < be.length; i += 2) words.push(be.readUInt16BE(i));
  if (order === 'BADC' || order === 'DCBA') words = words.map((w) => ((w & 0xff) << 8) | (w >> 8));
  if (swapWords && (order === 'CDAB' || order === 'DCBA')) words.reverse();
  return words;
}

function be(type: string, v: number): Buffer {
  const sizes: Record<string, number> = { int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, float64: 8 };
  const b = Buffer.alloc(sizes[type]!);
  if (type === 'int16') b.writeInt16BE(v);
  if (type === 'uint16') b.writeUInt16BE(v);
  if (type === 'int32') b.writeInt32BE(v);
  if (type === 'uint32') b.writeUInt32BE(v);
  if (type === 'float32') b.writeFloatBE(v);
  if (type === 'float64') b.writeDoubleBE(v);
  return b;
}

const SAMPLES: [string, number][] = [
  ['int16', -12345],
  ['uint16', 54321],
  ['int32', -123456789],
  ['uint32', 4000000000],
  ['float32', 123.456],
  ['float64', -98765.4321],
];

interface TagDef {
  name: string;
  area: string;
  address: number;
  type: string;
  order?: Order;
  length?: number;
  bit?: number;
  access?: string;
  expect: unknown;
}

function layout(): { tags: TagDef[]; holding: number[]; coils: boolean[] } {
  const holding: number[] = [];
  const tags: TagDef[] = [];
  for (const [type, v] of SAMPLES) {
    for (const order of ORDERS) {
      const regs = wire(be(type, v), order);
      tags.push({ name: `${type}_${order}`, area: 'holding', address: holding.length, type, order, access: 'read-write', expect: v });
      holding.push(...regs);
    }
  }
  const text = Buffer.from('Hello PLC', 'ascii');
  const padded = Buffer.concat([text, Buffer.alloc(1)]);
  tags.push({ name: 'label', area: 'holding', address: holding.length, type: 'string', length: 5, access: 'read-write', expect: 'Hello PLC' });
  holding.push(...wire(padded, 'ABCD', false));
  tags.push({ name: 'label_sw', area: 'holding', address: holding.length, type: 'string', length: 5, order: 'BADC', expect: 'Hello PLC' });
  holding.push(...wire(padded, 'BADC', false));
  tags.push({ name: 'bit5', area: 'holding', address: holding.length, type: 'bool', bit: 5, access: 'read-write', expect: true });
  holding.push(1 << 5);
  tags.push({ name: 'scaled', area: 'holding', address: holding.length, type: 'int16', access: 'read-write', expect: 21.5 });
  holding.push(1075);
  tags.push({ name: 'coil3', area: 'coil', address: 3, type: 'bool', access: 'read-write', expect: true });
  return { tags, holding, coils: [false, false, false, true] };
}

describe('plc bridge against pymodbus', () => {
  let broker: Broker;
  let server: PymodbusServer;
  let bridge: BridgeProcess;
  let wms: MqttClient;
  let got: Received[];
  const { tags, holding, coils } = layout();
  const latest = (): Record<string, { v: unknown; q: string }> => {
    const acc: Record<string, { v: unknown; q: string }> = {};
    for (const m of got.filter((x) => x.topic === `${ROOT}/plc/pm/all`)) Object.assign(acc, (m.payload as { values: typeof acc }).values);
    return acc;
  };

  before(async () => {
    broker = await startBroker();
    server = await startPymodbus({ init: { holding, coils }, size: 200 });
    const dir = tempDir('plc-types');
    const config = writeBridgeConfig(dir, {
      mqtt: { url: broker.url },
      devices: [
        {
          name: 'pm',
          host: '127.0.0.1',
          port: server.port,
          unitId: 1,
          timeoutMs: 1000,
          groups: [
            {
              name: 'all',
              intervalMs: 200,
              tags: tags.map(({ expect, ...t }) => {
                void expect;
                return t.name === 'scaled' ? { ...t, scale: 0.02, offset: 0 } : t;
              }),
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
    await bridge?.stop();
    await wms?.endAsync();
    await server?.stop();
    await broker?.stop();
  });

  test('every type in every order arrives with its value and quality good', async () => {
    await waitFor(() => Object.keys(latest()).length >= tags.length, { timeoutMs: 15_000, what: `values of all ${tags.length} tags` });
    const values = latest();
    for (const t of tags) {
      const got = values[t.name];
      assert.equal(got?.q, 'good', `${t.name}: ${JSON.stringify(got)}`);
      if (t.type === 'float32') assert.ok(Math.abs((got.v as number) - (t.expect as number)) < 1e-3, `${t.name}: ${String(got.v)}`);
      else assert.equal(got.v, t.expect, t.name);
    }
  });

  test('writes of every writable type round-trip through pymodbus', async () => {
    const writes: Record<string, unknown> = {};
    for (const [type] of SAMPLES) for (const order of ORDERS) writes[`${type}_${order}`] = type === 'float32' ? 6.25 : type === 'float64' ? 1234.5678 : type.startsWith('u') ? 777 : -777;
    Object.assign(writes, { label: 'Bye', bit5: false, scaled: -3.5, coil3: false });
    const id = 'types-write-1';
    await wms.publishAsync(`${ROOT}/plc/pm/set`, JSON.stringify({ id, tags: writes }), { qos: 1 });
    const res = (): { status: string; result?: { readBack: Record<string, unknown> }; reason?: unknown } | undefined =>
      got.filter((m) => m.topic === `${ROOT}/res/${id}`).map((m) => m.payload as { status: string; result?: { readBack: Record<string, unknown> } }).find((r) => r.status !== 'accepted' && r.status !== 'executing');
    await waitFor(() => res() !== undefined, { timeoutMs: 15_000, what: 'the write result' });
    assert.equal(res()!.status, 'successful', JSON.stringify(res()));
    assert.deepEqual(res()!.result!.readBack, writes);
    await waitFor(() => Object.entries(writes).every(([k, v]) => latest()[k]?.v === v), { timeoutMs: 10_000, what: 'the written values in the polled data' });
  });
});
