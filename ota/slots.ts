/**
 * The A/B slot state machine: `ROOT/slots.json` says which slot boots and what each holds.
 * Transitions are pure functions from one SlotsFile to the next; the caller persists the result
 * (saveSlots, one atomic write) BEFORE acting on it, so a power cut at any instant leaves either
 * the old or the new state, and the boot guard (ota/boot-guard.ts) recovers from either.
 *
 * INVARIANTS (checkInvariants() tests them; test/unit/slots.test.ts drives random sequences):
 *  1. The active slot is `committed` or `trial`: the guard never boots an empty, half-written
 *     or rejected slot.
 *  2. While the active slot is `trial`, the other slot is `committed`: there is always a known
 *     good release to fall back to. Hence no install starts while a trial runs.
 *  3. The inactive slot is never `trial`; a slot being written (`installing`) is never active.
 *  4. `trialStarts` is set exactly on a `trial` slot; `verified` only on an `installing` one.
 *  5. No committed slot has a securityVersion above highestSecurityVersion, and the latter
 *     never decreases.
 *  6. One transition changes the state and the active pointer together, in one write.
 *  7. `failedStarts` and `failedSince` are set only on a `committed` slot: its recent failed
 *     starts (the agent exited unasked before it had run the guard's backoff reset time).
 *
 * This file runs inside the boot guard, outside the slots (ROOT/guard/): it imports only node:
 * builtins and ../lib/{atomic,errors}.js, which import nothing else (GUARD_FILES,
 * ota/guard-install.ts; a unit test checks the closure).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../lib/atomic.js';
import { EdgeError, registerCodes } from '../lib/errors.js';

export const SLOTS_CODES = registerCodes('slots', [
  'illegal-transition', // the transition is not allowed from the current state
  'not-verified', // activating a slot whose files were not all verified
  'no-rollback-target', // rollback asked, but the other slot holds no committed release
  'security-version', // rollback to a release below the highest committed securityVersion
  'not-installed', // ROOT/slots.json does not exist
  'slots-corrupt', // ROOT/slots.json is not valid JSON or not a format 1 slots file
] as const);
export type SlotsCode = (typeof SLOTS_CODES)[number];
export class SlotsError extends EdgeError<SlotsCode> {}

export type SlotName = 'A' | 'B';
export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];
export type SlotState = 'empty' | 'installing' | 'trial' | 'committed' | 'bad';
const STATES: readonly SlotState[] = ['empty', 'installing', 'trial', 'committed', 'bad'];

export interface SlotInfo {
  state: SlotState;
  version?: string;
  securityVersion?: number;
  /** When the slot's files were all written and verified. */
  installedAt?: string;
  committedAt?: string;
  /** Starts the guard has made of this trial slot (invariant 4). */
  trialStarts?: number;
  /** Failed starts of this committed slot since `failedSince` (invariant 7). */
  failedStarts?: number;
  failedSince?: string;
  trialSince?: string;
  /** The `update` command that wrote the slot. */
  updateId?: string;
  /** Why the slot is `bad`. */
  reason?: string;
  verified?: boolean;
}

export interface HistoryEntry {
  at: string;
  event: 'init' | 'install' | 'verified' | 'activate' | 'commit' | 'fail-trial' | 'guard-rollback' | 'rollback' | 'abort-install';
  slot: SlotName;
  version?: string;
  reason?: string;
}

export interface SlotsFile {
  format: 1;
  active: SlotName;
  slots: Record<SlotName, SlotInfo>;
  highestSecurityVersion: number;
  /** The last HISTORY_MAX transitions, oldest first. */
  history?: HistoryEntry[];
}

export const HISTORY_MAX = 20;
export const SLOTS_FILE = 'slots.json';

export function otherSlot(slot: SlotName): SlotName {
  return slot === 'A' ? 'B' : 'A';
}

function illegal(message: string, s: SlotsFile, slot?: SlotName): SlotsError {
  const details: Record<string, unknown> = { active: s.active, A: s.slots.A.state, B: s.slots.B.state };
  if (slot) details.slot = slot;
  return new SlotsError('illegal-transition', message, { details });
}

/** A copy of `i` without `keys`. */
function without(i: SlotInfo, ...keys: (keyof SlotInfo)[]): SlotInfo {
  const c = { ...i };
  for (const k of keys) delete c[k];
  return c;
}

/** A copy of `s` with `slot` replaced and a history entry appended (capped). */
function withSlot(s: SlotsFile, slot: SlotName, info: SlotInfo, entry: Omit<HistoryEntry, 'slot'>, active = s.active): SlotsFile {
  const history = [...(s.history ?? []), { ...entry, slot }].slice(-HISTORY_MAX);
  return { ...s, active, slots: { ...s.slots, [slot]: info }, history };
}

/** Starts writing `slot` (the inactive one); whatever it held before is forfeit. */
export function beginInstall(s: SlotsFile, slot: SlotName, rel: { version: string; securityVersion?: number; updateId?: string }, now = new Date()): SlotsFile {
  if (slot === s.active) throw illegal(`slot ${slot} is active; only the inactive slot can be written`, s, slot);
  if (s.slots[s.active].state !== 'committed') {
    throw illegal(`the active slot ${s.active} is ${s.slots[s.active].state}; commit or roll it back before installing`, s, slot);
  }
  const info: SlotInfo = { state: 'installing', version: rel.version, securityVersion: rel.securityVersion ?? 0 };
  if (rel.updateId !== undefined) info.updateId = rel.updateId;
  return withSlot(s, slot, info, { at: now.toISOString(), event: 'install', version: rel.version });
}

/** Every file of the installing `slot` matched its manifest hash. */
export function markVerified(s: SlotsFile, slot: SlotName, now = new Date()): SlotsFile {
  const cur = s.slots[slot];
  if (slot === s.active || cur.state !== 'installing') throw illegal(`slot ${slot} is ${cur.state}, not being installed`, s, slot);
  return withSlot(s, slot, { ...cur, verified: true, installedAt: now.toISOString() }, { at: now.toISOString(), event: 'verified', version: cur.version });
}

/** The point of no return of an update: the verified slot becomes the active trial. */
export function activate(s: SlotsFile, slot: SlotName, now = new Date()): SlotsFile {
  const cur = s.slots[slot];
  if (slot === s.active || cur.state !== 'installing') throw illegal(`slot ${slot} is ${cur.state}, not an installed inactive slot`, s, slot);
  if (cur.verified !== true) throw new SlotsError('not-verified', `slot ${slot} has not been verified`, { details: { slot } });
  if (s.slots[s.active].state !== 'committed') throw illegal(`the active slot ${s.active} is not committed: nothing to fall back to`, s, slot);
  const info: SlotInfo = { ...without(cur, 'verified'), state: 'trial', trialStarts: 0, trialSince: now.toISOString() };
  return withSlot(s, slot, info, { at: now.toISOString(), event: 'activate', version: cur.version }, slot);
}

export interface GuardDecision {
  next: SlotsFile;
  action: 'run' | 'rolled-back';
  reason?: 'trial-starts-exceeded' | 'committed-starts-exceeded' | 'active-not-runnable' | 'no-fallback';
}

/** The bound on failed starts of a committed slot: `max` within `windowMs` of the first. */
export interface CommittedBound {
  max: number;
  windowMs: number;
}

/** Whether `slot` (committed) has used up its failed starts under `bound`. Pure. */
export function committedExhausted(info: SlotInfo, bound: CommittedBound): boolean {
  return info.state === 'committed' && (info.failedStarts ?? 0) >= bound.max;
}

/**
 * The active committed slot's agent exited unasked soon after its start: one more failed start.
 * The count restarts when the first one counted is older than the window, unless the bound is
 * reached already: then it stays reached until a run that lasts clears it (clearFailedStarts).
 * No history entry: a crash loop would push everything else out of it.
 */
export function recordFailedStart(s: SlotsFile, slot: SlotName, bound: CommittedBound, now = new Date()): SlotsFile {
  const cur = s.slots[slot];
  if (slot !== s.active || cur.state !== 'committed') return s;
  const since = cur.failedSince === undefined ? NaN : Date.parse(cur.failedSince);
  const fresh = Number.isFinite(since) && now.getTime() - since <= bound.windowMs;
  const info: SlotInfo =
    fresh || committedExhausted(cur, bound) ? { ...cur, failedStarts: (cur.failedStarts ?? 0) + 1 } : { ...cur, failedStarts: 1, failedSince: now.toISOString() };
  return { ...s, slots: { ...s.slots, [slot]: info } };
}

/** The slot's agent ran long enough: its failed starts are forgotten. */
export function clearFailedStarts(s: SlotsFile, slot: SlotName): SlotsFile {
  const cur = s.slots[slot];
  if (cur.failedStarts === undefined && cur.failedSince === undefined) return s;
  return { ...s, slots: { ...s.slots, [slot]: without(cur, 'failedStarts', 'failedSince') } };
}

/** A committed slot the guard may fall back to: committed, and not below the security floor. */
export function usableFallback(s: SlotsFile, slot: SlotName): boolean {
  const i = s.slots[slot];
  return i.state === 'committed' && (i.securityVersion ?? 0) >= s.highestSecurityVersion;
}

/**
 * The boot guard's decision before each start of the agent. A trial slot gets at most
 * `maxTrialStarts` starts; then it is marked bad and the committed slot boots. An active slot
 * that is not runnable (a hand-edited or otherwise inconsistent file) is abandoned for a
 * committed one. A committed slot that used up its failed starts (`committed`, see
 * recordFailedStart) is marked bad and the other slot boots, if that one is committed and not
 * below the security floor; else it runs on (`no-fallback`: the guard retries it slowly).
 * Throws slots-corrupt only when no slot is runnable at all.
 */
export function guardStart(s: SlotsFile, maxTrialStarts: number, now = new Date(), committed?: CommittedBound): GuardDecision {
  const slot = s.active;
  const cur = s.slots[slot];
  const other = otherSlot(slot);
  const fallback = s.slots[other].state === 'committed';
  const at = now.toISOString();
  if (cur.state === 'committed') {
    if (!committed || !committedExhausted(cur, committed)) return { next: s, action: 'run' };
    if (!usableFallback(s, other)) return { next: s, action: 'run', reason: 'no-fallback' };
    const reason = 'committed-starts-exceeded';
    const bad: SlotInfo = { ...without(cur, 'failedStarts', 'failedSince'), state: 'bad', reason };
    const next = withSlot(s, slot, bad, { at, event: 'guard-rollback', version: cur.version, reason: `${reason} (${cur.failedStarts ?? 0} failed starts since ${cur.failedSince ?? '?'})` }, other);
    return { next: clearFailedStarts(next, other), action: 'rolled-back', reason };
  }
  if (cur.state === 'trial') {
    const starts = (cur.trialStarts ?? 0) + 1;
    if (starts <= maxTrialStarts || !fallback) {
      const next = { ...s, slots: { ...s.slots, [slot]: { ...cur, trialStarts: starts } } };
      return fallback ? { next, action: 'run' } : { next, action: 'run', reason: 'no-fallback' };
    }
    const reason = 'trial-starts-exceeded';
    return { next: withSlot(s, slot, { ...without(cur, 'trialStarts'), state: 'bad', reason }, { at, event: 'guard-rollback', version: cur.version, reason }, other), action: 'rolled-back', reason };
  }
  if (!fallback) throw new SlotsError('slots-corrupt', `no runnable slot: active ${slot} is ${cur.state}, ${other} is ${s.slots[other].state}`);
  const reason = 'active-not-runnable';
  return { next: withSlot(s, slot, { ...without(cur, 'verified', 'trialStarts'), state: 'bad', reason: `${reason} (${cur.state})` }, { at, event: 'guard-rollback', version: cur.version, reason }, other), action: 'rolled-back', reason };
}

/** The health gate passed: the active trial slot becomes the committed release. */
export function commit(s: SlotsFile, now = new Date()): SlotsFile {
  const cur = s.slots[s.active];
  if (cur.state !== 'trial') throw illegal(`the active slot ${s.active} is ${cur.state}, not trial`, s, s.active);
  const next = withSlot(s, s.active, { ...without(cur, 'trialStarts'), state: 'committed', committedAt: now.toISOString() }, { at: now.toISOString(), event: 'commit', version: cur.version });
  return { ...next, highestSecurityVersion: Math.max(s.highestSecurityVersion, cur.securityVersion ?? 0) };
}

/** The health gate failed: the trial slot is bad and the committed one is active again. */
export function failTrial(s: SlotsFile, reason: string, now = new Date()): SlotsFile {
  const slot = s.active;
  const cur = s.slots[slot];
  if (cur.state !== 'trial') throw illegal(`the active slot ${slot} is ${cur.state}, not trial`, s, slot);
  if (s.slots[otherSlot(slot)].state !== 'committed') throw new SlotsError('no-rollback-target', `slot ${otherSlot(slot)} holds no committed release`);
  return withSlot(s, slot, { ...without(cur, 'trialStarts'), state: 'bad', reason }, { at: now.toISOString(), event: 'fail-trial', version: cur.version, reason }, otherSlot(slot));
}

/** Manual rollback: both slots committed; the other one becomes active. */
export function rollback(s: SlotsFile, now = new Date()): SlotsFile {
  const target = otherSlot(s.active);
  const t = s.slots[target];
  if (s.slots[s.active].state !== 'committed' || t.state !== 'committed') {
    throw new SlotsError('no-rollback-target', `rollback needs two committed slots: ${s.active} is ${s.slots[s.active].state}, ${target} is ${t.state}`, {
      details: { active: s.active, A: s.slots.A.state, B: s.slots.B.state },
    });
  }
  if ((t.securityVersion ?? 0) < s.highestSecurityVersion) {
    throw new SlotsError('security-version', `slot ${target} (${t.version ?? '?'}) has securityVersion ${t.securityVersion ?? 0}, below the committed ${s.highestSecurityVersion}`);
  }
  const history = [...(s.history ?? []), { at: now.toISOString(), event: 'rollback' as const, slot: target, version: t.version }].slice(-HISTORY_MAX);
  return { ...s, active: target, history };
}

/** Gives up an install (failed download or verification, cancel): the slot is empty again. */
export function abortInstall(s: SlotsFile, slot: SlotName, now = new Date()): SlotsFile {
  const cur = s.slots[slot];
  if (slot === s.active || cur.state !== 'installing') throw illegal(`slot ${slot} is ${cur.state}, not being installed`, s, slot);
  return withSlot(s, slot, { state: 'empty' }, { at: now.toISOString(), event: 'abort-install', version: cur.version });
}

/** The invariants at the top of this file; returns the violated ones (empty when all hold). */
export function checkInvariants(s: SlotsFile, prev?: SlotsFile): string[] {
  const bad: string[] = [];
  const act = s.slots[s.active];
  const other = s.slots[otherSlot(s.active)];
  if (act.state !== 'committed' && act.state !== 'trial') bad.push(`1: the active slot ${s.active} is ${act.state}`);
  if (act.state === 'trial' && other.state !== 'committed') bad.push(`2: trial ${s.active} without a committed fallback (${other.state})`);
  if (other.state === 'trial') bad.push('3: the inactive slot is trial');
  for (const n of SLOT_NAMES) {
    const i = s.slots[n];
    if ((i.trialStarts !== undefined) !== (i.state === 'trial')) bad.push(`4: slot ${n} is ${i.state} with trialStarts ${String(i.trialStarts)}`);
    if ((i.failedStarts !== undefined || i.failedSince !== undefined) && i.state !== 'committed') bad.push(`7: slot ${n} is ${i.state} with failedStarts`);
    if (i.verified !== undefined && i.state !== 'installing') bad.push(`4: slot ${n} is ${i.state} with verified set`);
    if (i.state === 'committed' && (i.securityVersion ?? 0) > s.highestSecurityVersion) bad.push(`5: committed slot ${n} above highestSecurityVersion`);
  }
  if (prev && s.highestSecurityVersion < prev.highestSecurityVersion) bad.push('5: highestSecurityVersion decreased');
  return bad;
}

function isStr(v: unknown): boolean {
  return v === undefined || typeof v === 'string';
}

function slotInfoProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object';
  const o = v as Record<string, unknown>;
  if (!STATES.includes(o.state as SlotState)) return `state ${JSON.stringify(o.state)} is not one of ${STATES.join(', ')}`;
  for (const k of ['version', 'installedAt', 'committedAt', 'trialSince', 'updateId', 'reason', 'failedSince']) if (!isStr(o[k])) return `${k} is not a string`;
  for (const k of ['securityVersion', 'trialStarts', 'failedStarts']) if (o[k] !== undefined && !(Number.isInteger(o[k]) && (o[k] as number) >= 0)) return `${k} is not a non-negative integer`;
  if (o.verified !== undefined && typeof o.verified !== 'boolean') return 'verified is not a boolean';
  return undefined;
}

/** Checks the shape of a parsed slots.json (not the invariants: the guard repairs those). */
export function parseSlots(raw: unknown, where = SLOTS_FILE): SlotsFile {
  const fail = (why: string): SlotsError => new SlotsError('slots-corrupt', `${where}: ${why}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== 1) throw fail(`format ${JSON.stringify(o.format)} is not 1`);
  if (o.active !== 'A' && o.active !== 'B') throw fail(`active ${JSON.stringify(o.active)} is not "A" or "B"`);
  if (!Number.isInteger(o.highestSecurityVersion) || (o.highestSecurityVersion as number) < 0) throw fail('highestSecurityVersion is not a non-negative integer');
  if (typeof o.slots !== 'object' || o.slots === null) throw fail('slots is not an object');
  const slots = o.slots as Record<string, unknown>;
  for (const n of SLOT_NAMES) {
    const p = slotInfoProblem(slots[n]);
    if (p) throw fail(`slots.${n}: ${p}`);
  }
  if (o.history !== undefined && !Array.isArray(o.history)) throw fail('history is not an array');
  return raw as SlotsFile;
}

export function slotsPath(root: string): string {
  return join(root, SLOTS_FILE);
}

/** Reads and checks ROOT/slots.json; not-installed when it is missing, slots-corrupt when unreadable. */
export function loadSlots(root: string): SlotsFile {
  const path = slotsPath(root);
  let raw: unknown;
  try {
    raw = readJsonFile(path);
  } catch (err) {
    throw new SlotsError('slots-corrupt', `${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (raw === undefined) throw new SlotsError('not-installed', `${path} does not exist: edge-agent is not installed under ${root}`);
  return parseSlots(raw, path);
}

/** One durable atomic write (lib/atomic.ts): old or new state after a power cut, never a mix. */
export function saveSlots(root: string, s: SlotsFile): void {
  writeJsonAtomic(slotsPath(root), s, 0o644);
}

/** The state of a fresh install: slot A holds `version`, committed; B is empty. */
export function initSlots(root: string, rel: { version: string; securityVersion?: number }, now = new Date()): SlotsFile {
  if (existsSync(slotsPath(root))) throw new SlotsError('illegal-transition', `${slotsPath(root)} exists: already installed`);
  const sv = rel.securityVersion ?? 0;
  const at = now.toISOString();
  const s: SlotsFile = {
    format: 1,
    active: 'A',
    slots: { A: { state: 'committed', version: rel.version, securityVersion: sv, installedAt: at, committedAt: at }, B: { state: 'empty' } },
    highestSecurityVersion: sv,
    history: [{ at, event: 'init', slot: 'A', version: rel.version }],
  };
  saveSlots(root, s);
  return s;
}
