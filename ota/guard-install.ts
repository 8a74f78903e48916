/**
 * Installs the boot guard outside the slots: ROOT/guard/ holds the compiled boot-guard.js and the
 * few modules it imports, at their dist/-relative paths, plus a package.json that marks them as
 * ES modules (outside the slots there is no other package.json to say so).
 *
 * The set is replaced as a whole: the files go to a new directory ROOT/guard.d/<hash of the
 * set>/, written with lib/atomic.ts, and then the symlink ROOT/guard is swapped to it with one
 * rename. After a power cut ROOT/guard is either the old complete guard or the new one, never
 * a new boot-guard.js next to an old slots.js. A running guard has loaded its modules already,
 * so the swap does not disturb it; it runs the new code from its next start.
 *
 * The set also holds ROOT/guard/bin/slot-exec (ota/slot-exec.ts), what edge-plc-bridge.service
 * starts: the bridge from the active slot, on that slot's runtime, as the unit's main process.
 *
 * With `runtime` (a self-contained release's `runtime/bin/node`), the set includes the guard's own
 * Node.js at ROOT/guard/runtime/bin/node: what the units start the guard with (and what resolves
 * the bridge's slot), outside the slots, so a release with a broken runtime cannot take the guard
 * down. It changes only with the set (the Debian package, `edge-agent install`), never with an
 * update bundle.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../lib/atomic.js';
import { SLOT_EXEC, SLOT_EXEC_SCRIPT } from './slot-exec.js';

/**
 * What the guard needs, relative to dist/: boot-guard.js imports slots.js, which imports
 * lib/atomic.js and lib/errors.js; those two import only node: builtins. slot-entry.js (what
 * edge-plc-bridge.service starts: the active slot's CLI in its own process) imports slots.js
 * too. A unit test (test/unit/guard-install.test.ts) fails when the closure leaves this list.
 */
export const GUARD_FILES = ['ota/boot-guard.js', 'ota/slot-entry.js', 'ota/slots.js', 'lib/atomic.js', 'lib/errors.js'] as const;

export const GUARD_DIR = 'guard';
const VERSIONS_DIR = 'guard.d';
const PACKAGE_JSON = '{"type":"module","private":true}\n';

/** The guard's entry point under an install root. */
export function guardEntry(root: string): string {
  return join(root, GUARD_DIR, 'ota', 'boot-guard.js');
}

/** The guard's own Node.js under an install root, when it was installed with one. */
export function guardRuntime(root: string): string {
  return join(root, GUARD_DIR, GUARD_RUNTIME);
}
export const GUARD_RUNTIME = 'runtime/bin/node';

/** The script edge-plc-bridge.service starts (ota/slot-exec.ts) under an install root. */
export function slotExec(root: string): string {
  return join(root, GUARD_DIR, SLOT_EXEC);
}

/** The slot entry point (ota/slot-entry.ts) under an install root. */
export function slotEntry(root: string): string {
  return join(root, GUARD_DIR, 'ota', 'slot-entry.js');
}

/**
 * Copies GUARD_FILES from `distDir` (the compiled tree: dist/) into ROOT/guard, atomically as a
 * set. Returns the directory ROOT/guard now points to. Idempotent for the same files.
 */
export function installGuard(distDir: string, root: string, opts: { runtime?: string } = {}): string {
  const contents: { path: string; data: Buffer; mode: number }[] = GUARD_FILES.map((f) => ({ path: f, data: readFileSync(join(distDir, f)), mode: 0o644 }));
  contents.push({ path: SLOT_EXEC, data: Buffer.from(SLOT_EXEC_SCRIPT), mode: 0o755 });
  if (opts.runtime !== undefined) contents.push({ path: GUARD_RUNTIME, data: readFileSync(opts.runtime), mode: 0o755 });
  const hash = createHash('sha256');
  for (const c of contents) hash.update(c.path).update('\0').update(c.data).update('\0');
  const name = hash.digest('hex').slice(0, 16);
  const target = join(root, VERSIONS_DIR, name);
  for (const c of contents) writeFileAtomic(join(target, c.path), c.data, c.mode);
  writeFileAtomic(join(target, 'package.json'), PACKAGE_JSON, 0o644);
  fsyncDir(join(root, VERSIONS_DIR));

  const link = join(root, GUARD_DIR);
  // A plain directory (not ours: a hand copy) cannot be renamed over; it goes first.
  if (lstatOrUndefined(link)?.isDirectory()) rmSync(link, { recursive: true, force: true });
  const tmp = join(root, `.${GUARD_DIR}.${process.pid}.tmp`);
  rmSync(tmp, { force: true });
  symlinkSync(join(VERSIONS_DIR, name), tmp);
  renameSync(tmp, link);
  fsyncDir(root);

  for (const old of readdirSync(join(root, VERSIONS_DIR))) {
    if (old !== name) rmSync(join(root, VERSIONS_DIR, old), { recursive: true, force: true });
  }
  return target;
}

function lstatOrUndefined(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
