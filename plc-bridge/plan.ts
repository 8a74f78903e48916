/**
 * Read planning: a group's tags merged into as few Modbus reads as the limits allow.
 *
 * Invariants of planReads' result: every readable tag (access other than 'write') is in exactly
 * one block, and lies wholly inside it; a block never covers more than maxRegisters registers
 * (maxBits bits in coil/discrete); holes inside a block are never wider than maxGap registers
 * (maxBitGap bits); tags may overlap (two tags on one register, bits of one register); the order
 * is deterministic: by area (coil, discrete, holding, input: the function codes' order), then by
 * address.
 */
import { MAX_READ_BITS, MAX_READ_REGISTERS, type Area, type ResolvedTag } from './config.js';
import { decodeBits, decodeRegisters, type Value } from './codec.js';
import { PlcError } from './errors.js';

export interface ReadBlock {
  area: Area;
  start: number;
  count: number;
  tags: ResolvedTag[];
}

export interface PlanOptions {
  /** Registers per FC3/FC4 read; default 125 (the protocol's maximum). */
  maxRegisters?: number;
  /** Bits per FC1/FC2 read; default 2000 (the protocol's maximum). */
  maxBits?: number;
  /** Unused registers read through to save a request. */
  maxGap: number;
  /** Unused bits read through; default maxGap × 16 (the same bytes on the wire as maxGap registers). */
  maxBitGap?: number;
}

const AREA_ORDER: readonly Area[] = ['coil', 'discrete', 'holding', 'input'];

export function isBitArea(area: Area): boolean {
  return area === 'coil' || area === 'discrete';
}

export function planReads(tags: readonly ResolvedTag[], opts: PlanOptions): ReadBlock[] {
  const blocks: ReadBlock[] = [];
  for (const area of AREA_ORDER) {
    const bits = isBitArea(area);
    const limit = bits ? (opts.maxBits ?? MAX_READ_BITS) : (opts.maxRegisters ?? MAX_READ_REGISTERS);
    const gap = bits ? (opts.maxBitGap ?? opts.maxGap * 16) : opts.maxGap;
    const sorted = tags
      .filter((t) => t.area === area && t.access !== 'write')
      .sort((a, b) => a.start - b.start || b.count - a.count || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let cur: ReadBlock | undefined;
    for (const t of sorted) {
      if (t.count > limit) {
        throw new PlcError('config-invalid', `tag ${t.name} covers ${t.count} ${bits ? 'bits' : 'registers'}, more than one read of ${limit}`, { tag: t.name });
      }
      const end = t.start + t.count;
      if (cur) {
        const curEnd = cur.start + cur.count;
        const newEnd = Math.max(curEnd, end);
        if (t.start - curEnd <= gap && newEnd - cur.start <= limit) {
          cur.count = newEnd - cur.start;
          cur.tags.push(t);
          continue;
        }
      }
      cur = { area, start: t.start, count: t.count, tags: [t] };
      blocks.push(cur);
    }
  }
  return blocks;
}

/**
 * Decodes every tag of a block from the block's data (registers for holding/input, booleans
 * for coil/discrete). A tag that fails is in `failed` with a code: 'invalid-response' when the
 * answer is too short or of the wrong kind, 'decode-error' when its value cannot be represented.
 */
export function extractBlock(block: ReadBlock, data: ArrayLike<number> | ArrayLike<boolean>): { values: Map<string, Value>; failed: Map<string, string> } {
  const values = new Map<string, Value>();
  const failed = new Map<string, string>();
  const bits = isBitArea(block.area);
  const items = Array.from(data as ArrayLike<number | boolean>);
  const kindOk = items.every((x) => (bits ? typeof x === 'boolean' : typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffff));
  for (const tag of block.tags) {
    const from = tag.start - block.start;
    const slice = items.slice(from, from + tag.count);
    if (!kindOk || from < 0 || slice.length !== tag.count) {
      failed.set(tag.name, 'invalid-response');
      continue;
    }
    try {
      values.set(tag.name, bits ? decodeBits(tag, slice as boolean[]) : decodeRegisters(tag, slice as number[]));
    } catch (err) {
      failed.set(tag.name, err instanceof PlcError ? err.code : 'decode-error');
    }
  }
  return { values, failed };
}
