/**
 * Reads a format 1 bundle (CONTRACT.md section 4) in one streaming pass: checks the archive,
 * verifies the signature chain, applies the caller's policy, then checks (and, with `extractTo`,
 * writes) every payload member against the manifest. The archive is never trusted.
 *
 * INVARIANTS
 *  - Nothing of the payload is processed before the signature chain is verified and
 *    `checkManifest` has accepted the manifest.
 *  - A member's size is compared with the manifest before its data is read (tar bombs); the tar
 *    stream may not exceed what the manifest accounts for (gzip bombs); memory does not grow
 *    with the bundle: data flows chunk by chunk from the source to the hash and the file.
 *  - With `extractTo`: every file is created new (O_EXCL | O_NOFOLLOW) strictly below
 *    extractTo, with the manifest's mode masked to 0755, and fsync'd; symlinks are created only
 *    after every file is written and verified, and no listed path lies under a listed symlink,
 *    so no write ever goes through a symlink of the bundle.
 *  - On any failure the source is destroyed and the promise rejects with an OtaError (trust
 *    failures keep their TrustCode). What was already written under `extractTo` stays: the
 *    caller removes it (the updater extracts into an inactive slot it wipes first). `extractTo`
 *    should be empty or missing: an existing file of the same name fails the extraction.
 *  - A delta bundle's base files (`"source": "base"`) are never taken from the archive (a member
 *    of that path is 'unlisted-member'); with `baseDir` each one is read from there (O_NOFOLLOW,
 *    a regular file), hashed while it is copied and refused on the first difference
 *    ('delta-base-modified'): a file is never trusted because its name matches. They are copied
 *    after the archive's last member, so a checkpoint never lists one; several at a time, each
 *    fsync'd before the result is returned, like every written file.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, symlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { TrustError, verifySignedManifest, type VerifiedSigner } from '../certs/trust.js';
import { OtaError } from './errors.js';
import { ancestors } from './manifest-paths.js';
import { entryMode, fromBase, parseManifest, totalPayloadBytes, type DirEntry, type FileEntry, type Manifest } from './manifest.js';
import { bundleEntries, canonicalPem, gzipError, headMember, HEAD_NAMES, normaliseName, PRE_MANIFEST_TAR_BYTES, type InputState } from './bundle-input.js';
import type { TarEntry } from './tar-reader.js';

export interface ReadBundleOptions {
  /** The device's trust anchors (PEM). */
  trustPem: string;
  now?: Date;
  /** Where to write the payload (see the invariants above); without it, only verify. */
  extractTo?: string;
  /** The caller's policy (e.g. checkPolicy); throws to refuse the bundle before its payload. */
  checkManifest?: (m: Manifest) => void;
  /** A bound on the bundle's bytes as read from `source` (compressed). */
  maxBundleBytes?: number;
  onProgress?: (bytesIn: number) => void;
  signal?: AbortSignal;
  /**
   * Called before each payload member of a plain tar bundle, when everything before it is
   * written and fsync'd: reading can resume at `offset` after a restart (see `resume`). `take`
   * builds the checkpoint (it copies the list of paths seen: call it only to keep one).
   */
  onCheckpoint?: (offset: number, take: () => Checkpoint) => void;
  /** Go on from a checkpoint: `source` starts at `offset`; the head members are not in it. */
  resume?: Checkpoint;
  /**
   * The running release (its slot): where a delta's base files come from. Without it a delta's
   * base files are not checked when only verifying, and refused ('delta-base-mismatch') when
   * extracting.
   */
  baseDir?: string;
  /** Called after each of a delta's base files is copied (and fsync'd): how many so far, of how many. */
  onBaseCopied?: (copied: number, total: number) => void;
}

/** A point to resume a plain tar bundle at; JSON-safe except for the Buffers. */
export interface Checkpoint {
  /** The archive (= input) offset of the next member. */
  offset: number;
  manifestBytes: Buffer;
  signature: Buffer;
  signerPem: Buffer;
  /** Payload paths already processed (written and fsync'd, or checked). */
  seen: string[];
}

export interface ReadBundleResult {
  manifest: Manifest;
  manifestBytes: Buffer;
  /** The detached signature and the signer chain (PEM) as they came in the bundle. */
  signature: Buffer;
  signerPem: Buffer;
  signer: VerifiedSigner;
  /** Bytes read from the source. */
  bytesIn: number;
  /** Regular files checked (and written). */
  files: number;
  /** Their total size. */
  bytesOut: number;
  /** A delta's files taken from baseDir (checked, and copied with extractTo), and their size. */
  baseFiles: number;
  baseBytes: number;
}

const PERMS = 0o755;
/** Slack for the end-of-archive blocks, record padding (GNU: 10 KiB) and one input chunk. */
const END_SLACK = 1024 * 1024;

interface Plan {
  /** The files the archive carries. */
  files: Map<string, FileEntry>;
  /** A delta's files taken from the running release. */
  base: Map<string, FileEntry>;
  links: Map<string, string>;
  dirs: Map<string, DirEntry>;
  /** Directories that hold listed entries: allowed in the archive, not required. */
  parents: Set<string>;
}

function plan(m: Manifest): Plan {
  const p: Plan = { files: new Map(), base: new Map(), links: new Map(), dirs: new Map(), parents: new Set() };
  for (const f of m.files) {
    if (f.type === 'file') (fromBase(f) ? p.base : p.files).set(f.path, f);
    else if (f.type === 'symlink') p.links.set(f.path, f.target);
    else p.dirs.set(f.path, f);
    for (const a of ancestors(f.path)) p.parents.add(a);
  }
  return p;
}

/** The tar bytes a bundle of this manifest can need: data, padding, headers, long names. */
function allowance(m: Manifest, p: Plan): number {
  const entry = (text: string): number => 3 * 512 + 2 * (Buffer.byteLength(text) + 512);
  let n = totalPayloadBytes(m) + END_SLACK;
  for (const f of m.files) n += entry(f.path + (f.type === 'symlink' ? f.target : '')) + 511;
  for (const d of p.parents) n += entry(d);
  return n;
}

/** The path below payload/ ('' for payload/ itself); throws 'unsafe-path' or 'bundle-order'. */
function payloadPath(name: string, isDir: boolean): string {
  if (name.startsWith('/')) throw new OtaError('unsafe-path', `${JSON.stringify(name)} is absolute`);
  if (HEAD_NAMES.has(name)) throw new OtaError('bundle-order', `${name} appears again after the first three members`);
  const p = isDir && name.endsWith('/') ? name.slice(0, -1) : name;
  if (p === 'payload') return '';
  if (!p.startsWith('payload/')) throw new OtaError('unsafe-path', `${JSON.stringify(name)} is outside payload/`);
  const rel = p.slice('payload/'.length);
  if (rel.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new OtaError('unsafe-path', `${JSON.stringify(name)} is not a normalised path (empty, '.' or '..' segment)`);
  }
  return rel;
}

function describe(e: TarEntry): string {
  return `${JSON.stringify(e.header.path)} is a ${e.header.type === 'other' ? `type ${JSON.stringify(e.header.typeflag)}` : e.header.type} entry`;
}

/** Writes every byte of `chunks` (writev, then the rest of a short write). */
async function writeAll(fh: FileHandle, chunks: Buffer[]): Promise<void> {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  let done = (await fh.writev(chunks)).bytesWritten;
  if (done === total) return;
  const rest = Buffer.concat(chunks).subarray(done);
  for (let off = 0; off < rest.length; off += done) done = (await fh.write(rest, off, rest.length - off)).bytesWritten;
}

/** Bytes gathered into one write: 64 KiB writes awaited one by one made installs 1.5x slower. */
const WRITE_BATCH = 1024 * 1024;
/**
 * A delta's base files copied at a time. Each is still fsync'd before finish() returns (and so
 * before the slot can be marked verified), but eight copies and fsyncs in flight let the file
 * system commit them together: copying a release's ~1,800 files this way took half the time of
 * one at a time (ext4), which made a delta install slower than the full one.
 */
const BASE_COPIES = 8;

class PayloadChecker {
  readonly seen = new Set<string>();
  /** Directories (relative; '' is extractTo) whose entries changed: fsync'd at the end. */
  readonly dirsToSync = new Set<string>();
  files = 0;
  bytesOut = 0;
  baseFiles = 0;
  baseBytes = 0;

  constructor(
    private readonly p: Plan,
    private readonly extractTo: string | undefined,
    done: readonly string[] = [],
    private readonly baseDir?: string,
    private readonly onBaseCopied?: (copied: number, total: number) => void,
  ) {
    for (const rel of done) {
      this.seen.add(rel);
      const f = p.files.get(rel);
      if (f) {
        this.files++;
        this.bytesOut += f.size;
      }
      this.changed(rel);
    }
  }

  private dest(rel: string): string {
    return rel === '' ? this.extractTo! : join(this.extractTo!, ...rel.split('/'));
  }

  /** An entry at `rel` was created: its directory and every one above it gained an entry. */
  private changed(rel: string): void {
    for (const d of ['', ...ancestors(rel)]) this.dirsToSync.add(d);
  }

  async member(e: TarEntry): Promise<void> {
    const { type } = e.header;
    const rel = payloadPath(normaliseName(e.header.path), type === 'directory');
    if (type !== 'file' && type !== 'directory' && type !== 'symlink') {
      throw new OtaError('unsafe-member-type', `${describe(e)}; only files, directories and listed symlinks are allowed`);
    }
    if (this.seen.has(rel)) throw new OtaError('duplicate-member', `payload/${rel} appears twice in the archive`);
    this.seen.add(rel);
    const under = ancestors(rel).find((a) => this.p.links.has(a));
    if (under !== undefined || (type !== 'symlink' && this.p.links.has(rel))) {
      throw new OtaError('symlink-invalid', `payload/${rel} would be written through payload/${under ?? rel}, which the manifest lists as a symlink`);
    }
    if (type === 'directory') {
      if (rel !== '' && !this.p.parents.has(rel) && !this.p.dirs.has(rel)) throw new OtaError('unlisted-member', `the directory payload/${rel} holds nothing the manifest lists`);
      if (this.extractTo !== undefined) await mkdir(this.dest(rel), { recursive: true, mode: PERMS });
      return;
    }
    if (type === 'symlink') {
      const target = this.p.links.get(rel);
      if (target === undefined) throw new OtaError('symlink-invalid', `payload/${rel} is a symlink the manifest does not list as one`);
      if (e.header.linkpath !== target) throw new OtaError('symlink-invalid', `the symlink payload/${rel} points to ${JSON.stringify(e.header.linkpath)}, the manifest says ${JSON.stringify(target)}`);
      return; // created at the end
    }
    const f = this.p.files.get(rel);
    if (f === undefined && this.p.base.has(rel)) throw new OtaError('unlisted-member', `payload/${rel} is in the archive, but the manifest takes it from the base release`);
    if (f === undefined) throw new OtaError('unlisted-member', `payload/${rel} is not listed in the manifest${this.p.dirs.has(rel) ? ' as a file' : ''}`);
    if (e.header.size !== f.size) throw new OtaError('size-mismatch', `payload/${rel} is ${e.header.size} bytes in the archive, the manifest says ${f.size}`);
    await this.file(rel, f, e.body);
  }

  /** Creates the file at `rel` new (O_EXCL, O_NOFOLLOW) with its directories, when extracting. */
  private async create(rel: string, mode: number): Promise<FileHandle | undefined> {
    if (this.extractTo === undefined) return undefined;
    const path = this.dest(rel);
    await mkdir(dirname(path), { recursive: true, mode: PERMS });
    return open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  }

  private async file(rel: string, f: FileEntry, body: AsyncIterable<Buffer>): Promise<void> {
    const hash = createHash('sha256');
    const mode = (entryMode(f) ?? 0o644) & PERMS;
    const fh = await this.create(rel, mode);
    try {
      // One batch is written while the next is read and hashed.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      let writing: Promise<void> = Promise.resolve();
      try {
        for await (const chunk of body) {
          hash.update(chunk);
          if (!fh) continue;
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= WRITE_BATCH) {
            await writing;
            const full = batch;
            batch = [];
            batchBytes = 0;
            writing = writeAll(fh, full);
          }
        }
      } finally {
        await writing.catch(() => undefined);
      }
      await writing;
      if (fh && batch.length > 0) await writeAll(fh, batch);
      const digest = hash.digest('hex');
      if (digest !== f.sha256) throw new OtaError('hash-mismatch', `payload/${rel} has sha256 ${digest}, the manifest says ${f.sha256}`);
      if (fh) {
        await fh.chmod(mode); // open() applied the umask
        await fh.sync();
        this.changed(rel);
      }
    } finally {
      await fh?.close();
    }
    this.files++;
    this.bytesOut += f.size;
  }

  /** A delta's base file: read from baseDir, hashed while copied, refused on any difference. */
  private async fromBase(rel: string, f: FileEntry, baseDir: string): Promise<void> {
    const modified = (why: string): OtaError =>
      new OtaError('delta-base-modified', `${rel} of the running release ${why}; the delta cannot be installed on it: send the full bundle (and check the gateway: edge-agent diag)`);
    let src: FileHandle;
    try {
      // O_NONBLOCK: a FIFO put in the file's place must not hang the install.
      src = await open(join(baseDir, ...rel.split('/')), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      throw Object.assign(modified(`cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`), { cause: err });
    }
    try {
      const st = await src.stat();
      if (!st.isFile()) throw modified('is no longer a regular file');
      if (st.size !== f.size) throw modified(`is ${st.size} bytes, the manifest says ${f.size}`);
      const mode = (entryMode(f) ?? 0o644) & PERMS;
      const out = await this.create(rel, mode);
      try {
        const hash = createHash('sha256');
        const buf = Buffer.alloc(Math.min(WRITE_BATCH, Math.max(f.size, 1)));
        let total = 0;
        for (;;) {
          const { bytesRead } = await src.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          total += bytesRead;
          if (total > f.size) break;
          hash.update(buf.subarray(0, bytesRead));
          if (out) await writeAll(out, [buf.subarray(0, bytesRead)]);
        }
        const digest = hash.digest('hex');
        if (total !== f.size || digest !== f.sha256) throw modified(total !== f.size ? `changed size while it was read` : `has sha256 ${digest}, the manifest says ${f.sha256}`);
        if (out) {
          await out.chmod(mode);
          await out.sync();
          this.changed(rel);
        }
      } finally {
        await out?.close();
      }
    } finally {
      await src.close();
    }
    this.baseFiles++;
    this.baseBytes += f.size;
  }

  /**
   * Copies every base file with BASE_COPIES in flight. The first failure stops the others from
   * starting a new file; it is thrown once every copy in flight has ended, so no file handle
   * outlives the call and the caller can empty the slot.
   */
  private async copyBase(baseDir: string): Promise<void> {
    const todo = [...this.p.base];
    let next = 0;
    let failure: { err: unknown } | undefined;
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < todo.length) {
        const [rel, f] = todo[next++]!;
        try {
          await this.fromBase(rel, f, baseDir);
          this.onBaseCopied?.(this.baseFiles, todo.length);
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BASE_COPIES, todo.length) }, worker));
    if (failure !== undefined) throw failure.err;
  }

  /** After the archive: every listed entry present, a delta's base files copied, then listed dirs and symlinks created. */
  async finish(): Promise<void> {
    for (const path of [...this.p.files.keys(), ...this.p.links.keys()]) {
      if (!this.seen.has(path)) throw new OtaError('missing-file', `payload/${path} is listed in the manifest but not in the archive`);
    }
    if (this.p.base.size > 0) {
      if (this.baseDir !== undefined) {
        await this.copyBase(this.baseDir);
      } else if (this.extractTo !== undefined) {
        throw new OtaError('delta-base-mismatch', `a delta bundle takes ${this.p.base.size} files from its base release, and there is none to take them from`);
      }
    }
    if (this.extractTo === undefined) return;
    for (const [rel, d] of this.p.dirs) {
      await mkdir(this.dest(rel), { recursive: true, mode: PERMS });
      const fh = await open(this.dest(rel), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      await fh.chmod((entryMode(d) ?? PERMS) & PERMS).finally(() => fh.close());
      this.changed(rel);
    }
    for (const [rel, target] of this.p.links) {
      await mkdir(dirname(this.dest(rel)), { recursive: true, mode: PERMS });
      await symlink(target, this.dest(rel));
      this.changed(rel);
    }
    for (const dir of this.dirsToSync) {
      const fh = await open(this.dest(dir), constants.O_RDONLY | constants.O_DIRECTORY);
      await fh.sync().finally(() => fh.close());
    }
  }
}

function asOtaError(err: unknown): unknown {
  return err instanceof TrustError ? new OtaError(err.code, err.message, { cause: err }) : gzipError(err);
}

async function run(source: Readable, opts: ReadBundleOptions, st: InputState): Promise<ReadBundleResult> {
  const from = opts.resume;
  const entries = bundleEntries(source, st, opts, from?.offset ?? 0);
  const next = async (): Promise<TarEntry | undefined> => (await entries.next()).value ?? undefined;
  try {
    // On resume the head members were read (and verified) before; they are verified again.
    const manifestBytes = from ? from.manifestBytes : await headMember(await next(), 0);
    const signature = from ? from.signature : await headMember(await next(), 1);
    const signerPemBytes = from ? from.signerPem : await headMember(await next(), 2);
    const signerPem = canonicalPem(signerPemBytes);
    const signer = verifySignedManifest({ manifest: manifestBytes, signature, signerPem, trustPem: opts.trustPem, now: opts.now ?? new Date() });
    const manifest = parseManifest(manifestBytes);
    if (!from) opts.checkManifest?.(manifest);
    const p = plan(manifest);
    st.tarLimit = st.tarBytes + allowance(manifest, p);
    const checker = new PayloadChecker(p, opts.extractTo, from?.seen, opts.baseDir, opts.onBaseCopied);
    for (let e = await next(); e !== undefined; e = await next()) {
      if (opts.onCheckpoint && st.gzip !== true && !e.header.afterGlobal) {
        const offset = e.header.offset;
        opts.onCheckpoint(offset, () => ({ offset, manifestBytes, signature, signerPem: signerPemBytes, seen: [...checker.seen] }));
      }
      await checker.member(e);
    }
    await checker.finish();
    return { manifest, manifestBytes, signature, signerPem: signerPemBytes, signer, bytesIn: st.bytesIn, files: checker.files, bytesOut: checker.bytesOut, baseFiles: checker.baseFiles, baseBytes: checker.baseBytes };
  } finally {
    await entries.return();
  }
}

/** See the top of this file. Rejects with OtaError (codes of ota/errors.ts and certs/trust.ts). */
export async function readBundle(source: Readable, opts: ReadBundleOptions): Promise<ReadBundleResult> {
  const st: InputState = { bytesIn: 0, tarBytes: 0, tarLimit: PRE_MANIFEST_TAR_BYTES };
  const onAbort = (): void => {
    source.destroy(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    opts.signal?.throwIfAborted();
    return await run(source, opts, st);
  } catch (err) {
    source.destroy();
    throw asOtaError(opts.signal?.aborted === true ? opts.signal.reason : err);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
