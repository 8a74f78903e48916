/**
 * A `set` from the WMS (`~/plc/{device}/set`, CONTRACT.md section 3): parsing, validation against
 * the device's tag map, and the Modbus requests it becomes. Pure.
 *
 * Invariants of planWrite:
 * - every tag of the set is validated before anything is planned: one bad tag rejects the whole
 *   set and the PLC is not touched;
 * - a bool with `bit` in a holding register becomes an FC22 mask write of that bit alone, never a
 *   read-modify-write (a read-modify-write would undo a change the PLC made in between);
 * - requests run in the order of the tags in the message (a setpoint before its start bit);
 *   consecutive tags at consecutive addresses of the same kind are merged into one request
 *   (bits of one register into one mask); gaps are never written;
 * - two tags of one set that cover the same register or bit are rejected: their order would
 *   decide the outcome silently.
 */
import { MAX_WRITE_COILS, MAX_WRITE_REGISTERS, deviceTags, type DeviceConfig, type ResolvedTag } from './config.js';
import { decodeBits, decodeRegisters, encodeValue, type Value } from './codec.js';
import { PlcError, type PlcCode } from './errors.js';
import { parseJsonPayload } from '../lib/json-payload.js';

export interface SetRequest {
  id: string;
  tags: Record<string, unknown>;
  expiresAt?: string;
}

export type ParsedSet = { ok: true; req: SetRequest } | { ok: false; id?: string; code: PlcCode; message: string };

export type WriteOp =
  | { kind: 'registers'; start: number; values: number[] } // FC16 (FC6 for one register: the driver decides)
  | { kind: 'coils'; start: number; values: boolean[] } // FC15 (FC5 for one coil)
  | { kind: 'mask'; address: number; andMask: number; orMask: number }; // FC22: (current AND andMask) OR (orMask AND NOT andMask)

export type WritePlan = { ok: true; ops: WriteOp[]; readBack: ResolvedTag[] } | { ok: false; code: PlcCode; message: string; tag?: string };

/** The same id rule as the agent's commands. */
export const SET_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * Parses a set message. `ok: false` without an id means there is no `~/res/{id}` to answer on:
 * the caller logs and drops it. Unknown top-level keys are ignored (the WMS may add metadata).
 */
export function parseSet(payload: Buffer, maxBytes: number): ParsedSet {
  const parsed = parseJsonPayload(payload, maxBytes);
  if (!parsed.ok) {
    const { id, code, message } = parsed;
    return { ok: false, ...(id ? { id } : {}), code, message };
  }
  const doc = parsed.doc;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { ok: false, code: 'invalid-json', message: 'payload is JSON but not an object' };
  }
  const obj = doc as Record<string, unknown>;
  if (typeof obj.id !== 'string' || !SET_ID.test(obj.id)) {
    return { ok: false, code: 'invalid-params', message: 'id must be a string matching [A-Za-z0-9_.:-]{1,128}' };
  }
  const id = obj.id;
  if (obj.tags === null || typeof obj.tags !== 'object' || Array.isArray(obj.tags)) {
    return { ok: false, id, code: 'invalid-params', message: 'tags must be an object of tag names to values' };
  }
  if (obj.expiresAt !== undefined && typeof obj.expiresAt !== 'string') {
    return { ok: false, id, code: 'invalid-params', message: 'expiresAt must be an ISO-8601 timestamp' };
  }
  const req: SetRequest = { id, tags: obj.tags as Record<string, unknown> };
  if (obj.expiresAt !== undefined) req.expiresAt = obj.expiresAt;
  return { ok: true, req };
}

interface Validated {
  tag: ResolvedTag;
  words: number[];
}

/** The registers/bits a tag of a set touches, for the overlap check: area:address -> bit mask (0xFFFF: all). */
function footprint(tag: ResolvedTag): Map<string, number> {
  const m = new Map<string, number>();
  for (let a = tag.start; a < tag.start + tag.count; a++) m.set(`${tag.area}:${a}`, tag.bit === undefined || tag.area === 'coil' ? 0xffff : 1 << tag.bit);
  return m;
}

function reject(code: PlcCode, message: string, tag?: string): WritePlan {
  return tag === undefined ? { ok: false, code, message } : { ok: false, code, message, tag };
}

/** All tags validated before anything is planned: one bad tag rejects the whole set, PLC untouched. */
export function planWrite(device: DeviceConfig, req: SetRequest, now: number): WritePlan {
  if (req.expiresAt !== undefined) {
    const t = Date.parse(req.expiresAt);
    if (!Number.isFinite(t)) return reject('invalid-params', 'expiresAt must be an ISO-8601 timestamp');
    if (t <= now) return reject('expired', `set expired at ${new Date(t).toISOString()}`);
  }
  const names = Object.keys(req.tags);
  if (names.length === 0) return reject('invalid-params', 'tags is empty: nothing to write');
  const byName = deviceTags(device);
  const validated: Validated[] = [];
  const taken = new Map<string, { bits: number; tag: string }>();
  for (const name of names) {
    const tag = byName.get(name);
    if (!tag) return reject('unknown-tag', `device ${device.name} has no tag ${name}`, name);
    if (tag.access === 'read') return reject('read-only', `tag ${name} is read-only`, name);
    let words: number[];
    try {
      words = encodeValue(tag, req.tags[name]);
    } catch (err) {
      if (err instanceof PlcError) return reject(err.code, err.message, name);
      throw err;
    }
    for (const [key, bits] of footprint(tag)) {
      const other = taken.get(key);
      if (other && (other.bits & bits) !== 0) return reject('invalid-params', `tags ${other.tag} and ${name} write the same ${tag.area === 'coil' ? 'coil' : 'register'}`, name);
      taken.set(key, { bits: (other?.bits ?? 0) | bits, tag: name });
    }
    validated.push({ tag, words });
  }
  return { ok: true, ops: merge(validated.map(toOp)), readBack: validated.map((v) => v.tag).filter((t) => t.access === 'read-write') };
}

function toOp({ tag, words }: Validated): WriteOp {
  if (tag.area === 'coil') return { kind: 'coils', start: tag.start, values: [words[0] === 1] };
  if (tag.type === 'bool') {
    const bit = 1 << (tag.bit ?? 0);
    return { kind: 'mask', address: tag.start, andMask: ~bit & 0xffff, orMask: words[0] === 1 ? bit : 0 };
  }
  return { kind: 'registers', start: tag.start, values: words };
}

/** Merges each op into the one before it when they continue each other; order is kept. */
function merge(ops: WriteOp[]): WriteOp[] {
  const out: WriteOp[] = [];
  for (const op of ops) {
    const prev = out[out.length - 1];
    if (prev?.kind === 'registers' && op.kind === 'registers' && prev.start + prev.values.length === op.start && prev.values.length + op.values.length <= MAX_WRITE_REGISTERS) {
      out[out.length - 1] = { ...prev, values: [...prev.values, ...op.values] };
    } else if (prev?.kind === 'coils' && op.kind === 'coils' && prev.start + prev.values.length === op.start && prev.values.length + op.values.length <= MAX_WRITE_COILS) {
      out[out.length - 1] = { ...prev, values: [...prev.values, ...op.values] };
    } else if (prev?.kind === 'mask' && op.kind === 'mask' && prev.address === op.address) {
      // Bits of one register (never the same bit: the overlap check rejects that) in one FC22.
      const bits = ~prev.andMask & 0xffff;
      const bit = ~op.andMask & 0xffff;
      out[out.length - 1] = { kind: 'mask', address: op.address, andMask: ~(bits | bit) & 0xffff, orMask: prev.orMask | op.orMask };
    } else {
      out.push(op);
    }
  }
  return out;
}

/**
 * The value a read-back of a written tag should give: the written value after the round trip
 * through the registers (12.34 written to a tag with scale 0.1 reads back as 12.3).
 */
export function expectedReadBack(tag: ResolvedTag, value: unknown): Value {
  const words = encodeValue(tag, value);
  if (tag.type === 'bool') return words[0] === 1;
  return tag.area === 'coil' ? decodeBits(tag, [words[0] === 1]) : decodeRegisters(tag, words);
}
