/**
 * `edge-agent slots`: what ROOT/slots.json says about the two slots. Reads the file only (the
 * daemon need not run); ROOT is `ota.root` of the configuration, or EDGE_AGENT_ROOT.
 *
 * The --json shape is stable: every slot has every key, null when the file does not say.
 */
import { loadSlots, SLOT_NAMES, SlotsError, type SlotInfo, type SlotName, type SlotsFile } from '../../ota/slots.js';
import { cliContext, fail } from './context.js';

type Values = Record<string, string | boolean | undefined>;

/** Exit status when nothing is installed under ROOT (as `status` uses 3 for "not running"). */
export const EXIT_NOT_INSTALLED = 3;

export interface SlotView {
  state: SlotInfo['state'];
  active: boolean;
  version: string | null;
  securityVersion: number | null;
  installedAt: string | null;
  committedAt: string | null;
  trialSince: string | null;
  trialStarts: number | null;
  verified: boolean | null;
  updateId: string | null;
  reason: string | null;
}

export interface SlotsReport {
  root: string;
  active: SlotName;
  highestSecurityVersion: number;
  slots: Record<SlotName, SlotView>;
}

export function slotsReport(root: string, s: SlotsFile): SlotsReport {
  const view = (n: SlotName): SlotView => {
    const i = s.slots[n];
    return {
      state: i.state,
      active: s.active === n,
      version: i.version ?? null,
      securityVersion: i.securityVersion ?? null,
      installedAt: i.installedAt ?? null,
      committedAt: i.committedAt ?? null,
      trialSince: i.trialSince ?? null,
      trialStarts: i.trialStarts ?? null,
      verified: i.verified ?? null,
      updateId: i.updateId ?? null,
      reason: i.reason ?? null,
    };
  };
  return { root, active: s.active, highestSecurityVersion: s.highestSecurityVersion, slots: { A: view('A'), B: view('B') } };
}

/** "A  1.0.0  committed, active  installed ..., committed ..." per slot. */
export function formatSlots(r: SlotsReport): string {
  const width = Math.max(1, ...SLOT_NAMES.map((n) => (r.slots[n].version ?? '-').length));
  const lines = [`root  ${r.root}`];
  for (const n of SLOT_NAMES) {
    const v = r.slots[n];
    const state = `${v.state}${v.state === 'installing' && v.verified ? ' (verified)' : ''}${v.active ? ', active' : ''}`;
    const details: string[] = [];
    if (v.securityVersion !== null && v.state !== 'empty') details.push(`security version ${v.securityVersion}`);
    if (v.installedAt) details.push(`installed ${v.installedAt}`);
    if (v.committedAt) details.push(`committed ${v.committedAt}`);
    if (v.trialSince) details.push(`trial since ${v.trialSince}`);
    if (v.trialStarts !== null) details.push(`${v.trialStarts} trial start${v.trialStarts === 1 ? '' : 's'}`);
    if (v.updateId) details.push(`update ${v.updateId}`);
    if (v.reason) details.push(`reason: ${v.reason}`);
    lines.push(`${n}  ${(v.version ?? '-').padEnd(width)}  ${state}${details.length ? `  (${details.join(', ')})` : ''}`);
  }
  lines.push(`highest security version  ${r.highestSecurityVersion}`);
  return lines.join('\n') + '\n';
}

export function notInstalledMessage(root: string): string {
  return `edge-agent is not installed under ${root} (no ${root}/slots.json). Install it with \`edge-agent install --root ${root}\`, or give the right root with --config (ota.root) or EDGE_AGENT_ROOT`;
}

export async function slotsCommand(v: Values): Promise<number> {
  const name = 'edge-agent slots';
  let root: string;
  let file: SlotsFile;
  try {
    root = cliContext(v).config.ota.root;
  } catch (err) {
    return fail(name, err);
  }
  try {
    file = loadSlots(root);
  } catch (err) {
    if (err instanceof SlotsError && err.code === 'not-installed') {
      process.stderr.write(`${name}: ${notInstalledMessage(root)}\n`);
      return EXIT_NOT_INSTALLED;
    }
    process.stderr.write(`${name}: ${err instanceof SlotsError ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const report = slotsReport(root, file);
  process.stdout.write(v.json ? JSON.stringify(report, null, 2) + '\n' : formatSlots(report));
  return 0;
}
