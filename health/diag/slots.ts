/**
 * Group `slots`: ROOT/slots.json reads and its invariants hold (ota/slots.ts), the agent runs
 * from the active slot, and the active slot's files still match its signed manifest: same
 * size and SHA-256 for each file, same target for each symlink, nothing unlisted added.
 *
 * Where the manifest is: the updater keeps the bundle's head members in the slot, in
 * `{slot}/.edge-agent-bundle/` (manifest.json, manifest.sig, signer.pem), so they go when the
 * slot is emptied. The signature is checked against ota.trustAnchors as of the slot's install
 * time, or now (a signer certificate that expired since does not make an installed release bad).
 * A slot written by `edge-agent install` has no bundle and so no manifest: reported, not failed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { verifySignedManifest } from '../../certs/trust.js';
import { checkInvariants, loadSlots, SlotsError, type SlotName, type SlotsFile } from '../../ota/slots.js';
import { parseManifest, SLOT_MANIFEST_DIR, type Manifest } from '../../ota/manifest.js';
import { errText, failure, ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';

export { SLOT_MANIFEST_DIR };
const LISTED_MAX = 10;

export function slotDir(root: string, slot: SlotName): string {
  return join(root, 'slots', slot);
}

/** Files up to this size are read whole (one read is much cheaper than a stream per file). */
const WHOLE_FILE_BYTES = 1024 * 1024;
/** Entries checked at once: a release is thousands of small files, and the disk can overlap them. */
const PARALLEL = 8;

async function sha256(path: string, size: number, signal: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  if (size <= WHOLE_FILE_BYTES) return h.update(await readFile(path, { signal })).digest('hex');
  for await (const chunk of createReadStream(path, { signal }) as AsyncIterable<Buffer>) h.update(chunk);
  return h.digest('hex');
}

export interface SlotDiff {
  changed: string[];
  missing: string[];
  extra: string[];
  checked: number;
  /** false when `deadline` came first: `checked` entries of the manifest were looked at. */
  complete: boolean;
}

/**
 * What differs between the slot directory and the manifest: changed, missing and unlisted
 * paths. Stops at `deadline` (ms since the epoch) with what it has, so a slow disk yields a
 * partial answer rather than none.
 */
export async function compareSlot(dir: string, m: Manifest, signal: AbortSignal, deadline = Infinity): Promise<SlotDiff> {
  const changed: string[] = [];
  const missing: string[] = [];
  let checked = 0;
  const one = async (e: Manifest['files'][number]): Promise<void> => {
    const path = join(dir, e.path);
    try {
      const st = await lstat(path);
      checked++;
      if (e.type === 'file') {
        if (!st.isFile() || st.size !== e.size || (await sha256(path, st.size, signal)) !== e.sha256) changed.push(e.path);
      } else if (e.type === 'symlink') {
        if (!st.isSymbolicLink() || (await readlink(path)) !== e.target) changed.push(e.path);
      } else if (!st.isDirectory()) changed.push(e.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(e.path);
    }
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < m.files.length && Date.now() < deadline) {
      signal.throwIfAborted();
      await one(m.files[next++]!);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  changed.sort();
  missing.sort();
  if (next < m.files.length) return { changed, missing, extra: [], checked, complete: false };
  const listed = new Set(m.files.map((f) => f.path));
  const extra: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(rel === '' ? dir : join(dir, rel), { withFileTypes: true })) {
      signal.throwIfAborted();
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      if (r === SLOT_MANIFEST_DIR) continue;
      if (d.isDirectory()) await walk(r);
      else if (!listed.has(r)) extra.push(r);
    }
  };
  await walk('');
  return { changed, missing, extra, checked, complete: true };
}

const list = (xs: string[]): string => `${xs.slice(0, LISTED_MAX).join(', ')}${xs.length > LISTED_MAX ? `, and ${xs.length - LISTED_MAX} more` : ''}`;

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The active slot's files against its manifest (and the manifest's signature, when kept). */
async function activeFiles(s: SlotsFile, root: string, trustPath: string, signal: AbortSignal, deadline: number): Promise<CheckResult[]> {
  const slot = s.active;
  const dir = slotDir(root, slot);
  const head = join(dir, SLOT_MANIFEST_DIR);
  const bytes = await readOptional(join(head, 'manifest.json'));
  if (!bytes) return [skipped('files', `slot ${slot} keeps no manifest (installed by \`edge-agent install\`, not from a bundle): its files cannot be checked`)];
  let m: Manifest;
  try {
    m = parseManifest(bytes);
  } catch (err) {
    return [failure('manifest', `slot ${slot}'s stored manifest is unreadable: ${errText(err)}`, 'reinstall the release through an update bundle', { path: join(head, 'manifest.json') })];
  }
  const results: CheckResult[] = [];
  const [sig, signer] = await Promise.all([readOptional(join(head, 'manifest.sig')), readOptional(join(head, 'signer.pem'))]);
  if (sig && signer) {
    const installedAt = s.slots[slot].installedAt;
    try {
      const trustPem = await readFile(trustPath, 'utf8');
      const verify = (now: Date): ReturnType<typeof verifySignedManifest> => verifySignedManifest({ manifest: bytes, signature: sig, signerPem: signer.toString('utf8'), trustPem, now });
      // Valid when it was installed, or (a slot whose install time predates its signer's, e.g. re-signed) now.
      let v: ReturnType<typeof verifySignedManifest>;
      try {
        v = verify(installedAt ? new Date(installedAt) : new Date());
      } catch (err) {
        if (!installedAt) throw err;
        try {
          v = verify(new Date());
        } catch {
          throw err;
        }
      }
      results.push(ok('manifest', `slot ${slot}'s manifest (${m.version}) is signed by ${v.chain[0]?.subject ?? 'a trusted signer'}`));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ENOENT') results.push(warning('manifest', `cannot check the manifest's signature: ${trustPath} (ota.trustAnchors) does not exist`, 'install the trust anchors at ota.trustAnchors; updates need them too'));
      else results.push(failure('manifest', `slot ${slot}'s manifest does not verify: ${errText(err)}`, 'the slot was tampered with or written outside an update: install a signed release', { code: code ?? null }));
    }
  } else {
    results.push(warning('manifest', `slot ${slot}'s manifest is kept without its signature`, 'install the release through a signed update bundle'));
  }
  const diff = await compareSlot(dir, m, signal, deadline);
  const details = { slot, version: m.version, entries: m.files.length, checked: diff.checked, changed: diff.changed.slice(0, 50), missing: diff.missing.slice(0, 50), extra: diff.extra.slice(0, 50) };
  if (diff.changed.length > 0 || diff.missing.length > 0) {
    const parts = [diff.changed.length ? `changed: ${list(diff.changed)}` : '', diff.missing.length ? `missing: ${list(diff.missing)}` : ''].filter(Boolean);
    results.push(failure('files', `slot ${slot}'s files do not match its signed manifest (${parts.join('; ')})`, 'the release was modified on the device: roll back (edge-agent rollback) or install the release again through an update; find out who changed it', details));
  } else if (!diff.complete) {
    results.push(
      warning('files', `slot ${slot}: ${diff.checked} of ${m.files.length} entries checked in the time allowed, none differ`, 'raise diag.checkTimeoutMs so the whole slot is checked (a slow disk or CPU)', details),
    );
  } else if (diff.extra.length > 0) {
    results.push(warning('files', `slot ${slot} holds files its manifest does not list: ${list(diff.extra)}`, 'remove them; nothing should write into a release slot', details));
  } else {
    results.push(ok('files', `slot ${slot}: all ${diff.checked} entries match the manifest of ${m.version}`, details));
  }
  return results;
}

export const slotsChecks: GroupCheck = async (ctx, signal) => {
  // A margin below the suite's bound, so a slow disk gives a partial answer instead of a timeout.
  const deadline = Date.now() + ctx.config.diag.checkTimeoutMs - 300;
  const root = ctx.config.ota.root;
  let s: SlotsFile;
  try {
    s = loadSlots(root);
  } catch (err) {
    if (err instanceof SlotsError && err.code === 'not-installed') return [skipped('state', `not installed under ${root} (no slots.json): no A/B slots to check`)];
    return [failure('state', errText(err), 'the boot guard cannot choose a slot from this file: restore ROOT/slots.json from a backup, or reinstall', { root })];
  }
  const results: CheckResult[] = [];
  const bad = checkInvariants(s);
  const summary = `active ${s.active}; A ${s.slots.A.state}${s.slots.A.version ? ` ${s.slots.A.version}` : ''}, B ${s.slots.B.state}${s.slots.B.version ? ` ${s.slots.B.version}` : ''}`;
  if (bad.length > 0) results.push(failure('state', `slots.json is inconsistent (${bad.join('; ')}): ${summary}`, 'the boot guard repairs this at the next start; if it stays, restore slots.json from a backup'));
  else results.push(ok('state', summary, { active: s.active, A: s.slots.A.state, B: s.slots.B.state }));
  const running = typeof ctx.live?.slot === 'string' ? ctx.live.slot : undefined;
  if (running !== undefined && running !== s.active) {
    results.push(warning('running', `the agent runs from slot ${running} but slot ${s.active} is active`, 'a restart is pending or was refused: restart the agent (systemctl restart edge-agent)'));
  }
  try {
    results.push(...(await activeFiles(s, root, ctx.config.ota.trustAnchors, signal, deadline)));
  } catch (err) {
    if (signal.aborted) throw err;
    results.push(failure('files', `cannot check slot ${s.active}'s files: ${errText(err)}`, 'check the slot directory and its permissions'));
  }
  return results;
};
