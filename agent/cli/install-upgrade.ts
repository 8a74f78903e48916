/**
 * `edge-agent install --root ROOT --from DIR --upgrade`: what the Debian package's postinst runs
 * when a newer package is installed over an installed gateway. The release is copied into the
 * INACTIVE slot and activated as a trial, through the same slot transitions as an update bundle
 * (ota/slots.ts): the boot guard starts it, its health gate commits it or the guard rolls back.
 * The guard (and its runtime) is replaced too: it changes only with the package.
 *
 * INVARIANTS
 * - The inactive slot is marked `installing` (slots.json, atomic) before a byte of it is removed;
 *   `verified` only after every file is copied and flushed; activation is one atomic write.
 * - Nothing is touched while a trial runs (the active slot is not committed): the command says
 *   so and fails, and installing the package again once the trial has ended goes on.
 * - The same version as the active one is not installed again (a reinstall of the package).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { installGuard } from '../../ota/guard-install.js';
import { activate, beginInstall, loadSlots, markVerified, otherSlot, saveSlots } from '../../ota/slots.js';

/** Returns the lines to print; throws an Error meant for a person. */
export function upgradeInstalled(root: string, from: string, version: string, entries: readonly string[]): string[] {
  const s = loadSlots(root);
  const active = s.slots[s.active];
  if (active.state !== 'committed') {
    throw new Error(
      `a trial is running: slot ${s.active} (${active.version ?? '?'}) has not committed yet, so ${version} is not installed now; ` +
        `wait for the trial to end (edge-agent slots), then install the package again (or run: dpkg --configure -a)`,
    );
  }
  if (active.version === version) return [`edge-agent ${version} is already the active release (slot ${s.active}); nothing to do`];
  const slot = otherSlot(s.active);
  const dir = join(root, 'slots', slot);
  saveSlots(root, beginInstall(s, slot, { version }));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const e of entries) cpSync(join(from, e), join(dir, e), { recursive: true, verbatimSymlinks: true, dereference: false, errorOnExist: true, force: false });
  try {
    execFileSync('sync', [], { stdio: 'ignore' });
  } catch {
    /* best effort, as for the first install */
  }
  saveSlots(root, markVerified(loadSlots(root), slot));
  const runtime = join(dir, 'runtime', 'bin', 'node');
  installGuard(join(dir, 'dist'), root, existsSync(runtime) ? { runtime } : {});
  saveSlots(root, activate(loadSlots(root), slot));
  return [
    `installed edge-agent ${version} into slot ${slot} and activated it as a trial (slot ${s.active}, ${active.version ?? '?'}, stays the fallback)`,
    'the boot guard starts it at the next start of edge-agent.service; its health gate commits it, or the guard goes back',
  ];
}
