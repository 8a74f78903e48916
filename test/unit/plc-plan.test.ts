/**
 * plc-bridge/plan.ts: reads merged up to the limits, gaps read through up to maxGap, overlapping
 * tags, deterministic order, and decoding a block's answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tagCount, type ResolvedTag, type TagType } from '../../plc-bridge/config.js';
import { decodeRegisters } from '../../plc-bridge/codec.js';
import { extractBlock, planReads, type ReadBlock } from '../../plc-bridge/plan.js';
import { prng } from '../helpers/util.js';

function tag(name: string, area: ResolvedTag['area'], start: number, type: TagType = 'uint16', extra: Partial<ResolvedTag> = {}): ResolvedTag {
  const t: ResolvedTag = { name, area, start, count: 1, type, order: 'ABCD', scale: 1, offset: 0, access: 'read', deadband: 0, ...extra };
  t.count = tagCount(t);
  return t;
}

function shape(blocks: ReadBlock[]): string[] {
  return blocks.map((b) => `${b.area}:${b.start}+${b.count}[${b.tags.map((t) => t.name).join(',')}]`);
}

/** The invariants of planReads, checked on any input. */
function checkInvariants(tags: ResolvedTag[], blocks: ReadBlock[], maxGap: number, maxRegisters = 125, maxBits = 2000): void {
  const readable = tags.filter((t) => t.access !== 'write');
  const seen = blocks.flatMap((b) => b.tags.map((t) => t.name)).sort();
  assert.deepEqual(seen, readable.map((t) => t.name).sort(), 'every readable tag in exactly one block');
  for (const b of blocks) {
    const bits = b.area === 'coil' || b.area === 'discrete';
    assert.ok(b.count <= (bits ? maxBits : maxRegisters), `block over the limit: ${b.count}`);
    assert.ok(b.start >= 0 && b.start + b.count <= 65536);
    const covered = new Array<boolean>(b.count).fill(false);
    for (const t of b.tags) {
      assert.equal(t.area, b.area);
      assert.ok(t.start >= b.start && t.start + t.count <= b.start + b.count, `${t.name} outside its block`);
      for (let i = t.start; i < t.start + t.count; i++) covered[i - b.start] = true;
    }
    let hole = 0;
    for (const c of covered) {
      hole = c ? 0 : hole + 1;
      assert.ok(hole <= (bits ? maxGap * 16 : maxGap), `a hole of ${hole} in ${b.area}:${b.start}`);
    }
    assert.ok(covered[0] && covered[covered.length - 1], 'a block starts and ends on a tag');
  }
}

test('contiguous registers merge into one read; a gap wider than maxGap splits', () => {
  const tags = [tag('a', 'holding', 0), tag('b', 'holding', 1, 'float32'), tag('c', 'holding', 3), tag('d', 'holding', 7), tag('e', 'holding', 12)];
  assert.deepEqual(shape(planReads(tags, { maxGap: 0 })), ['holding:0+4[a,b,c]', 'holding:7+1[d]', 'holding:12+1[e]']);
  assert.deepEqual(shape(planReads(tags, { maxGap: 3 })), ['holding:0+8[a,b,c,d]', 'holding:12+1[e]']);
  assert.deepEqual(shape(planReads(tags, { maxGap: 4 })), ['holding:0+13[a,b,c,d,e]']);
});

test('a block never exceeds 125 registers, nor maxRegisters', () => {
  const tags = Array.from({ length: 300 }, (_, i) => tag(`t${i}`, 'input', i));
  const blocks = planReads(tags, { maxGap: 0 });
  assert.deepEqual(blocks.map((b) => b.count), [125, 125, 50]);
  assert.deepEqual(blocks.map((b) => b.start), [0, 125, 250]);
  assert.deepEqual(planReads(tags, { maxGap: 0, maxRegisters: 100 }).map((b) => b.count), [100, 100, 100]);
  // A float32 that would straddle the limit starts the next block.
  const f = [tag('s', 'input', 0, 'string', { length: 124 }), tag('f', 'input', 124, 'float32')];
  assert.deepEqual(shape(planReads(f, { maxGap: 0 })), ['input:0+124[s]', 'input:124+2[f]']);
  checkInvariants(f, planReads(f, { maxGap: 0 }), 0);
});

test('coils and discrete inputs: up to 2000 bits, gaps of maxGap × 16 bits or maxBitGap', () => {
  const coils = Array.from({ length: 2500 }, (_, i) => tag(`c${i}`, 'coil', i, 'bool'));
  assert.deepEqual(planReads(coils, { maxGap: 0 }).map((b) => b.count), [2000, 500]);
  const sparse = [tag('a', 'discrete', 0, 'bool'), tag('b', 'discrete', 17, 'bool'), tag('c', 'discrete', 60, 'bool')];
  assert.deepEqual(shape(planReads(sparse, { maxGap: 1 })), ['discrete:0+18[a,b]', 'discrete:60+1[c]']);
  assert.deepEqual(shape(planReads(sparse, { maxGap: 0, maxBitGap: 42 })), ['discrete:0+61[a,b,c]']);
  assert.deepEqual(shape(planReads(sparse, { maxGap: 1, maxBits: 10 })), ['discrete:0+1[a]', 'discrete:17+1[b]', 'discrete:60+1[c]']);
});

test('overlapping tags share a read: a register and its bits, two types on one register, a string over numbers', () => {
  const tags = [
    tag('word', 'holding', 10),
    tag('bit3', 'holding', 10, 'bool', { bit: 3 }),
    tag('bit4', 'holding', 10, 'bool', { bit: 4 }),
    tag('signed', 'holding', 10, 'int16'),
    tag('pair', 'holding', 9, 'int32'),
    tag('text', 'holding', 8, 'string', { length: 5 }),
  ];
  const blocks = planReads(tags, { maxGap: 0 });
  assert.deepEqual(shape(blocks), ['holding:8+5[text,pair,bit3,bit4,signed,word]']);
  checkInvariants(tags, blocks, 0);
  const { values, failed } = extractBlock(blocks[0]!, [0x4142, 0x0001, 0xfff8, 0x4400, 0]);
  assert.equal(failed.size, 0);
  assert.deepEqual(Object.fromEntries(values), { text: 'AB', pair: 0x1fff8, bit3: true, bit4: true, signed: -8, word: 0xfff8 });
});

test('areas are planned apart, in function-code order, then by address; write-only tags are not read', () => {
  const tags = [
    tag('i', 'input', 0),
    tag('h2', 'holding', 5),
    tag('h1', 'holding', 0),
    tag('d', 'discrete', 0, 'bool'),
    tag('c', 'coil', 0, 'bool'),
    tag('w', 'holding', 1, 'uint16', { access: 'write' }),
  ];
  const blocks = planReads(tags, { maxGap: 0 });
  assert.deepEqual(shape(blocks), ['coil:0+1[c]', 'discrete:0+1[d]', 'holding:0+1[h1]', 'holding:5+1[h2]', 'input:0+1[i]']);
  assert.deepEqual(shape(planReads([...tags].reverse(), { maxGap: 0 })), shape(blocks), 'the input order does not matter');
});

test('property: random tag maps keep every invariant', () => {
  const rand = prng(42);
  const types: TagType[] = ['bool', 'int16', 'uint16', 'int32', 'float32', 'float64', 'string'];
  for (let round = 0; round < 200; round++) {
    const n = 1 + Math.floor(rand() * 60);
    const maxGap = Math.floor(rand() * 10);
    const maxRegisters = 10 + Math.floor(rand() * 116);
    const tags = Array.from({ length: n }, (_, i) => {
      const area = (['holding', 'input', 'coil', 'discrete'] as const)[Math.floor(rand() * 4)]!;
      const bits = area === 'coil' || area === 'discrete';
      const type = bits ? 'bool' : types[Math.floor(rand() * types.length)]!;
      const extra: Partial<ResolvedTag> = { access: rand() < 0.1 ? 'write' : 'read' };
      if (type === 'bool' && !bits) extra.bit = Math.floor(rand() * 16);
      if (type === 'string') extra.length = 1 + Math.floor(rand() * 8);
      return tag(`t${i}`, area, Math.floor(rand() * 300), type, extra);
    });
    const blocks = planReads(tags, { maxGap, maxRegisters, maxBits: 64 });
    checkInvariants(tags, blocks, maxGap, maxRegisters, 64);
    assert.deepEqual(shape(planReads([...tags].reverse(), { maxGap, maxRegisters, maxBits: 64 })).length, blocks.length);
  }
});

test('a tag larger than one read is a configuration error', () => {
  assert.throws(() => planReads([tag('s', 'holding', 0, 'string', { length: 50 })], { maxGap: 0, maxRegisters: 40 }), { code: 'config-invalid' });
});

test('extractBlock: every tag decoded at its offset in the block', () => {
  const tags = [tag('a', 'holding', 100), tag('f', 'holding', 102, 'float32', { order: 'CDAB' }), tag('s', 'holding', 104, 'int16', { scale: 0.5 })];
  const [block] = planReads(tags, { maxGap: 1 });
  assert.deepEqual(shape([block!]), ['holding:100+5[a,f,s]']);
  const { values, failed } = extractBlock(block!, [7, 0xdead, 0xe979, 0x42f6, 0xfffc]);
  assert.equal(failed.size, 0);
  assert.deepEqual(Object.fromEntries(values), { a: 7, f: 123.456, s: -2 });
  const coils = planReads([tag('x', 'coil', 3, 'bool'), tag('y', 'coil', 5, 'bool')], { maxGap: 1 });
  assert.deepEqual(Object.fromEntries(extractBlock(coils[0]!, [true, false, false]).values), { x: true, y: false });
});

test('extractBlock: a short answer, the wrong kind of data, or an undecodable value fail only the tags concerned', () => {
  const tags = [tag('a', 'holding', 0), tag('f', 'holding', 1, 'float32'), tag('b', 'holding', 3)];
  const [block] = planReads(tags, { maxGap: 0 });
  const short = extractBlock(block!, [1, 2, 3]);
  assert.deepEqual(Object.fromEntries(short.values), { a: 1, f: decodeRegisters(tags[1]!, [2, 3]) });
  assert.deepEqual(Object.fromEntries(short.failed), { b: 'invalid-response' });
  const nan = extractBlock(block!, [1, 0x7fc0, 0, 4]);
  assert.deepEqual(Object.fromEntries(nan.values), { a: 1, b: 4 });
  assert.deepEqual(Object.fromEntries(nan.failed), { f: 'decode-error' });
  const wrongKind = extractBlock(block!, [true, false, true, true]);
  assert.deepEqual(Object.fromEntries(wrongKind.failed), { a: 'invalid-response', f: 'invalid-response', b: 'invalid-response' });
  const outOfWord = extractBlock(block!, [1, 2, 70000, 4]);
  assert.equal(outOfWord.values.size, 0, 'a register value outside 0..65535 is not a Modbus answer');
});
