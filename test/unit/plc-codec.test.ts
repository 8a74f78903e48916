/**
 * plc-bridge/codec.ts: every type in every order against known register patterns, round trips,
 * scale and offset both ways, and the rejections of encodeValue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ORDERS, tagCount, type Order, type ResolvedTag, type TagType } from '../../plc-bridge/config.js';
import { decodeBits, decodeRegisters, encodeValue } from '../../plc-bridge/codec.js';
import { PlcError } from '../../plc-bridge/errors.js';
import { prng } from '../helpers/util.js';

function tag(type: TagType, extra: Partial<ResolvedTag> = {}): ResolvedTag {
  const t: ResolvedTag = { name: 't', area: 'holding', start: 0, count: 1, type, order: 'ABCD', scale: 1, offset: 0, access: 'read-write', deadband: 0, ...extra };
  t.count = tagCount(t);
  return t;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof PlcError, `not a PlcError: ${String(err)}`);
    return err.code;
  }
  return undefined;
}

/** Known patterns: type, value, and the wire registers in ABCD, CDAB, BADC, DCBA. */
const PATTERNS: { type: TagType; value: number; words: Record<Order, number[]> }[] = [
  { type: 'float32', value: 123.456, words: { ABCD: [0x42f6, 0xe979], CDAB: [0xe979, 0x42f6], BADC: [0xf642, 0x79e9], DCBA: [0x79e9, 0xf642] } },
  { type: 'int32', value: 0x12345678, words: { ABCD: [0x1234, 0x5678], CDAB: [0x5678, 0x1234], BADC: [0x3412, 0x7856], DCBA: [0x7856, 0x3412] } },
  { type: 'int32', value: -123456789, words: { ABCD: [0xf8a4, 0x32eb], CDAB: [0x32eb, 0xf8a4], BADC: [0xa4f8, 0xeb32], DCBA: [0xeb32, 0xa4f8] } },
  { type: 'int32', value: -1, words: { ABCD: [0xffff, 0xffff], CDAB: [0xffff, 0xffff], BADC: [0xffff, 0xffff], DCBA: [0xffff, 0xffff] } },
  { type: 'int32', value: -2147483648, words: { ABCD: [0x8000, 0], CDAB: [0, 0x8000], BADC: [0x0080, 0], DCBA: [0, 0x0080] } },
  { type: 'uint32', value: 4294967295, words: { ABCD: [0xffff, 0xffff], CDAB: [0xffff, 0xffff], BADC: [0xffff, 0xffff], DCBA: [0xffff, 0xffff] } },
  { type: 'uint32', value: 0x89abcdef, words: { ABCD: [0x89ab, 0xcdef], CDAB: [0xcdef, 0x89ab], BADC: [0xab89, 0xefcd], DCBA: [0xefcd, 0xab89] } },
  {
    type: 'float64',
    value: 123.456,
    words: {
      ABCD: [0x405e, 0xdd2f, 0x1a9f, 0xbe77],
      CDAB: [0xbe77, 0x1a9f, 0xdd2f, 0x405e],
      BADC: [0x5e40, 0x2fdd, 0x9f1a, 0x77be],
      DCBA: [0x77be, 0x9f1a, 0x2fdd, 0x5e40],
    },
  },
  { type: 'int16', value: 0x1234, words: { ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412] } },
  { type: 'int16', value: -2, words: { ABCD: [0xfffe], CDAB: [0xfffe], BADC: [0xfeff], DCBA: [0xfeff] } },
  { type: 'int16', value: -32768, words: { ABCD: [0x8000], CDAB: [0x8000], BADC: [0x0080], DCBA: [0x0080] } },
  { type: 'uint16', value: 0xabcd, words: { ABCD: [0xabcd], CDAB: [0xabcd], BADC: [0xcdab], DCBA: [0xcdab] } },
  { type: 'uint16', value: 65535, words: { ABCD: [0xffff], CDAB: [0xffff], BADC: [0xffff], DCBA: [0xffff] } },
];

for (const p of PATTERNS) {
  for (const order of ORDERS) {
    test(`${p.type} ${p.value} in ${order} is ${p.words[order].map((w) => w.toString(16)).join(' ')}, both ways`, () => {
      const t = tag(p.type, { order });
      assert.equal(decodeRegisters(t, p.words[order]), p.value);
      assert.deepEqual(encodeValue(t, p.value), p.words[order]);
    });
  }
}

test('strings: two ASCII bytes per register, high byte first; BADC/DCBA swap the pair, CDAB keeps register order', () => {
  const words: Record<Order, number[]> = { ABCD: [0x4142, 0x4300], CDAB: [0x4142, 0x4300], BADC: [0x4241, 0x0043], DCBA: [0x4241, 0x0043] };
  for (const order of ORDERS) {
    const t = tag('string', { order, length: 2 });
    assert.deepEqual(encodeValue(t, 'ABC'), words[order], order);
    assert.equal(decodeRegisters(t, words[order]), 'ABC', order);
  }
});

test('strings: odd length, padding and trimming, the first NUL ends the string, full length', () => {
  const t = tag('string', { length: 3 });
  assert.deepEqual(encodeValue(t, 'Hello'), [0x4865, 0x6c6c, 0x6f00]);
  assert.equal(decodeRegisters(t, [0x4865, 0x6c6c, 0x6f00]), 'Hello');
  assert.equal(decodeRegisters(t, [0x4869, 0x2020, 0x2020]), 'Hi', 'trailing spaces trimmed');
  assert.equal(decodeRegisters(t, [0x4869, 0x0058, 0x5858]), 'Hi', 'old content after the NUL is not part of the value');
  assert.equal(decodeRegisters(t, [0x2041, 0x2042, 0x4344]), ' A BCD', 'leading and inner spaces stay');
  assert.deepEqual(encodeValue(t, 'abcdef'), [0x6162, 0x6364, 0x6566]);
  assert.equal(decodeRegisters(t, [0x6162, 0x6364, 0x6566]), 'abcdef');
  assert.deepEqual(encodeValue(t, ''), [0, 0, 0]);
  assert.equal(decodeRegisters(t, [0, 0, 0]), '');
});

test('strings: too long or not printable ASCII is out-of-range, a non-string is wrong-type', () => {
  const t = tag('string', { length: 2 });
  assert.equal(codeOf(() => encodeValue(t, 'abcde')), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(t, 'é')), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(t, 'a\nb')), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(t, 12)), 'wrong-type');
});

test('bool: a bit of a register (0 = least significant) and a coil', () => {
  assert.equal(decodeRegisters(tag('bool', { bit: 3 }), [0x0008]), true);
  assert.equal(decodeRegisters(tag('bool', { bit: 3 }), [0xfff7]), false);
  assert.equal(decodeRegisters(tag('bool', { bit: 15 }), [0x8000]), true);
  assert.equal(decodeRegisters(tag('bool', { bit: 0 }), [0x0001]), true);
  const coil = tag('bool', { area: 'coil' });
  assert.equal(decodeBits(coil, [true]), true);
  assert.equal(decodeBits(coil, [false]), false);
  assert.equal(codeOf(() => decodeBits(coil, [])), 'decode-error');
  assert.deepEqual(encodeValue(coil, true), [1]);
  assert.deepEqual(encodeValue(coil, false), [0]);
  assert.equal(codeOf(() => encodeValue(coil, 1)), 'wrong-type', 'JSON true/false only');
  assert.equal(codeOf(() => encodeValue(coil, 'true')), 'wrong-type');
});

test('float32 shows the shortest decimal that is the same float32', () => {
  const t = tag('float32');
  assert.equal(decodeRegisters(t, encodeValue(t, 0.1)), 0.1);
  assert.equal(decodeRegisters(t, encodeValue(t, -3.4e38)), -3.4e38);
  assert.equal(decodeRegisters(t, [0, 1]), 1e-45, 'the smallest subnormal');
  assert.equal(decodeRegisters(t, [0x8000, 0]), 0, '-0 is 0 (as JSON would send it anyway)');
});

test('NaN and infinities are decode-error (JSON cannot carry them, nothing is made up)', () => {
  for (const words of [[0x7fc0, 0], [0x7f80, 0], [0xff80, 0]]) assert.equal(codeOf(() => decodeRegisters(tag('float32'), words)), 'decode-error');
  assert.equal(codeOf(() => decodeRegisters(tag('float64'), [0x7ff8, 0, 0, 0])), 'decode-error');
  assert.equal(codeOf(() => decodeRegisters(tag('float64'), [0xfff0, 0, 0, 0])), 'decode-error');
});

test('the number of registers must be the tag size', () => {
  assert.equal(codeOf(() => decodeRegisters(tag('int32'), [1])), 'decode-error');
  assert.equal(codeOf(() => decodeRegisters(tag('int16'), [1, 2])), 'decode-error');
});

test('scale and offset: value = raw * scale + offset, both ways, without binary noise', () => {
  const t = tag('int16', { scale: 0.1, offset: -40 });
  assert.equal(decodeRegisters(t, [1234]), 83.4);
  assert.deepEqual(encodeValue(t, 83.4), [1234]);
  assert.equal(decodeRegisters(t, [0xfffe]), -40.2);
  assert.deepEqual(encodeValue(t, -40.2), [0xfffe]);
  // Rounded to the nearest raw value; halves away from zero.
  assert.deepEqual(encodeValue(t, 83.44), [1234]);
  assert.deepEqual(encodeValue(t, 83.46), [1235]);
  assert.deepEqual(encodeValue(tag('int16', { scale: 2 }), 5), [3]);
  assert.deepEqual(encodeValue(tag('int16', { scale: 2 }), -5), [0xfffd]);
  const f = tag('float32', { scale: 10, offset: 1 });
  assert.equal(decodeRegisters(f, [0x42f6, 0xe979]), 1235.56);
  assert.deepEqual(encodeValue(f, 1235.56), [0x42f6, 0xe979]);
  const u = tag('uint32', { scale: 0.001, order: 'CDAB' });
  assert.equal(decodeRegisters(u, [0xffff, 0xffff]), 4294967.295);
  assert.deepEqual(encodeValue(u, 4294967.295), [0xffff, 0xffff]);
});

test('out-of-range: the raw range of the type after scale and offset, and min/max', () => {
  assert.equal(codeOf(() => encodeValue(tag('int16'), 32768)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('int16'), -32769)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('uint16'), -1)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('uint16'), 65536)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('uint32'), 4294967296)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('int32'), 2147483648)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('float32'), 3.5e38)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('int16', { scale: 0.1 }), 3276.8)), 'out-of-range');
  assert.deepEqual(encodeValue(tag('int16', { scale: 0.1 }), 3276.7), [32767]);
  assert.equal(codeOf(() => encodeValue(tag('uint16', { offset: 100 }), 99)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(tag('float64', { scale: 1e-300 }), 1e10)), 'out-of-range');
  const bounded = tag('int16', { min: 0, max: 3000 });
  assert.equal(codeOf(() => encodeValue(bounded, -1)), 'out-of-range');
  assert.equal(codeOf(() => encodeValue(bounded, 3001)), 'out-of-range');
  assert.deepEqual(encodeValue(bounded, 3000), [3000]);
});

test('wrong-type: not a number, or a fraction for an integer tag without scale/offset', () => {
  for (const v of ['1', null, true, [1], { v: 1 }]) assert.equal(codeOf(() => encodeValue(tag('int16'), v)), 'wrong-type');
  assert.equal(codeOf(() => encodeValue(tag('int16'), 1.5)), 'wrong-type');
  assert.equal(codeOf(() => encodeValue(tag('uint32'), 0.1)), 'wrong-type');
  assert.deepEqual(encodeValue(tag('float32'), 1.5), [0x3fc0, 0]);
  assert.deepEqual(encodeValue(tag('int16', { scale: 0.5 }), 1.5), [3], 'a scaled tag takes fractions');
});

test('round trips: random raw registers of every numeric type and order decode and encode back', () => {
  const rand = prng(20240611);
  for (const type of ['int16', 'uint16', 'int32', 'uint32', 'float32', 'float64'] as const) {
    for (const order of ORDERS) {
      const t = tag(type, { order });
      for (let i = 0; i < 200; i++) {
        const words = Array.from({ length: t.count }, () => Math.floor(rand() * 0x10000));
        let v: number;
        try {
          v = decodeRegisters(t, words) as number;
        } catch {
          continue; // NaN/Infinity patterns
        }
        if (v === 0 && type.startsWith('float')) continue; // -0 becomes 0
        const back = encodeValue(t, v);
        assert.deepEqual(back, words, `${type} ${order} ${words.join(',')} -> ${v}`);
      }
    }
  }
});

test('round trips with scale and offset: encode then decode gives the value back within a raw step', () => {
  const rand = prng(7);
  for (const type of ['int16', 'uint16', 'int32', 'uint32', 'float32'] as const) {
    const t = tag(type, { scale: 0.01, offset: type.startsWith('u') ? 5 : -5, order: 'DCBA' });
    for (let i = 0; i < 200; i++) {
      const v = Math.round((type.startsWith('u') ? 5 + rand() * 600 : -300 + rand() * 600) * 100) / 100;
      assert.ok(Math.abs((decodeRegisters(t, encodeValue(t, v)) as number) - v) < 1e-3, `${type} ${v}`);
    }
  }
});
