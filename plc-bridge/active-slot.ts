/**
 * Which release the bridge may hand over to (`upgrade {cli}`, docs/plc-bridge.md, Handover).
 * The control socket is 0660: a member of the service group may call it, so what it is handed is
 * checked against the install, not trusted.
 *
 * - Installed in A/B slots (this process runs from ROOT/slots/X and ROOT/slots.json exists): only
 *   the entry point of the slot slots.json names active, and only while that slot is `committed`
 *   or `trial` and its securityVersion is not below the highest one committed (the floor
 *   `edge-agent rollback` keeps too). Whatever the caller says.
 * - Not installed (a development run): only this process's own release (a memory handover).
 *
 * slots.json is ota/slots.ts's file (format 1); the bridge imports nothing of ota/, so this
 * reads the few fields it needs itself, and treats anything else as a refusal.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';

const CLI_SUFFIX = join('dist', 'agent', 'cli', 'index.js');
/** A self-contained release's own Node.js (deploy/release.ts), relative to the release. */
export const RELEASE_RUNTIME = join('runtime', 'bin', 'node');

export type UpgradeCheck = { ok: true; slot?: string } | { ok: false; reason: string };

/** The release directory of an entry point (its real path without dist/agent/cli/index.js), else undefined. */
export function releaseOf(cli: string): string | undefined {
  if (!isAbsolute(cli)) return undefined;
  let real: string;
  try {
    real = realpathSync(cli);
  } catch {
    return undefined;
  }
  return real.endsWith(sep + CLI_SUFFIX) ? real.slice(0, -(CLI_SUFFIX.length + 1)) : undefined;
}

/**
 * The Node.js a bridge from entry point `cli` must run on: its release's own runtime (each slot
 * runs its own, so a runtime upgrade is health-gated and rolled back with its release), or, for a
 * release without one (a development install), `fallback`: the Node.js of the process asking.
 */
export function runtimeOf(cli: string, fallback: string = process.execPath): string {
  const release = releaseOf(cli);
  if (release === undefined) return fallback;
  const own = join(release, RELEASE_RUNTIME);
  return existsSync(own) ? own : fallback;
}

interface SlotsView {
  active?: unknown;
  slots?: Record<string, { state?: unknown; securityVersion?: unknown } | undefined>;
  highestSecurityVersion?: unknown;
}

export function checkUpgrade(cli: string, ownCli: string): UpgradeCheck {
  const own = releaseOf(ownCli);
  if (own === undefined) return { ok: false, reason: `this bridge does not run from a release entry point (${ownCli})` };
  const target = releaseOf(cli);
  if (target === undefined) return { ok: false, reason: `not an edge-agent release entry point: ${cli}` };
  const slotsDir = dirname(own);
  const root = dirname(slotsDir);
  const slotsPath = join(root, 'slots.json');
  if (basename(slotsDir) !== 'slots' || !existsSync(slotsPath)) {
    return target === own ? { ok: true } : { ok: false, reason: `not installed in A/B slots: only this bridge's own release may take over, not ${cli}` };
  }
  let s: SlotsView;
  try {
    s = JSON.parse(readFileSync(slotsPath, 'utf8')) as SlotsView;
  } catch (err) {
    return { ok: false, reason: `${slotsPath} cannot be read: ${err instanceof Error ? err.message : String(err)}` };
  }
  const active = s.active;
  if (active !== 'A' && active !== 'B') return { ok: false, reason: `${slotsPath} names no active slot` };
  const info = s.slots?.[active];
  if (info?.state !== 'committed' && info?.state !== 'trial') return { ok: false, reason: `the active slot ${active} is ${String(info?.state)}, not committed or on trial` };
  const sv = typeof info.securityVersion === 'number' ? info.securityVersion : 0;
  const floor = typeof s.highestSecurityVersion === 'number' ? s.highestSecurityVersion : 0;
  if (sv < floor) return { ok: false, reason: `the active slot ${active} has securityVersion ${sv}, below the floor ${floor}` };
  let activeRelease: string;
  try {
    activeRelease = realpathSync(join(slotsDir, active));
  } catch {
    return { ok: false, reason: `the active slot ${active} has no directory` };
  }
  if (target !== activeRelease) return { ok: false, reason: `${cli} is not the active slot's (${active}) entry point` };
  return { ok: true, slot: active };
}
