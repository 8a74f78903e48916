/**
 * plc-bridge/write-plan.ts: parsing a set, every rejection code (the PLC untouched: no plan),
 * and the Modbus requests a valid set becomes, FC22 mask writes for bits in registers included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBridgeConfig, type DeviceConfig } from '../../plc-bridge/config.js';
import { expectedReadBack, parseSet, planWrite, type SetRequest, type WritePlan } from '../../plc-bridge/write-plan.js';

const NOW = Date.parse('2024-06-01T12:00:00.000Z');

const device: DeviceConfig = parseBridgeConfig({
  gatewayId: 'gw',
  devices: [
    {
      name: 'd1',
      host: 'h',
      groups: [
        {
          name: 'g1',
          tags: [
            { name: 'speed', area: 'holding', address: 0, type: 'float32', order: 'CDAB', access: 'read-write', min: 0, max: 100 },
            { name: 'sp', area: 'holding', address: 2, type: 'int16', access: 'read-write', scale: 0.1 },
            { name: 'count', area: 'holding', address: 3, type: 'uint16', access: 'write' },
            { name: 'jam', area: 'holding', address: 10, type: 'bool', bit: 3, access: 'read-write' },
            { name: 'reset', area: 'holding', address: 10, type: 'bool', bit: 4, access: 'write' },
            { name: 'word10', area: 'holding', address: 10, type: 'uint16', access: 'read-write' },
            { name: 'label', area: 'holding', address: 20, type: 'string', length: 2, access: 'read-write' },
            { name: 'temp', area: 'input', address: 0, type: 'int16' },
            { name: 'ro', area: 'holding', address: 30, type: 'int16' },
          ],
        },
        {
          name: 'g2',
          tags: [
            { name: 'run', area: 'coil', address: 0, type: 'bool', access: 'read-write' },
            { name: 'dir', area: 'coil', address: 1, type: 'bool', access: 'read-write' },
            { name: 'lamp', area: 'coil', address: 5, type: 'bool', access: 'write' },
            { name: 'alias', area: 'coil', address: 5, type: 'bool', access: 'write' },
          ],
        },
      ],
    },
  ],
}).devices[0]!;

function plan(tags: Record<string, unknown>, extra: Partial<SetRequest> = {}): WritePlan {
  return planWrite(device, { id: 'w1', tags, ...extra }, NOW);
}

function rejected(p: WritePlan): { code: string; tag?: string | undefined } {
  assert.equal(p.ok, false, 'expected a rejection');
  if (p.ok) throw new Error('unreachable');
  assert.ok(p.message.length > 0);
  return { code: p.code, tag: p.tag };
}

test('parseSet: a valid set', () => {
  const p = parseSet(Buffer.from(JSON.stringify({ id: 'a.b:c-1_2', tags: { sp: 1 }, expiresAt: '2024-06-01T12:01:00Z', extra: 1 })), 1024);
  assert.deepEqual(p, { ok: true, req: { id: 'a.b:c-1_2', tags: { sp: 1 }, expiresAt: '2024-06-01T12:01:00Z' } });
});

test('parseSet: too-large and invalid-json keep an id found in the text; without one there is none', () => {
  const big = Buffer.from(JSON.stringify({ id: 'big1', tags: { x: 'y'.repeat(2000) } }));
  assert.deepEqual(parseSet(big, 1000), { ok: false, id: 'big1', code: 'too-large', message: `payload of ${big.length} bytes is over the limit of 1000` });
  const broken = parseSet(Buffer.from('{"id": "j1", "tags": {'), 1000);
  assert.equal(broken.ok, false);
  assert.deepEqual(!broken.ok && [broken.id, broken.code], ['j1', 'invalid-json']);
  const anon = parseSet(Buffer.from('{"tags": {'), 1000);
  assert.deepEqual(!anon.ok && [anon.id, anon.code], [undefined, 'invalid-json']);
  const arr = parseSet(Buffer.from('[1]'), 1000);
  assert.deepEqual(!arr.ok && [arr.id, arr.code], [undefined, 'invalid-json']);
});

test('parseSet: a bad id has nothing to answer on; bad tags or expiresAt are invalid-params with the id', () => {
  for (const id of [undefined, 12, '', 'a b', 'x'.repeat(129)]) {
    const p = parseSet(Buffer.from(JSON.stringify({ id, tags: {} })), 1000);
    assert.deepEqual(!p.ok && [p.id, p.code], [undefined, 'invalid-params'], String(id));
  }
  for (const body of [{ id: 'i', tags: [] }, { id: 'i' }, { id: 'i', tags: null }, { id: 'i', tags: {}, expiresAt: 5 }]) {
    const p = parseSet(Buffer.from(JSON.stringify(body)), 1000);
    assert.deepEqual(!p.ok && [p.id, p.code], ['i', 'invalid-params'], JSON.stringify(body));
  }
});

test('rejections, each with its code and tag, and no plan: the PLC is not touched', () => {
  assert.deepEqual(rejected(plan({ nope: 1 })), { code: 'unknown-tag', tag: 'nope' });
  assert.deepEqual(rejected(plan({ ro: 1 })), { code: 'read-only', tag: 'ro' });
  assert.deepEqual(rejected(plan({ temp: 1 })), { code: 'read-only', tag: 'temp' });
  assert.deepEqual(rejected(plan({ sp: 'fast' })), { code: 'wrong-type', tag: 'sp' });
  assert.deepEqual(rejected(plan({ run: 1 })), { code: 'wrong-type', tag: 'run' });
  assert.deepEqual(rejected(plan({ count: 1.5 })), { code: 'wrong-type', tag: 'count' });
  assert.deepEqual(rejected(plan({ label: 7 })), { code: 'wrong-type', tag: 'label' });
  assert.deepEqual(rejected(plan({ count: 70000 })), { code: 'out-of-range', tag: 'count' });
  assert.deepEqual(rejected(plan({ sp: 3276.8 })), { code: 'out-of-range', tag: 'sp' });
  assert.deepEqual(rejected(plan({ speed: 100.5 })), { code: 'out-of-range', tag: 'speed' });
  assert.deepEqual(rejected(plan({ label: 'abcde' })), { code: 'out-of-range', tag: 'label' });
  assert.deepEqual(rejected(plan({ label: 'ü' })), { code: 'out-of-range', tag: 'label' });
  assert.deepEqual(rejected(plan({})), { code: 'invalid-params', tag: undefined });
});

test('one bad tag rejects the whole set, wherever it is', () => {
  assert.deepEqual(rejected(plan({ sp: 1, run: true, nope: 1 })), { code: 'unknown-tag', tag: 'nope' });
  assert.deepEqual(rejected(plan({ nope: 1, sp: 1 })), { code: 'unknown-tag', tag: 'nope' });
});

test('expiresAt: past is expired, unparsable is invalid-params, future is fine', () => {
  assert.equal(rejected(plan({ sp: 1 }, { expiresAt: '2024-06-01T11:59:59Z' })).code, 'expired');
  assert.equal(rejected(plan({ sp: 1 }, { expiresAt: new Date(NOW).toISOString() })).code, 'expired');
  assert.equal(rejected(plan({ sp: 1 }, { expiresAt: 'tomorrow' })).code, 'invalid-params');
  assert.equal(plan({ sp: 1 }, { expiresAt: '2024-06-01T12:00:01Z' }).ok, true);
});

test('two tags on the same register or coil in one set are rejected', () => {
  assert.deepEqual(rejected(plan({ word10: 1, jam: true })), { code: 'invalid-params', tag: 'jam' });
  assert.deepEqual(rejected(plan({ jam: true, word10: 1 })), { code: 'invalid-params', tag: 'word10' });
  assert.deepEqual(rejected(plan({ lamp: true, alias: false })), { code: 'invalid-params', tag: 'alias' });
});

test('a bit in a holding register is an FC22 mask of that bit alone, never a read-modify-write', () => {
  const on = plan({ jam: true });
  assert.deepEqual(on, { ok: true, ops: [{ kind: 'mask', address: 10, andMask: 0xfff7, orMask: 0x0008 }], readBack: [device.groups[0]!.tags[3]] });
  const off = plan({ jam: false });
  assert.deepEqual(off.ok && off.ops, [{ kind: 'mask', address: 10, andMask: 0xfff7, orMask: 0 }]);
  // FC22: result = (current AND andMask) OR (orMask AND NOT andMask): only bit 3 moves.
  for (const op of [...(on.ok ? on.ops : []), ...(off.ok ? off.ops : [])]) {
    if (op.kind !== 'mask') continue;
    for (const current of [0x0000, 0xffff, 0x1234]) {
      const result: number = (current & op.andMask) | (op.orMask & ~op.andMask & 0xffff);
      assert.equal(result & ~0x0008 & 0xffff, current & ~0x0008 & 0xffff);
    }
  }
});

test('two bits of one register in one set become one correct mask', () => {
  const p = plan({ jam: true, reset: false });
  assert.deepEqual(p.ok && p.ops, [{ kind: 'mask', address: 10, andMask: 0xffe7, orMask: 0x0008 }]);
  const current = 0x0010; // reset set, jam clear
  const op = p.ok && p.ops[0];
  assert.ok(op && op.kind === 'mask');
  assert.equal((current & op.andMask) | (op.orMask & ~op.andMask & 0xffff), 0x0008);
});

test('registers: encoded in the tag order, consecutive addresses merged, order of the message kept', () => {
  const p = plan({ speed: 12.5, sp: 1.5, count: 7 });
  // speed float32 CDAB 12.5 = 0x41480000 -> [0x0000, 0x4148]; sp raw 15; count 7: one FC16 of 4.
  assert.deepEqual(p.ok && p.ops, [{ kind: 'registers', start: 0, values: [0x0000, 0x4148, 15, 7] }]);
  const reversed = plan({ count: 7, sp: 1.5 });
  assert.deepEqual(reversed.ok && reversed.ops, [
    { kind: 'registers', start: 3, values: [7] },
    { kind: 'registers', start: 2, values: [15] },
  ], 'a later tag at a lower address is its own request, after');
  const gap = plan({ sp: 1, label: 'AB' });
  assert.deepEqual(gap.ok && gap.ops, [
    { kind: 'registers', start: 2, values: [10] },
    { kind: 'registers', start: 20, values: [0x4142, 0] },
  ], 'a gap is never written');
});

test('coils: FC15 for consecutive coils, in order; the read-back lists written tags that can be read', () => {
  const p = plan({ run: true, dir: false, lamp: true, sp: 2 });
  assert.ok(p.ok);
  assert.deepEqual(p.ops, [
    { kind: 'coils', start: 0, values: [true, false] },
    { kind: 'coils', start: 5, values: [true] },
    { kind: 'registers', start: 2, values: [20] },
  ]);
  assert.deepEqual(p.readBack.map((t) => t.name), ['run', 'dir', 'sp'], 'write-only lamp cannot be read back');
});

test('expectedReadBack: the value after the round trip through the registers', () => {
  const tags = new Map(device.groups.flatMap((g) => g.tags.map((t) => [t.name, t] as const)));
  assert.equal(expectedReadBack(tags.get('sp')!, 12.34), 12.3);
  assert.equal(expectedReadBack(tags.get('speed')!, 0.1), 0.1);
  assert.equal(expectedReadBack(tags.get('jam')!, true), true);
  assert.equal(expectedReadBack(tags.get('run')!, false), false);
  assert.equal(expectedReadBack(tags.get('label')!, 'AB'), 'AB');
});
