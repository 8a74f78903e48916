/**
 * The simulated PLC's data model and request execution: a request PDU in, a response PDU out
 * (pure apart from the memory it reads and writes). Limits and exception codes per the "Modbus
 * Application Protocol Specification V1.1b3", sections 6.1-6.17 and 7: quantity out of range or
 * a malformed request -> 3 (illegal data value), start + quantity beyond the area -> 2 (illegal
 * data address), an unknown function -> 1 (illegal function).
 */

export type SimArea = 'holding' | 'input' | 'coil' | 'discrete';

/** One unit's four areas; bits are stored one per byte (0/1). */
export interface Memory {
  holding: Uint16Array;
  input: Uint16Array;
  coil: Uint8Array;
  discrete: Uint8Array;
}

export function newMemory(size = 65536): Memory {
  return { holding: new Uint16Array(size), input: new Uint16Array(size), coil: new Uint8Array(size), discrete: new Uint8Array(size) };
}

/** Writes values into an area from `address`; throws when they do not fit. */
export function setValues(m: Memory, area: SimArea, address: number, values: readonly (number | boolean)[]): void {
  const arr = m[area];
  if (address < 0 || address + values.length > arr.length) throw new RangeError(`${area} ${address}+${values.length} is outside 0..${arr.length - 1}`);
  values.forEach((v, i) => {
    arr[address + i] = typeof v === 'boolean' ? (v ? 1 : 0) : area === 'coil' || area === 'discrete' ? (v ? 1 : 0) : v & 0xffff;
  });
}

export function getValues(m: Memory, area: SimArea, address: number, count: number): number[] {
  const arr = m[area];
  if (address < 0 || count < 0 || address + count > arr.length) throw new RangeError(`${area} ${address}+${count} is outside 0..${arr.length - 1}`);
  return Array.from(arr.subarray(address, address + count));
}

function exception(fc: number, code: number): Buffer {
  return Buffer.from([fc | 0x80, code]);
}

function readBits(fc: number, bits: Uint8Array, start: number, qty: number): Buffer {
  if (qty < 1 || qty > 2000) return exception(fc, 3);
  if (start + qty > bits.length) return exception(fc, 2);
  const n = Math.ceil(qty / 8);
  const out = Buffer.alloc(2 + n);
  out[0] = fc;
  out[1] = n;
  for (let i = 0; i < qty; i++) if (bits[start + i]) out[2 + (i >> 3)]! |= 1 << (i & 7);
  return out;
}

function readRegs(fc: number, regs: Uint16Array, start: number, qty: number): Buffer {
  if (qty < 1 || qty > 125) return exception(fc, 3);
  if (start + qty > regs.length) return exception(fc, 2);
  const out = Buffer.allocUnsafe(2 + 2 * qty);
  out[0] = fc;
  out[1] = 2 * qty;
  for (let i = 0; i < qty; i++) out.writeUInt16BE(regs[start + i]!, 2 + 2 * i);
  return out;
}

/** Executes one request PDU against `m` and returns the response PDU (maybe an exception). */
export function executePdu(m: Memory, pdu: Buffer): Buffer {
  const fc = pdu[0] ?? 0;
  const fixed = (len: number): boolean => pdu.length === len;
  const a = pdu.length >= 3 ? pdu.readUInt16BE(1) : 0;
  const b = pdu.length >= 5 ? pdu.readUInt16BE(3) : 0;
  switch (fc) {
    case 1:
    case 2:
      if (!fixed(5)) return exception(fc, 3);
      return readBits(fc, fc === 1 ? m.coil : m.discrete, a, b);
    case 3:
    case 4:
      if (!fixed(5)) return exception(fc, 3);
      return readRegs(fc, fc === 3 ? m.holding : m.input, a, b);
    case 5:
      if (!fixed(5) || (b !== 0 && b !== 0xff00)) return exception(fc, 3);
      if (a >= m.coil.length) return exception(fc, 2);
      m.coil[a] = b === 0xff00 ? 1 : 0;
      return Buffer.from(pdu);
    case 6:
      if (!fixed(5)) return exception(fc, 3);
      if (a >= m.holding.length) return exception(fc, 2);
      m.holding[a] = b;
      return Buffer.from(pdu);
    case 15: {
      const n = pdu[5] ?? 0;
      if (pdu.length < 6 || b < 1 || b > 1968 || n !== Math.ceil(b / 8) || pdu.length !== 6 + n) return exception(fc, 3);
      if (a + b > m.coil.length) return exception(fc, 2);
      for (let i = 0; i < b; i++) m.coil[a + i] = (pdu[6 + (i >> 3)]! >> (i & 7)) & 1;
      return pdu.subarray(0, 5);
    }
    case 16: {
      const n = pdu[5] ?? 0;
      if (pdu.length < 6 || b < 1 || b > 123 || n !== 2 * b || pdu.length !== 6 + n) return exception(fc, 3);
      if (a + b > m.holding.length) return exception(fc, 2);
      for (let i = 0; i < b; i++) m.holding[a + i] = pdu.readUInt16BE(6 + 2 * i);
      return pdu.subarray(0, 5);
    }
    case 22: {
      if (!fixed(7)) return exception(fc, 3);
      if (a >= m.holding.length) return exception(fc, 2);
      const and = b;
      const or = pdu.readUInt16BE(5);
      // Result = (Current AND And_Mask) OR (Or_Mask AND (NOT And_Mask)), spec section 6.16.
      m.holding[a] = (m.holding[a]! & and) | (or & ~and & 0xffff);
      return Buffer.from(pdu);
    }
    default:
      return exception(fc, 1);
  }
}
