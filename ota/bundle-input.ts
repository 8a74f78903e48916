/**
 * The byte-level front of the bundle reader: counting and bounding the input, gzip detection and
 * decompression, the three leading members (manifest.json, manifest.sig, signer.pem) and the
 * strict form of signer.pem. Everything is pulled on demand (async generators over the source),
 * so memory stays independent of the bundle's size and a slow consumer slows the source down.
 *
 * Strictness (a single flipped bit anywhere must be noticed): gzip's CRC-32 and length cover the
 * compressed data, but not its 10-byte header (RFC 1952 section 2.3: MTIME, XFL, OS and the FTEXT
 * flag are informational and no decoder checks them). So the header must be the plain one that
 * `tar -czf`, `gzip -n` and zlib write: no name, no comment, MTIME 0, XFL 0, OS 3 (Unix).
 * Likewise PEM decoders skip text outside the blocks, any whitespace, and the unused bits of the
 * last base64 character, so signer.pem must be canonical: CERTIFICATE blocks only, base64 in
 * 64-column lines, one line-ending style, nothing else.
 */
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { OtaError } from './errors.js';
import { readTar, type TarEntry } from './tar-reader.js';

export const HEAD_MEMBERS = [
  { name: 'manifest.json', max: 1024 * 1024 },
  { name: 'manifest.sig', max: 16 * 1024 },
  { name: 'signer.pem', max: 64 * 1024 },
] as const;

export const HEAD_NAMES: ReadonlySet<string> = new Set(HEAD_MEMBERS.map((m) => m.name));

/** What the tar stream may hold before the manifest says more: the three members and headers. */
export const PRE_MANIFEST_TAR_BYTES = 2 * 1024 * 1024;

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]);

export interface InputState {
  bytesIn: number;
  /** Bytes of tar stream (after decompression) handed to the tar reader. */
  tarBytes: number;
  /** The bound on tarBytes: PRE_MANIFEST_TAR_BYTES, then what the manifest allows. */
  tarLimit: number;
  /** Set once the input is known to be gzip: tar offsets are then not input offsets. */
  gzip?: boolean;
}

export interface InputOptions {
  maxBundleBytes?: number | undefined;
  onProgress?: ((bytesIn: number) => void) | undefined;
  signal?: AbortSignal | undefined;
}

async function* counted(source: Readable, st: InputState, opts: InputOptions): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of source as AsyncIterable<unknown>) {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('the bundle source must be a byte stream (no encoding set)');
    opts.signal?.throwIfAborted();
    st.bytesIn += chunk.length;
    if (opts.maxBundleBytes !== undefined && st.bytesIn > opts.maxBundleBytes) {
      throw new OtaError('too-large', `the bundle is larger than the limit of ${opts.maxBundleBytes} bytes`);
    }
    opts.onProgress?.(st.bytesIn);
    yield chunk;
  }
}

async function* prepend(head: Buffer, it: AsyncIterator<Buffer>): AsyncGenerator<Buffer, void, undefined> {
  try {
    if (head.length > 0) yield head;
    for (let r = await it.next(); r.done !== true; r = await it.next()) yield r.value;
  } finally {
    await it.return?.();
  }
}

/** The tar stream: the input as is, or gunzipped when it starts with the gzip magic (1f 8b). */
async function* decoded(raw: AsyncGenerator<Buffer, void, undefined>, st: InputState): AsyncGenerator<Buffer, void, undefined> {
  let head = Buffer.alloc(0);
  while (head.length < GZIP_HEADER.length) {
    const r = await raw.next();
    if (r.done === true) break;
    head = Buffer.concat([head, r.value]);
  }
  if (head[0] !== 0x1f || head[1] !== 0x8b) {
    yield* prepend(head, raw);
    return;
  }
  if (!head.subarray(0, GZIP_HEADER.length).equals(GZIP_HEADER)) {
    await raw.return();
    throw new OtaError(
      'bundle-malformed',
      'the gzip header carries a file name, a timestamp or other unchecked fields; make the bundle with `tar -czf`, `gzip -n` or `edge-agent bundle create --gzip`',
    );
  }
  st.gzip = true;
  const feed = Readable.from(prepend(head, raw), { objectMode: false });
  const gunzip = createGunzip();
  // Errors reach us through gunzip's iterator: pipeline destroys it with the first error.
  pipeline(feed, gunzip, () => undefined);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) yield chunk;
  } finally {
    feed.destroy();
    gunzip.destroy();
  }
}

async function* bounded(input: AsyncIterable<Buffer>, st: InputState): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of input) {
    st.tarBytes += chunk.length;
    if (st.tarBytes > st.tarLimit) {
      throw new OtaError('too-large', `the unpacked bundle is larger than its manifest allows (over ${st.tarLimit} bytes): a gzip or tar bomb, or a corrupt archive`);
    }
    yield chunk;
  }
}

/**
 * The bundle's tar entries, with the input counted, bounded and decompressed. `startOffset`:
 * the source starts there in a plain tar bundle (a resumed download).
 */
export function bundleEntries(source: Readable, st: InputState, opts: InputOptions, startOffset = 0): AsyncGenerator<TarEntry, void, undefined> {
  return readTar(bounded(decoded(counted(source, st, opts), st), st), { startOffset });
}

/** A zlib error as 'bundle-malformed'; anything else unchanged. */
export function gzipError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return err;
  return new OtaError('bundle-malformed', `the gzip stream is corrupt or truncated: ${(err as Error).message}`, { cause: err });
}

/**
 * The three leading members, unverified, reading nothing further (for `bundle inspect`); the
 * source is destroyed afterwards. Throws as readBundle would for the same bytes.
 */
export async function readBundleHead(source: Readable): Promise<{ manifestBytes: Buffer; signature: Buffer; signerPem: Buffer }> {
  const st: InputState = { bytesIn: 0, tarBytes: 0, tarLimit: PRE_MANIFEST_TAR_BYTES };
  const entries = bundleEntries(source, st, {});
  const next = async (): Promise<TarEntry | undefined> => (await entries.next()).value ?? undefined;
  try {
    return { manifestBytes: await headMember(await next(), 0), signature: await headMember(await next(), 1), signerPem: await headMember(await next(), 2) };
  } catch (err) {
    throw gzipError(err);
  } finally {
    await entries.return();
    source.destroy();
  }
}

/** Strips one leading `./` (what `tar -cf b.tar ./manifest.json ...` writes). */
export function normaliseName(name: string): string {
  return name.startsWith('./') ? name.slice(2) : name;
}

export async function collect(body: AsyncIterable<Buffer>, size: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  let off = 0;
  for await (const c of body) off += c.copy(out, off);
  return out;
}

/**
 * The i-th leading member (0: manifest.json, 1: manifest.sig, 2: signer.pem), checked for name,
 * type and size before its data is read; throws 'bundle-order' or 'too-large'.
 */
export async function headMember(entry: TarEntry | undefined, i: 0 | 1 | 2): Promise<Buffer> {
  const want = HEAD_MEMBERS[i];
  const name = entry === undefined ? undefined : normaliseName(entry.header.path);
  if (entry === undefined || name !== want.name || entry.header.type !== 'file') {
    const found = entry === undefined ? 'the end of the archive' : `${JSON.stringify(name)} (${entry.header.type})`;
    throw new OtaError('bundle-order', `member ${i + 1} must be the file ${want.name}, found ${found}; the order is manifest.json, manifest.sig, signer.pem, payload/`);
  }
  if (entry.header.size > want.max) throw new OtaError('too-large', `${want.name} is ${entry.header.size} bytes, over the limit of ${want.max}`);
  return collect(entry.body, entry.header.size);
}

const BLOCK = /-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END CERTIFICATE-----/g;

/** The CERTIFICATE blocks of `text`, re-encoded canonically with `eol`. */
function canonicalBlocks(text: string, eol: string): { count: number; canon: string } {
  const blocks = [...text.matchAll(BLOCK)];
  const canon = blocks
    .map((m) => {
      const b64 = Buffer.from((m[1] ?? '').replace(/[\r\n]/g, ''), 'base64').toString('base64');
      return ['-----BEGIN CERTIFICATE-----', ...(b64.match(/.{1,64}/g) ?? []), '-----END CERTIFICATE-----', ''].join(eol);
    })
    .join('');
  return { count: blocks.length, canon };
}

/** signer.pem as text, if it is canonical PEM (see the top of this file); else 'chain-invalid'. */
export function canonicalPem(bytes: Buffer): string {
  const text = bytes.toString('latin1');
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const { count, canon } = canonicalBlocks(text, eol);
  if (count === 0 || (text !== canon && text + eol !== canon)) {
    throw new OtaError(
      'chain-invalid',
      'signer.pem is not canonical PEM: only CERTIFICATE blocks, base64 in 64-column lines, one line-ending style, nothing between or around the blocks',
    );
  }
  return text;
}

/** The CERTIFICATE blocks of a PEM text in canonical form (for `bundle create`). */
export function canonicalizePem(pem: string): string {
  const { count, canon } = canonicalBlocks(pem, '\n');
  if (count === 0) throw new OtaError('chain-invalid', 'the certificate file holds no PEM CERTIFICATE block');
  return canon;
}
