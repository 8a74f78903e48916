/**
 * Makes a format 1 bundle (CONTRACT.md section 4) from a directory: manifest.json, manifest.sig,
 * signer.pem, then payload/ with the directory's contents, as a tar (optionally gzip) stream
 * written atomically to `out` (temp file, fsync, rename, fsync of the directory; lib/atomic.ts).
 *
 * Decisions:
 *  - Entries come in a deterministic order: depth first, names sorted by code unit; directories
 *    before their contents. Given the same tree and `now`, the output is the same bytes.
 *  - File modes are carried in the manifest, masked to 0755 as the reader does; owners are not.
 *    Empty directories are listed as `type: "dir"` (others need not be). Hard-linked files are
 *    stored as separate regular files (the reader refuses hard links).
 *  - Symlinks are stored as such; the manifest parser refuses a target that leaves the tree.
 *    Sockets, FIFOs and devices fail the creation ('unsafe-member-type').
 *  - The payload is streamed from inDir by the `tar` package's Pack (no copy of the tree), fed
 *    with the stats taken while hashing; every file is stat'ed again at the end, and a file that
 *    changed meanwhile fails the creation rather than yielding a bundle no device accepts.
 *  - The gzip header's OS byte is set to 3 (Unix) whatever the platform: the reader requires
 *    the plain header (see ota/bundle-input.ts).
 *  - A top-level `.edge-agent-bundle/` (SLOT_MANIFEST_DIR: the signed manifest an installed slot
 *    or a release directory keeps of its own bundle) is never part of the payload.
 *  - With `deltaFrom` (the base release's manifest.json bytes) it makes a delta bundle: every
 *    regular file whose path, size and sha256 are the same in the base is listed with
 *    `"source": "base"` and left out of the payload, and so is every directory that then holds
 *    nothing of the payload (the reader creates the directories of what it writes). The base's
 *    files themselves are not needed: the device verifies each one it copies against the hash.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Header, Pack, type HeaderData } from 'tar';
import { checkKeyMatchesCert, signManifest } from '../certs/trust.js';
import { fsyncDir } from '../lib/atomic.js';
import { canonicalizePem, HEAD_MEMBERS } from './bundle-input.js';
import { OtaError } from './errors.js';
import { ancestors } from './manifest-paths.js';
import { MANIFEST_FORMAT, parseManifest, PRODUCT, SLOT_MANIFEST_DIR, type Manifest, type ManifestEntry } from './manifest.js';

export interface CreateBundleOptions {
  inDir: string;
  version: string;
  compatible: string[];
  /** The signer's private key (PEM, unencrypted). */
  keyPem: string;
  /** The signer's certificate, then any intermediates (PEM). */
  certPem: string;
  out: string;
  gzip?: boolean;
  requires?: string;
  securityVersion?: number;
  product?: 'edge-agent';
  now?: Date;
  /** Make a delta against this base release: the exact bytes of its manifest.json. */
  deltaFrom?: Buffer;
}

interface Walked {
  rel: string;
  abs: string;
  stat: Stats;
  id: string;
  entry?: ManifestEntry;
  /** Not packed: a delta's base file, or a directory that holds no packed member. */
  skip?: boolean;
}

const kindOf = (s: Stats): string => (s.isSocket() ? 'a socket' : s.isFIFO() ? 'a FIFO' : s.isCharacterDevice() ? 'a character device' : s.isBlockDevice() ? 'a block device' : 'not a file');

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

/** Depth first, sorted; directories before their contents. */
async function walk(root: string, rel: string, out: Walked[]): Promise<void> {
  const names = (await readdir(rel === '' ? root : join(root, rel))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    if (rel === '' && name === SLOT_MANIFEST_DIR) continue;
    const r = rel === '' ? name : `${rel}/${name}`;
    const abs = join(root, r);
    const stat = await lstat(abs);
    const w: Walked = { rel: r, abs, stat, id: identity(stat) };
    out.push(w);
    if (stat.isDirectory()) {
      const before = out.length;
      await walk(root, r, out);
      if (out.length === before) w.entry = { path: r, type: 'dir', mode: octal(stat.mode) };
    } else if (stat.isFile()) {
      w.entry = { path: r, type: 'file', sha256: await sha256File(abs), size: stat.size, mode: octal(stat.mode) };
    } else if (stat.isSymbolicLink()) {
      w.entry = { path: r, type: 'symlink', target: await readlink(abs) };
    } else {
      throw new OtaError('unsafe-member-type', `${abs} is ${kindOf(stat)}; a bundle holds only files, directories and symlinks`);
    }
  }
}

function octal(mode: number): string {
  return `0${(mode & 0o755).toString(8).padStart(3, '0')}`;
}

/** What must not change between hashing and packing (Pack mutates the Stats it is given). */
function identity(s: Stats): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.mode}`;
}

/** A tar member from memory: header, data, zero padding to the 512-byte block. */
function member(h: HeaderData, data: Buffer = Buffer.alloc(0)): Buffer {
  const header = new Header({ mode: 0o644, ...h, size: data.length });
  if (header.encode()) throw new Error(`tar: ${h.path ?? ''} needs a pax header`);
  return Buffer.concat([header.block!, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** Pack must not turn files with several links into hard-link entries: it never finds one here. */
class NoLinkCache extends Map<`${number}:${number}`, string> {
  override set(): this {
    return this;
  }
}

/** Rewrites byte 9 of the stream (gzip's OS field, RFC 1952 2.3) to 3, Unix. */
function gzipOsUnix(): Transform {
  let pos = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      if (pos <= 9 && pos + chunk.length > 9) chunk[9 - pos] = 3;
      pos += chunk.length;
      cb(null, chunk);
    },
  });
}

async function* tarStream(head: Buffer[], inDir: string, walked: Walked[], now: Date): AsyncGenerator<Buffer, void, undefined> {
  for (const b of head) yield b;
  yield member({ path: 'payload/', type: 'Directory', mode: 0o755, mtime: now });
  const statCache = new Map(walked.map((w) => [w.abs, w.stat] as const));
  const pack = new Pack({ cwd: inDir, prefix: 'payload', portable: true, noDirRecurse: true, mtime: now, linkCache: new NoLinkCache(), statCache, strict: true });
  for (const w of walked) if (w.skip !== true) pack.add(w.rel);
  pack.end();
  for await (const chunk of pack as AsyncIterable<Buffer>) yield chunk;
}

/** Builds the manifest of inDir; the entries are validated by parseManifest. */
async function manifestOf(o: CreateBundleOptions, inDir: string, now: Date): Promise<{ walked: Walked[]; bytes: Buffer; manifest: Manifest }> {
  const walked: Walked[] = [];
  await walk(inDir, '', walked);
  const delta = o.deltaFrom === undefined ? undefined : markBase(walked, o.deltaFrom);
  const m = {
    format: MANIFEST_FORMAT,
    product: o.product ?? PRODUCT,
    version: o.version,
    compatible: o.compatible,
    ...(o.requires === undefined ? {} : { requires: o.requires }),
    securityVersion: o.securityVersion ?? 0,
    created: now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    ...(delta === undefined ? {} : { delta }),
    files: walked.flatMap((w) => (w.entry ? [w.entry] : [])),
  };
  const bytes = Buffer.from(JSON.stringify(m, null, 2) + '\n', 'utf8');
  if (bytes.length > HEAD_MEMBERS[0].max) throw new OtaError('too-large', `manifest.json would be ${bytes.length} bytes, over the limit of ${HEAD_MEMBERS[0].max}`);
  return { walked, bytes, manifest: parseManifest(bytes) };
}

/** Marks the files the base has unchanged (and the directories left empty of payload) as skipped. */
function markBase(walked: Walked[], baseBytes: Buffer): { baseVersion: string; baseManifestSha256: string } {
  let base: Manifest;
  try {
    base = parseManifest(baseBytes);
  } catch (err) {
    throw new OtaError('manifest-invalid', `the base release's manifest.json: ${(err as Error).message}`, { cause: err });
  }
  const same = new Map(base.files.flatMap((f) => (f.type === 'file' ? [[f.path, f] as const] : [])));
  const needed = new Set<string>();
  for (const w of walked) {
    const e = w.entry;
    if (e?.type === 'file') {
      const b = same.get(e.path);
      if (b !== undefined && b.sha256 === e.sha256 && b.size === e.size) {
        w.entry = { ...e, source: 'base' };
        w.skip = true;
        continue;
      }
    }
    if (e !== undefined) for (const a of ancestors(w.rel)) needed.add(a);
  }
  for (const w of walked) if (w.stat.isDirectory() && w.entry === undefined && !needed.has(w.rel)) w.skip = true;
  return { baseVersion: base.version, baseManifestSha256: createHash('sha256').update(baseBytes).digest('hex') };
}

export async function createBundle(o: CreateBundleOptions): Promise<{ manifest: Manifest; bytes: number }> {
  // Whole seconds: a pax mtime is then an integer the reader compares with the header's.
  const now = new Date(Math.floor((o.now ?? new Date()).getTime() / 1000) * 1000);
  const inDir = resolve(o.inDir);
  const signerPem = Buffer.from(canonicalizePem(o.certPem), 'latin1');
  if (signerPem.length > HEAD_MEMBERS[2].max) throw new OtaError('too-large', `the certificate chain is ${signerPem.length} bytes, over the limit of ${HEAD_MEMBERS[2].max}`);
  checkKeyMatchesCert(o.keyPem, o.certPem);
  const { walked, bytes: manifestBytes, manifest } = await manifestOf(o, inDir, now);
  const signature = signManifest(manifestBytes, o.keyPem);
  const head = [
    member({ path: 'manifest.json', type: 'File', mtime: now }, manifestBytes),
    member({ path: 'manifest.sig', type: 'File', mtime: now }, signature),
    member({ path: 'signer.pem', type: 'File', mtime: now }, signerPem),
  ];

  const out = resolve(o.out);
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    const source = Readable.from(tarStream(head, inDir, walked, now), { objectMode: false });
    const sink = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    await (o.gzip === true ? pipeline(source, createGzip(), gzipOsUnix(), counter, sink) : pipeline(source, counter, sink));
    for (const w of walked) {
      if (w.id !== identity(await lstat(w.abs))) throw new OtaError('hash-mismatch', `${w.abs} changed while the bundle was being made; try again`);
    }
    const fh = await open(tmp, 'r');
    await fh.sync().finally(() => fh.close()); // fsync flushes the file, whichever descriptor asks
    await rename(tmp, out);
    fsyncDir(dirname(out));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return { manifest, bytes };
}
