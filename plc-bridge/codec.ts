/**
 * Registers <-> values for every tag type and byte/word order (docs/plc-bridge.md "Configuration").
 *
 * An order names the value's bytes, most significant first (A), as they appear on the wire
 * (Modbus sends each register high byte first: Modbus Application Protocol v1.1b3, 4.2). It is
 * two independent swaps: BADC and DCBA swap the two bytes of every register; CDAB and DCBA
 * reverse the order of the registers (for 64-bit values: all four). So for a one-register value
 * only the byte swap counts, and a string's registers always stay in address order (only its
 * byte pairs swap).
 *
 * Numbers: value = raw * scale + offset; written back as raw = (value - offset) / scale, rounded
 * to the nearest integer for integer types. Every result is a finite number: a float that is NaN
 * or infinite is a `decode-error` (JSON cannot carry it, and a made-up value must never be sent).
 */
import type { ResolvedTag } from './config.js';
import { PlcError } from './errors.js';

export type Value = number | boolean | string;

const INT_RANGE = {
  int16: [-0x8000, 0x7fff],
  uint16: [0, 0xffff],
  int32: [-0x80000000, 0x7fffffff],
  uint32: [0, 0xffffffff],
} as const;
const FLOAT32_MAX = 3.4028234663852886e38;

function byteSwapped(tag: ResolvedTag): boolean {
  return tag.order === 'BADC' || tag.order === 'DCBA';
}

function wordSwapped(tag: ResolvedTag): boolean {
  return (tag.order === 'CDAB' || tag.order === 'DCBA') && tag.type !== 'string';
}

function swapBytes(w: number): number {
  return ((w & 0xff) << 8) | ((w >> 8) & 0xff);
}

/** The wire registers as the value's bytes, most significant first. */
function toBytes(tag: ResolvedTag, words: ArrayLike<number>): DataView {
  const ws = Array.from(words, (w) => (byteSwapped(tag) ? swapBytes(w) : w) & 0xffff);
  if (wordSwapped(tag)) ws.reverse();
  const view = new DataView(new ArrayBuffer(ws.length * 2));
  ws.forEach((w, i) => view.setUint16(i * 2, w));
  return view;
}

/** The inverse of toBytes. */
function toWords(tag: ResolvedTag, view: DataView): number[] {
  const ws: number[] = [];
  for (let i = 0; i < view.byteLength; i += 2) ws.push(view.getUint16(i));
  if (wordSwapped(tag)) ws.reverse();
  return byteSwapped(tag) ? ws.map(swapBytes) : ws;
}

/** The shortest decimal that is the same float32: 123.456, not 123.45600128173828. */
function shortestFloat32(f: number): number {
  for (let p = 1; p <= 9; p++) {
    const c = Number(f.toPrecision(p));
    if (Math.fround(c) === f) return c;
  }
  return f;
}

function scaled(tag: ResolvedTag, raw: number): number {
  if (tag.scale === 1 && tag.offset === 0) return raw;
  // 15 significant digits drop the binary noise of the multiplication (1234 * 0.1 = 123.4, not 123.400...01).
  return Number((raw * tag.scale + tag.offset).toPrecision(15));
}

function decodeError(tag: ResolvedTag, message: string): PlcError {
  return new PlcError('decode-error', `tag ${tag.name}: ${message}`, { tag: tag.name });
}

/** Decodes a register tag from exactly tag.count registers (uint16 each). */
export function decodeRegisters(tag: ResolvedTag, words: ArrayLike<number>): Value {
  if (words.length !== tag.count) throw decodeError(tag, `expected ${tag.count} registers, got ${words.length}`);
  const first = words[0] ?? 0;
  switch (tag.type) {
    case 'bool':
      return ((first >> (tag.bit ?? 0)) & 1) === 1;
    case 'string': {
      const view = toBytes(tag, words);
      const bytes = new Uint8Array(view.buffer);
      const nul = bytes.indexOf(0);
      // A PLC string ends at its first NUL (what follows is old content); trailing spaces are padding.
      return Buffer.from(nul < 0 ? bytes : bytes.subarray(0, nul)).toString('latin1').replace(/ +$/, '');
    }
    // One register needs no buffer (the hot path: a poll decodes thousands of these).
    case 'int16': {
      const w = byteSwapped(tag) ? swapBytes(first) : first & 0xffff;
      return scaled(tag, w >= 0x8000 ? w - 0x10000 : w);
    }
    case 'uint16':
      return scaled(tag, byteSwapped(tag) ? swapBytes(first) : first & 0xffff);
    case 'int32':
      return scaled(tag, toBytes(tag, words).getInt32(0));
    case 'uint32':
      return scaled(tag, toBytes(tag, words).getUint32(0));
    case 'float32': {
      const f = toBytes(tag, words).getFloat32(0);
      if (!Number.isFinite(f)) throw decodeError(tag, `the PLC holds ${f}, which JSON cannot carry`);
      return scaled(tag, shortestFloat32(f));
    }
    case 'float64': {
      const f = toBytes(tag, words).getFloat64(0);
      if (!Number.isFinite(f)) throw decodeError(tag, `the PLC holds ${f}, which JSON cannot carry`);
      return scaled(tag, f);
    }
  }
}

/** Decodes a coil/discrete tag from its one bit. */
export function decodeBits(tag: ResolvedTag, bits: ArrayLike<boolean>): boolean {
  const b = bits[0];
  if (bits.length !== 1 || typeof b !== 'boolean') throw decodeError(tag, `expected 1 bit, got ${bits.length}`);
  return b;
}

function wrongType(tag: ResolvedTag, value: unknown, expected: string): PlcError {
  const got = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return new PlcError('wrong-type', `tag ${tag.name} is ${tag.type}: expected ${expected}, got ${got}`, { tag: tag.name });
}

function outOfRange(tag: ResolvedTag, message: string): PlcError {
  return new PlcError('out-of-range', `tag ${tag.name}: ${message}`, { tag: tag.name });
}

/** Round half away from zero, so -2.5 and 2.5 are treated alike. */
function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/**
 * The registers to write for a value (for a bool: [1] or [0], the bit's value; the write planner
 * turns it into a coil write or a mask write). Checks the JSON type against the tag type
 * ('wrong-type': also a fraction for an integer tag without scale/offset, which holds whole
 * numbers only), then the configured min/max and the raw range of the type ('out-of-range').
 */
export function encodeValue(tag: ResolvedTag, value: unknown): number[] {
  if (tag.type === 'bool') {
    if (typeof value !== 'boolean') throw wrongType(tag, value, 'true or false');
    return [value ? 1 : 0];
  }
  if (tag.type === 'string') {
    if (typeof value !== 'string') throw wrongType(tag, value, 'a string');
    const max = (tag.length ?? tag.count) * 2;
    if (!/^[\x20-\x7e]*$/.test(value)) throw outOfRange(tag, 'a string must be printable ASCII (0x20-0x7E)');
    if (value.length > max) throw outOfRange(tag, `${value.length} characters do not fit ${max}`);
    const view = new DataView(new ArrayBuffer(tag.count * 2)); // padded with NULs
    for (let i = 0; i < value.length; i++) view.setUint8(i, value.charCodeAt(i));
    return toWords(tag, view);
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw wrongType(tag, value, 'a number');
  const unscaled = tag.scale === 1 && tag.offset === 0;
  if (tag.type !== 'float32' && tag.type !== 'float64' && unscaled && !Number.isInteger(value)) {
    throw wrongType(tag, value, 'a whole number');
  }
  if (tag.min !== undefined && value < tag.min) throw outOfRange(tag, `${value} is below the minimum ${tag.min}`);
  if (tag.max !== undefined && value > tag.max) throw outOfRange(tag, `${value} is above the maximum ${tag.max}`);
  const exact = (value - tag.offset) / tag.scale;
  const view = new DataView(new ArrayBuffer(tag.count * 2));
  switch (tag.type) {
    case 'float32':
      if (!(Math.abs(exact) <= FLOAT32_MAX)) throw outOfRange(tag, `${value} does not fit a float32`);
      view.setFloat32(0, exact);
      break;
    case 'float64':
      if (!Number.isFinite(exact)) throw outOfRange(tag, `${value} does not fit a float64`);
      view.setFloat64(0, exact);
      break;
    case 'int16':
    case 'uint16':
    case 'int32':
    case 'uint32': {
      const raw = roundHalfAway(exact);
      const [lo, hi] = INT_RANGE[tag.type];
      if (!(raw >= lo && raw <= hi)) {
        throw outOfRange(tag, `${value} is raw ${raw}, outside ${tag.type} (${lo}..${hi})${unscaled ? '' : ` after scale ${tag.scale} and offset ${tag.offset}`}`);
      }
      if (tag.type === 'int16') view.setInt16(0, raw);
      else if (tag.type === 'uint16') view.setUint16(0, raw);
      else if (tag.type === 'int32') view.setInt32(0, raw);
      else view.setUint32(0, raw);
      break;
    }
  }
  return toWords(tag, view);
}
