/**
 * A strict, streaming tar reader for update bundles. Archives are never trusted, and every
 * single-bit change to a valid archive must be noticed, so where common readers are lenient this
 * one rejects (OtaError 'bundle-malformed'):
 *  - each header's checksum is verified (unsigned sum, POSIX.1-2017 pax "ustar Interchange
 *    Format"), and the checksum field must read exactly `DDDDDD\0 ` (GNU tar) or `DDDDDD \0`
 *    (node-tar), so a flip in its terminator is caught too;
 *  - magic and version are `ustar\0` `00` (POSIX) or `ustar ` ` \0` (GNU);
 *  - numeric fields are octal (leading spaces, trailing NUL/space) or GNU base-256;
 *  - the padding after an entry's data must be zeros;
 *  - the archive ends with two zero blocks, and only zeros may follow (GNU tar pads the archive
 *    to a 10240-byte record) up to the end of the input;
 *  - extended headers: pax `x`/`g` (POSIX.1-2017 pax "pax Header Block"; path, linkpath and
 *    size are used, an `x` mtime must agree with the header's seconds, other standard keys are
 *    syntax-checked and ignored, unknown keys rejected), GNU `L`/`K` long names; each at most
 *    `maxMetaBytes`. (Flips in ignored pax values, e.g. atime or an mtime's fraction, which GNU
 *    tar's pax format writes, go unnoticed: nothing covers them and nothing uses them.)
 * Types 1-6 (links, devices, directories, FIFOs) carry no data (size must be 0); every other
 * non-meta type yields its data. Which types are acceptable is the caller's decision.
 *
 * Usage: `for await (const e of readTar(input)) { for await (const chunk of e.body) ... }`. The
 * input is pulled only as fast as entries and bodies are consumed (backpressure); a body not
 * consumed is skipped when the next entry is asked for. Body chunks are views of input chunks.
 * When iteration stops early (break, throw), the input iterator is closed (`return()`), which
 * destroys a Readable.
 */
import { OtaError } from './errors.js';

export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo' | 'other';

export interface TarHeader {
  path: string;
  linkpath: string;
  type: TarType;
  /** The raw type flag, e.g. '0', '5', 'S'. */
  typeflag: string;
  size: number;
  mode: number;
  /** Where the entry (its first header block, pax or long-name ones included) starts in the archive. */
  offset: number;
  /** Whether a global pax header came before: reading from `offset` alone would miss it. */
  afterGlobal: boolean;
}

export interface TarEntry {
  header: TarHeader;
  body: AsyncGenerator<Buffer, void, undefined>;
}

const BLOCK = 512;
const TYPES: Record<string, TarType> = { '0': 'file', '\0': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'directory', '6': 'fifo' };
const NO_DATA = new Set(['1', '2', '3', '4', '5', '6']);
const TIME = /^-?[0-9]{1,19}(\.[0-9]{1,9})?$/;
const ANY = /^[^\n]*$/;
/** The pax keys accepted: path, linkpath and size are used, the rest only checked. */
const PAX_KEYS: Record<string, RegExp> = {
  path: ANY,
  linkpath: ANY,
  size: /^(0|[1-9][0-9]{0,15})$/,
  mtime: TIME,
  atime: TIME,
  ctime: TIME,
  uid: /^[0-9]{1,10}$/,
  gid: /^[0-9]{1,10}$/,
  uname: ANY,
  gname: ANY,
};

function malformed(message: string): OtaError {
  return new OtaError('bundle-malformed', message);
}

function truncated(): OtaError {
  return malformed('the archive ends early (truncated)');
}

export function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Pulls chunks from an async iterator on demand, keeping at most one chunk's remainder. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  /** Bytes handed out so far. */
  consumed = 0;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  /** At most `max` bytes (at least one), or undefined at the end of the input. */
  async chunk(max: number): Promise<Buffer | undefined> {
    while (this.buf.length === 0) {
      if (this.ended) return undefined;
      const r = await this.it.next();
      if (r.done === true) {
        this.ended = true;
        return undefined;
      }
      this.buf = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
    const out = this.buf.subarray(0, max);
    this.buf = this.buf.subarray(out.length);
    this.consumed += out.length;
    return out;
  }

  /** Exactly `n` bytes, or undefined at a clean end of input; a partial read is a truncation. */
  async exact(n: number): Promise<Buffer | undefined> {
    const first = await this.chunk(n);
    if (first === undefined || first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const c = await this.chunk(n - got);
      if (c === undefined) throw truncated();
      parts.push(c);
      got += c.length;
    }
    return Buffer.concat(parts, n);
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const c = await this.chunk(n);
      if (c === undefined) throw truncated();
      n -= c.length;
    }
  }
}

/** An octal field (leading spaces, then digits, then only NULs/spaces) or GNU base-256. */
export function parseNumber(field: Buffer, name: string): number {
  const first = field[0] ?? 0;
  if (first === 0x80 || first === 0xff) {
    // GNU base-256: big-endian two's complement; only non-negative values we can count exactly.
    let v = 0;
    for (const b of field.subarray(1)) v = v * 256 + (first === 0xff ? 255 - b : b);
    if (first === 0xff || !Number.isSafeInteger(v)) throw malformed(`the ${name} field is out of range`);
    return v;
  }
  const m = /^ *([0-7]*)[ \0]*$/.exec(field.toString('latin1'));
  if (!m) throw malformed(`the ${name} field is not an octal number`);
  return m[1] ? parseInt(m[1], 8) : 0;
}

function str(block: Buffer, off: number, len: number): string {
  const f = block.subarray(off, off + len);
  const nul = f.indexOf(0);
  return f.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

type RawHeader = { name: string; linkname: string; typeflag: string; size: number; mode: number; mtime: number | undefined };

/** One 512-byte header block, checked; throws 'bundle-malformed'. */
export function parseHeader(block: Buffer): RawHeader {
  const ck = block.toString('latin1', 148, 156);
  if (!/^[0-7]{6}(\0 | \0)$/.test(ck)) throw malformed('a header checksum field is malformed (not a tar archive, or corrupt)');
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  if (sum !== parseInt(ck.slice(0, 6), 8)) throw malformed('a header checksum does not match (corrupt archive)');
  const magic = block.toString('latin1', 257, 265);
  const posix = magic === 'ustar\x0000';
  if (!posix && magic !== 'ustar  \0') throw malformed('a header is neither POSIX ustar nor GNU tar');
  const mode = parseNumber(block.subarray(100, 108), 'mode');
  for (const [off, len, name] of [[108, 8, 'uid'], [116, 8, 'gid'], [329, 8, 'devmajor'], [337, 8, 'devminor']] as const) parseNumber(block.subarray(off, off + len), name);
  const mtime = block[136] === 0xff ? undefined : parseNumber(block.subarray(136, 148), 'mtime'); // GNU: negative base-256 mtimes exist
  const size = parseNumber(block.subarray(124, 136), 'size');
  const name = str(block, 0, 100);
  const prefix = posix ? str(block, 345, 155) : '';
  return { name: prefix ? `${prefix}/${name}` : name, linkname: str(block, 157, 100), typeflag: String.fromCharCode(block[156]!), size, mode, mtime };
}

/** Pax records `LEN key=value\n` (POSIX.1-2017 pax, "pax Extended Header"), strictly. */
export function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    const lenText = sp < 0 ? '' : data.toString('latin1', off, sp);
    if (!/^[1-9][0-9]{0,8}$/.test(lenText)) throw malformed('a pax record length is malformed');
    const end = off + parseInt(lenText, 10);
    if (end > data.length || data[end - 1] !== 0x0a) throw malformed('a pax record is malformed');
    const rec = data.toString('utf8', sp + 1, end - 1);
    const eq = rec.indexOf('=');
    if (eq <= 0) throw malformed('a pax record has no key');
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    const syntax = PAX_KEYS[key];
    if (syntax === undefined) throw malformed(`unsupported pax key ${JSON.stringify(key)}`);
    if (!syntax.test(value)) throw malformed(`the pax ${key} is malformed`);
    out.set(key, value);
    off = end;
  }
  return out;
}

/** GNU `L`/`K` data: the name and exactly one terminating NUL. */
function longName(data: Buffer): string {
  const nul = data.indexOf(0);
  if (nul !== data.length - 1 || nul === 0) throw malformed('a GNU long name is malformed');
  return data.toString('utf8', 0, nul);
}

type Overrides = { path?: string | undefined; linkpath?: string | undefined; size?: number | undefined; mtime?: string | undefined };

function applyPax(to: Overrides, pax: Map<string, string>): void {
  for (const [k, v] of pax) {
    if (k === 'path' || k === 'linkpath' || k === 'mtime') to[k] = v === '' ? undefined : v;
    else if (k === 'size') {
      to.size = Number(v);
      if (!Number.isSafeInteger(to.size)) throw malformed('the pax size is out of range');
    }
  }
}

/**
 * `maxMetaBytes`: the largest pax or GNU long-name entry accepted (default 64 KiB).
 * `startOffset`: where `input` starts in the archive, when reading resumes at an entry's offset.
 */
export async function* readTar(input: AsyncIterable<Uint8Array>, opts: { maxMetaBytes?: number; startOffset?: number } = {}): AsyncGenerator<TarEntry, void, undefined> {
  const base = opts.startOffset ?? 0;
  const maxMeta = opts.maxMetaBytes ?? 64 * 1024;
  const it = input[Symbol.asyncIterator]();
  const r = new ByteReader(it);
  const padding = async (size: number): Promise<void> => {
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad === 0) return;
    const p = await r.exact(pad);
    if (p === undefined) throw truncated();
    if (!isZero(p)) throw malformed('non-zero bytes in the padding after an entry');
  };
  const meta = async (size: number): Promise<Buffer> => {
    if (size > maxMeta) throw malformed(`an extended header of ${size} bytes is over the limit of ${maxMeta}`);
    const data = size === 0 ? Buffer.alloc(0) : await r.exact(size);
    if (data === undefined) throw truncated();
    await padding(size);
    return Buffer.from(data); // a copy: the view would pin the input chunk
  };
  try {
    const global: Overrides = {};
    let local: Overrides = {};
    let pendingMeta = false;
    let entryStart = 0;
    let sawGlobal = false;
    for (;;) {
      if (!pendingMeta) entryStart = r.consumed;
      const block = await r.exact(BLOCK);
      if (block === undefined) throw malformed('the archive ends without its end-of-archive blocks (truncated)');
      if (isZero(block)) {
        const second = await r.exact(BLOCK);
        if (second === undefined) throw truncated();
        if (!isZero(second) || pendingMeta) throw malformed('a zero block inside the archive');
        for (let c = await r.chunk(64 * 1024); c !== undefined; c = await r.chunk(64 * 1024)) {
          if (!isZero(c)) throw malformed('data after the end of the archive');
        }
        return;
      }
      const h = parseHeader(block);
      switch (h.typeflag) {
        case 'x':
        case 'g':
          applyPax(h.typeflag === 'g' ? global : local, parsePax(await meta(h.size)));
          if (h.typeflag === 'g') sawGlobal = true;
          pendingMeta = true;
          continue;
        case 'L':
        case 'K':
          local[h.typeflag === 'L' ? 'path' : 'linkpath'] = longName(await meta(h.size));
          pendingMeta = true;
          continue;
      }
      const size = local.size ?? global.size ?? h.size;
      const header: TarHeader = {
        path: local.path ?? global.path ?? h.name,
        linkpath: local.linkpath ?? global.linkpath ?? h.linkname,
        type: TYPES[h.typeflag] ?? 'other',
        typeflag: h.typeflag,
        size,
        mode: h.mode & 0o7777,
        offset: base + entryStart,
        afterGlobal: sawGlobal,
      };
      // No check covers pax data but its use; the header's mtime does cover a pax mtime's seconds.
      if (local.mtime !== undefined && h.mtime !== undefined && Math.floor(Number(local.mtime)) !== h.mtime) {
        throw malformed(`${JSON.stringify(header.path)}: the pax mtime disagrees with the header's`);
      }
      local = {};
      pendingMeta = false;
      if (NO_DATA.has(h.typeflag) && size !== 0) throw malformed(`${JSON.stringify(header.path)}: a type ${h.typeflag} entry with data`);
      if (header.path === '') throw malformed('an entry without a name');
      let remain = size;
      let current = true; // a body asked for after the next entry was requested yields nothing
      const body = async function* (): AsyncGenerator<Buffer, void, undefined> {
        while (remain > 0 && current) {
          const c = await r.chunk(Math.min(remain, 64 * 1024));
          if (c === undefined) throw truncated();
          remain -= c.length;
          yield c;
        }
      };
      yield { header, body: body() };
      current = false;
      await r.skip(remain);
      remain = 0;
      await padding(size);
    }
  } finally {
    await it.return?.();
  }
}
