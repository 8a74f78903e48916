/**
 * The update pipeline up to the point of no return: download -> verify -> install into the
 * inactive slot -> backup -> activate. What happens after activation (the new version's health
 * gate, commit or roll back) is ota/trial-gate.ts and resolveAfterRestart() below.
 *
 * ota/ knows nothing of MQTT: progress, cancellation and the command's durable data come in
 * through UpdateContext, which agent/ops/update.ts maps onto the command router.
 *
 * INVARIANTS
 * - The inactive slot is marked `installing` (slots.json, atomic) before a byte of it is
 *   removed or written; so a power cut never leaves a `committed` slot half-written.
 * - The command's phase is saved before the step it names: `installing` before the slot is
 *   touched, `activated` before the active pointer moves. After a restart the phase and
 *   slots.json together say exactly what happened (resolveAfterRestart).
 * - A failed or cancelled install gives the slot back: it becomes `empty` and its files are
 *   removed, so the space is free again; the active slot is never touched.
 * - Activation is one atomic write of slots.json (state and pointer together); before it, a
 *   backup of the configuration and the state store is on disk.
 * - One exception to giving the slot back: a download whose URL expired mid-way (`url-expired`)
 *   keeps the slot `installing` and its last checkpoint, marked expired. The next `update` of the
 *   same bundle (same sha256, or the same URL without its query: a fresh presigned URL) takes
 *   them over under its own id and resumes with Range; any other update starts from the empty
 *   slot as always. The resumed bytes are checked against the signed manifest of the checkpoint.
 * - A failure anywhere in the pipeline (download, reader, hashing, writes) stops all of it: the
 *   install settles only after the download and the reader have both ended, and no progress
 *   is reported once it has failed.
 * - A delta bundle installs only on the release it was made from: its `delta` must name the
 *   running version and the sha256 of the running slot's signed manifest.json, checked on the
 *   head alone (ota/head-probe.ts) before the payload is downloaded, and again by the reader
 *   before the slot is touched. Its base files come from the running slot, each verified while
 *   copied (ota/bundle-reader.ts); the running slot is only read.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { fsyncDir, readJsonFile, writeFileAtomic, writeJsonAtomic } from '../lib/atomic.js';
import { download } from './download.js';
import { readBundle, type Checkpoint } from './bundle-reader.js';
import { canonicalPem } from './bundle-input.js';
import { probeHead } from './head-probe.js';
import { verifySignedManifest } from '../certs/trust.js';
import { checkPolicy, parseManifest, SLOT_MANIFEST_DIR, type Manifest } from './manifest.js';
import { errorCode } from '../lib/errors.js';
import { OtaError } from './errors.js';
import { abortInstall, activate, beginInstall, loadSlots, markVerified, otherSlot, saveSlots, type SlotName, type SlotsFile } from './slots.js';

export type UpdateStep = 'download' | 'verify' | 'install' | 'activate' | 'health-check' | 'commit' | 'rollback';

export interface UpdateParams {
  url: string;
  sha256?: string | undefined;
  size?: number | undefined;
  allowDowngrade?: boolean | undefined;
}

/** What the command keeps across restarts (saved through UpdateContext.save). */
export interface UpdateData {
  phase: 'installing' | 'activated';
  fromSlot: SlotName;
  toSlot: SlotName;
  fromVersion: string;
  toVersion?: string;
  /** Installs resumed after a restart so far. */
  attempts?: number;
}

/** Restarts during one install after which it is given up. */
export const MAX_INSTALL_ATTEMPTS = 3;
/** Bytes of bundle between two durable checkpoints of an install. */
const CHECKPOINT_BYTES = 4 * 1024 * 1024;

export interface UpdateContext {
  readonly signal: AbortSignal;
  progress(step: UpdateStep, percent?: number): void;
  setCancellable(cancellable: boolean): void;
  save(data: UpdateData): void;
}

export interface UpdaterOptions {
  root: string;
  /** The slot and version this process runs. */
  runningSlot: SlotName;
  runningVersion: string;
  deviceClass: string;
  /** PEM file of the trust anchors. */
  trustPath: string;
  maxBundleBytes: number;
  download: { caPath?: string | undefined; idleTimeoutMs: number; retries: number; minBytesPerSecond?: number; stallWindowMs?: number };
  /** Writes a backup of the configuration and the state store (before activation). */
  backup(updateId: string): void;
  logger: Logger;
  /** Fault injection for the crash tests (lib/fault.ts): called at each named point. */
  fault?: (point: FaultPoint) => void;
}

/** Where the crash tests cut power (kill -9): before and after each persisted state change. */
export const FAULT_POINTS = [
  'install:began',
  'install:half',
  // A delta install only: half of the base files copied from the running slot, the others in flight.
  'install:base-half',
  'install:verified',
  'activate:backed-up',
  'activate:phase-saved',
  'activate:switched',
  'gate:before-commit',
  'gate:committed',
  'gate:failed',
] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

export interface UpdateResult {
  fromVersion: string;
  toVersion: string;
  slot: SlotName;
  rolledBack: boolean;
}

export class Updater {
  constructor(private readonly opts: UpdaterOptions) {}

  slotDir(slot: SlotName): string {
    return join(this.opts.root, 'slots', slot);
  }

  /** Download, verify and install into the inactive slot; on failure the slot is given back. */
  async install(id: string, params: UpdateParams, ctx: UpdateContext, attempts = 0): Promise<{ data: UpdateData; manifest: Manifest }> {
    const { root, runningSlot, runningVersion } = this.opts;
    const slots = loadSlots(root);
    if (slots.active !== runningSlot) {
      throw new OtaError('download-failed', `slots.json says slot ${slots.active} is active, but this process runs from ${runningSlot}; restart the agent first`);
    }
    const toSlot = otherSlot(runningSlot);
    const taken = attempts === 0 ? this.takeOverExpired(id, params, slots, toSlot) : undefined;
    if (taken) {
      const data: UpdateData = { phase: 'installing', fromSlot: runningSlot, toSlot, fromVersion: runningVersion, toVersion: taken.manifest.version, attempts };
      ctx.save(data);
      this.prepareResume(toSlot, taken.from.checkpoint);
      this.opts.logger.info({ offset: taken.from.checkpoint.offset, files: taken.from.checkpoint.seen.length }, 'resuming the install an expired URL cut short');
      ctx.progress('install');
      await this.fill(id, params, ctx, toSlot, taken.from, undefined, () => true);
      return { data, manifest: taken.manifest };
    }
    const data: UpdateData = { phase: 'installing', fromSlot: runningSlot, toSlot, fromVersion: runningVersion, attempts };
    ctx.save(data);
    const dir = this.slotDir(toSlot);
    let began = false;
    const policy = (m: Manifest): void => {
      checkPolicy(
        m,
        { deviceClass: this.opts.deviceClass, runningVersion, installedVersion: runningVersion, highestSecurityVersion: slots.highestSecurityVersion },
        { allowDowngrade: params.allowDowngrade ?? false },
      );
      this.checkDeltaBase(m);
    };
    await this.precheck(params, ctx, policy);
    const checkManifest = (m: Manifest): void => {
      policy(m);
      ctx.progress('verify');
      // Persist the slot as forfeit before removing what it held (invariant 1).
      saveSlots(root, beginInstall(loadSlots(root), toSlot, { version: m.version, securityVersion: m.securityVersion, updateId: id }));
      began = true;
      data.toVersion = m.version;
      ctx.save(data);
      this.opts.fault?.('install:began');
      rmSync(dir, { recursive: true, force: true });
      rmSync(this.resumePath(toSlot), { force: true });
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      ctx.progress('install');
    };
    const manifest = await this.fill(id, params, ctx, toSlot, undefined, checkManifest, () => began);
    return { data, manifest };
  }

  /**
   * The head alone, fetched with a bounded Range request: a signed manifest the policy (or the
   * delta's base) refuses fails the install before its payload is downloaded. Anything short of
   * a verified, parsed manifest is left to the streaming reader (see ota/head-probe.ts).
   */
  private async precheck(params: UpdateParams, ctx: UpdateContext, policy: (m: Manifest) => void): Promise<void> {
    const ca = this.opts.download.caPath ? readFileSync(this.opts.download.caPath) : undefined;
    const head = await probeHead({ url: params.url, ca, idleTimeoutMs: this.opts.download.idleTimeoutMs, signal: ctx.signal });
    if (!head) return;
    let m: Manifest;
    try {
      const trustPem = readFileSync(this.opts.trustPath, 'utf8');
      verifySignedManifest({ manifest: head.manifestBytes, signature: head.signature, signerPem: canonicalPem(head.signerPem), trustPem, now: new Date() });
      m = parseManifest(head.manifestBytes);
    } catch {
      return; // the reader reports it, with its code, on the real download
    }
    policy(m);
  }

  /** Throws 'delta-base-mismatch' unless a delta's base is exactly the running release. */
  private checkDeltaBase(m: Manifest): void {
    const d = m.delta;
    if (!d) return;
    const { runningSlot, runningVersion } = this.opts;
    const path = join(this.slotDir(runningSlot), SLOT_MANIFEST_DIR, 'manifest.json');
    let sha: string | undefined;
    try {
      sha = createHash('sha256').update(readFileSync(path)).digest('hex');
    } catch {
      sha = undefined;
    }
    const why =
      d.baseVersion !== runningVersion
        ? `it is a delta from ${d.baseVersion}, and this gateway runs ${runningVersion}`
        : sha === undefined
          ? `it is a delta from ${d.baseVersion}, and the running release keeps no signed manifest to compare (${path})`
          : sha !== d.baseManifestSha256
            ? `it is a delta from a ${d.baseVersion} whose manifest has sha256 ${d.baseManifestSha256}; the running ${runningVersion} has ${sha} (another build of that version)`
            : undefined;
    if (why !== undefined) throw new OtaError('delta-base-mismatch', `${m.version} not installed: ${why}; send the full bundle`);
  }

  /**
   * After a restart in the middle of an install: a verified slot is ready to activate; a slot
   * with a checkpoint is filled on from it (the download resumes with Range); anything else is
   * given back and installed from the start. `attempts` bounds how often (a release whose
   * install itself kills the agent must not loop forever).
   */
  async resumeInstall(id: string, params: UpdateParams, prev: UpdateData, ctx: UpdateContext): Promise<{ data: UpdateData }> {
    const attempts = (prev.attempts ?? 0) + 1;
    if (attempts > MAX_INSTALL_ATTEMPTS) {
      this.giveBack(prev.toSlot);
      throw new OtaError('install-interrupted', `the agent stopped ${attempts - 1} times during this install; the slot was emptied: send the update again`);
    }
    const slot = loadSlots(this.opts.root).slots[prev.toSlot];
    const mine = slot.state === 'installing' && slot.updateId === id;
    if (mine && slot.verified === true) return { data: { ...prev, phase: 'installing', attempts } };
    const cp = mine ? this.readCheckpoint(prev.toSlot, id) : undefined;
    if (!cp) {
      this.giveBack(prev.toSlot);
      this.opts.logger.info({ attempts }, 'installing again from the start after a restart');
      return this.install(id, params, ctx, attempts);
    }
    const data: UpdateData = { ...prev, phase: 'installing', attempts };
    ctx.save(data);
    this.prepareResume(prev.toSlot, cp.checkpoint);
    this.opts.logger.info({ offset: cp.checkpoint.offset, files: cp.checkpoint.seen.length }, 'resuming the install after a restart');
    ctx.progress('install');
    await this.fill(id, params, ctx, prev.toSlot, cp, undefined, () => true);
    return { data };
  }

  /**
   * The slot and checkpoint an expired URL left (see the invariants), taken over by `id` when it
   * is the same bundle and still passes this command's policy; undefined otherwise.
   */
  private takeOverExpired(id: string, params: UpdateParams, slots: SlotsFile, toSlot: SlotName): { from: { checkpoint: Checkpoint; validator: string | undefined }; manifest: Manifest } | undefined {
    const cur = slots.slots[toSlot];
    if (cur.state !== 'installing' || cur.verified === true || cur.updateId === undefined) return undefined;
    const raw = this.readResumeFile(toSlot);
    if (raw?.expired !== true) return undefined;
    const same = params.sha256 !== undefined && typeof raw.sha256 === 'string' ? raw.sha256 === params.sha256.toLowerCase() : raw.source === sourceOf(params.url);
    if (!same) return undefined;
    const from = this.readCheckpoint(toSlot, cur.updateId);
    if (!from) return undefined;
    let manifest: Manifest;
    try {
      manifest = parseManifest(from.checkpoint.manifestBytes);
      checkPolicy(
        manifest,
        { deviceClass: this.opts.deviceClass, runningVersion: this.opts.runningVersion, installedVersion: this.opts.runningVersion, highestSecurityVersion: slots.highestSecurityVersion },
        { allowDowngrade: params.allowDowngrade ?? false },
      );
    } catch {
      return undefined; // installed from the start, where the policy's failure is reported
    }
    // Ours from now on: the slot's owner, then the checkpoint's (both atomic; a cut between them resumes nothing and starts over).
    saveSlots(this.opts.root, beginInstall(slots, toSlot, { version: cur.version ?? manifest.version, securityVersion: cur.securityVersion ?? 0, updateId: id }));
    this.writeCheckpoint(toSlot, id, from.checkpoint, from.validator, params);
    return { from, manifest };
  }

  /** The download streamed into the bundle reader and the slot; marks the slot verified. */
  private async fill(
    id: string,
    params: UpdateParams,
    ctx: UpdateContext,
    toSlot: SlotName,
    from: { checkpoint: Checkpoint; validator: string | undefined } | undefined,
    checkManifest: ((m: Manifest) => void) | undefined,
    began: () => boolean,
  ): Promise<Manifest> {
    const { root } = this.opts;
    const dir = this.slotDir(toSlot);
    const trustPem = readFileSync(this.opts.trustPath, 'utf8');
    const ca = this.opts.download.caPath ? readFileSync(this.opts.download.caPath) : undefined;
    // Ends the download and the reader together, whichever fails first (or a cancel).
    const stop = new AbortController();
    const onCancel = (): void => stop.abort(ctx.signal.reason);
    if (ctx.signal.aborted) onCancel();
    else ctx.signal.addEventListener('abort', onCancel, { once: true });
    let live = true;
    const dl = download({
      url: params.url,
      ca,
      maxBytes: this.opts.maxBundleBytes,
      size: params.size,
      sha256: params.sha256,
      startAt: from?.checkpoint.offset ?? 0,
      ifRange: from?.validator,
      idleTimeoutMs: this.opts.download.idleTimeoutMs,
      retries: this.opts.download.retries,
      ...(this.opts.download.minBytesPerSecond !== undefined ? { minBytesPerSecond: this.opts.download.minBytesPerSecond } : {}),
      ...(this.opts.download.stallWindowMs !== undefined ? { stallWindowMs: this.opts.download.stallWindowMs } : {}),
      signal: stop.signal,
      onProgress: (received, total) => {
        if (!live) return;
        const percent = total ? Math.floor((received / total) * 100) : undefined;
        ctx.progress(began() ? 'install' : 'download', percent);
        if (began() && total && received * 2 >= total) this.opts.fault?.('install:half');
      },
    });
    if (!from) ctx.progress('download', 0);
    let lastSaved = from?.checkpoint.offset ?? 0;
    const onCheckpoint = (offset: number, take: () => Checkpoint): void => {
      // Throttled: a checkpoint costs a durable write of every path done so far.
      if (offset - lastSaved < CHECKPOINT_BYTES) return;
      lastSaved = offset;
      this.writeCheckpoint(toSlot, id, take(), dl.validator(), params);
    };
    let dlError: unknown;
    dl.done.catch((e: unknown) => (dlError = e));
    const reading = readBundle(dl.stream, {
      trustPem,
      extractTo: dir,
      maxBundleBytes: this.opts.maxBundleBytes,
      signal: stop.signal,
      onCheckpoint,
      baseDir: this.slotDir(this.opts.runningSlot),
      onBaseCopied: (copied, total) => {
        if (copied * 2 >= total) this.opts.fault?.('install:base-half');
      },
      ...(checkManifest ? { checkManifest } : {}),
      ...(from ? { resume: from.checkpoint } : {}),
    });
    try {
      const [res] = await Promise.all([reading, dl.done]);
      // The signed manifest stays with the slot, so `edge-agent diag` can check later that the
      // running release's files are still the ones that were signed.
      keepSignedManifest(dir, res);
      fsyncDir(dir);
      saveSlots(root, markVerified(loadSlots(root), toSlot));
      rmSync(this.resumePath(toSlot), { force: true });
      this.opts.fault?.('install:verified');
      this.opts.logger.info({ slot: toSlot, version: res.manifest.version, files: res.files, bytes: res.bytesOut, baseFiles: res.baseFiles, baseBytes: res.baseBytes }, 'bundle installed and verified');
      return res.manifest;
    } catch (err) {
      live = false;
      stop.abort(err);
      dl.stream.destroy();
      // When the download fails first, the reader may still be creating files in the slot:
      // emptying it before the reader has stopped would leave them behind in an `empty` slot.
      // And the download must be over (no request, no progress) before the failure is reported.
      await Promise.allSettled([reading, dl.done]);
      if (errorCode(dlError) === 'url-expired' && began() && this.markExpired(toSlot, id)) {
        this.opts.logger.warn({ slot: toSlot }, 'the download URL expired: the slot and its checkpoint are kept for the same update with a fresh URL');
        throw dlError;
      }
      if (began()) this.giveBack(toSlot);
      const sys = (err as NodeJS.ErrnoException).code;
      if (sys === 'ENOSPC' || sys === 'EDQUOT') {
        throw new OtaError('disk-full', `no space left for slot ${toSlot} under ${root}; the slot was emptied again`, { cause: err });
      }
      throw err;
    } finally {
      live = false;
      ctx.signal.removeEventListener('abort', onCancel);
    }
  }

  private resumePath(slot: SlotName): string {
    return join(this.opts.root, `resume-${slot}.json`);
  }

  private readResumeFile(slot: SlotName): Record<string, unknown> | undefined {
    try {
      return readJsonFile(this.resumePath(slot)) as Record<string, unknown> | undefined;
    } catch {
      return undefined; // damaged: nothing to resume from
    }
  }

  /** Marks the slot's checkpoint as left by an expired URL; false when there is none to keep. */
  private markExpired(slot: SlotName, id: string): boolean {
    const raw = this.readResumeFile(slot);
    if (!raw || raw.updateId !== id) return false;
    writeJsonAtomic(this.resumePath(slot), { ...raw, expired: true });
    return true;
  }

  private writeCheckpoint(slot: SlotName, id: string, cp: Checkpoint, validator: string | undefined, params: UpdateParams): void {
    writeJsonAtomic(this.resumePath(slot), {
      updateId: id,
      source: sourceOf(params.url),
      sha256: params.sha256?.toLowerCase() ?? null,
      validator: validator ?? null,
      offset: cp.offset,
      manifest: cp.manifestBytes.toString('base64'),
      signature: cp.signature.toString('base64'),
      signer: cp.signerPem.toString('base64'),
      seen: cp.seen,
    });
  }

  private readCheckpoint(slot: SlotName, id: string): { checkpoint: Checkpoint; validator: string | undefined } | undefined {
    try {
      const r = readJsonFile(this.resumePath(slot)) as Record<string, unknown> | undefined;
      if (!r || r.updateId !== id || typeof r.offset !== 'number' || !Array.isArray(r.seen)) return undefined;
      const b = (k: string): Buffer => Buffer.from(String(r[k]), 'base64');
      return {
        checkpoint: { offset: r.offset, manifestBytes: b('manifest'), signature: b('signature'), signerPem: b('signer'), seen: r.seen.map(String) },
        validator: typeof r.validator === 'string' ? r.validator : undefined,
      };
    } catch {
      return undefined; // a damaged checkpoint: install from the start
    }
  }

  /** Removes what was written after the checkpoint (possibly half a file); what it lists stays. */
  private prepareResume(slot: SlotName, cp: Checkpoint): void {
    const keep = new Set(cp.seen);
    const dir = this.slotDir(slot);
    const walk = (rel: string): void => {
      for (const e of readdirSync(rel === '' ? dir : join(dir, rel), { withFileTypes: true })) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) walk(r);
        else if (!keep.has(r)) rmSync(join(dir, r), { force: true });
      }
    };
    walk('');
  }

  /** Empties a slot whose install failed; safe to call after a restart. */
  giveBack(slot: SlotName): void {
    const s = loadSlots(this.opts.root);
    if (s.active === slot) return;
    const state = s.slots[slot].state;
    if (state !== 'installing' && state !== 'empty') return;
    // Files first: an `installing` slot's files may go at any time, and on a full disk
    // slots.json cannot be rewritten until they are gone.
    rmSync(this.slotDir(slot), { recursive: true, force: true });
    if (state === 'installing') saveSlots(this.opts.root, abortInstall(s, slot));
  }

  /** Backup, then the point of no return: the new slot becomes the active trial. */
  activate(id: string, data: UpdateData, ctx: UpdateContext): void {
    ctx.setCancellable(false);
    ctx.progress('activate');
    this.opts.backup(id);
    this.opts.fault?.('activate:backed-up');
    ctx.save({ ...data, phase: 'activated' });
    this.opts.fault?.('activate:phase-saved');
    saveSlots(this.opts.root, activate(loadSlots(this.opts.root), data.toSlot));
    this.opts.fault?.('activate:switched');
    this.opts.logger.info({ slot: data.toSlot, version: data.toVersion }, 'activated; restarting into the new slot');
  }
}

export type AfterRestart =
  | { kind: 'gate' } // this process is the new version on trial: wait for the health gate
  | { kind: 'done'; result: UpdateResult } // the new version is committed
  | { kind: 'rolled-back'; reason: string; result: UpdateResult } // back on the old version
  | { kind: 'install-interrupted' }; // cut before activation: give the slot back and fail

/** What a command in `phase` means, given slots.json and the slot this process runs from. Pure. */
export function resolveAfterRestart(data: UpdateData, s: SlotsFile, runningSlot: SlotName): AfterRestart {
  const base = { fromVersion: data.fromVersion, toVersion: data.toVersion ?? '?' };
  const to = s.slots[data.toSlot];
  // `activated` was saved but the pointer never moved: nothing was activated.
  if (data.phase === 'installing' || (to.state === 'installing' && s.active === data.fromSlot)) return { kind: 'install-interrupted' };
  if (s.active === data.toSlot && runningSlot === data.toSlot && to.state === 'trial') return { kind: 'gate' };
  if (s.active === data.toSlot && to.state === 'committed') return { kind: 'done', result: { ...base, slot: data.toSlot, rolledBack: false } };
  return { kind: 'rolled-back', reason: explain(to.reason, data), result: { ...base, slot: data.fromSlot, rolledBack: true } };
}

/** The slot's recorded reason, in words a person on the WMS side can act on. */
function explain(reason: string | undefined, data: UpdateData): string {
  const v = data.toVersion ?? 'the new release';
  if (reason === 'trial-starts-exceeded') {
    return `${v} did not come up: it crashed or hung on each of its trial starts, so the boot guard went back to slot ${data.fromSlot} (trial-starts-exceeded)`;
  }
  if (reason?.startsWith('active-not-runnable')) return `${v} was left in an inconsistent state; the boot guard went back to slot ${data.fromSlot} (${reason})`;
  return reason ? `${v}: ${reason}` : `${v} was not committed; slot ${data.fromSlot} runs again`;
}

/** A bundle URL without its query and fragment: what stays the same across presigned URLs of one object. */
function sourceOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return url;
  }
}

function keepSignedManifest(slotDir: string, res: { manifestBytes: Buffer; signature: Buffer; signerPem: Buffer }): void {
  const dir = join(slotDir, SLOT_MANIFEST_DIR);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, 'manifest.json'), res.manifestBytes, 0o644);
  writeFileAtomic(join(dir, 'manifest.sig'), res.signature, 0o644);
  writeFileAtomic(join(dir, 'signer.pem'), res.signerPem, 0o644);
}
