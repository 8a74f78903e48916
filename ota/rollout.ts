/**
 * When an update of a fleet rollout starts (CONTRACT.md section 2, `update` params `notBefore`,
 * `spreadSec`, `deadline`, `window`). Pure: the time, the random source and the next maintenance
 * window come in as arguments. agent/ops/update.ts persists the start chosen here before it
 * waits, so a restart keeps it: the fleet's spread does not collapse into the moment of a reboot.
 *
 * INVARIANTS
 * - A start is never before `notBefore`, never before the next maintenance window when `window`
 *   is asked for, and never after `deadline` when one is given: the spread is cut at the deadline
 *   (uniformly inside what is left), so every gateway that receives the command in time starts
 *   in time unless it is down or busy at its moment.
 * - A deadline at or before the moment the command arrives is a rejection (`deadline-passed`),
 *   one that passes before the start is a failure with the same code (the caller checks it when
 *   the wait ends, see startVerdict).
 */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const ROLLOUT_CODES = registerCodes('rollout', [
  'deadline-passed', // the update's deadline had passed when it arrived (rejected) or before it could start (failed)
  'no-window-service', // `window: true`, but this agent has no maintenance windows to wait for
  'no-window', // `window: true`, but no maintenance window is scheduled
] as const);
export type RolloutCode = (typeof ROLLOUT_CODES)[number];

export class RolloutError extends EdgeError<RolloutCode> {}

/** The rollout params of an `update` (all optional: without them it starts at once). */
export interface RolloutParams {
  notBefore?: string | undefined;
  spreadSec?: number | undefined;
  deadline?: string | undefined;
  window?: boolean | undefined;
  rolloutId?: string | undefined;
}

/** The longest spread accepted: a week (a rollout longer than that is the WMS's waves, not one command). */
export const MAX_SPREAD_SEC = 7 * 86_400;

/** Whether the command asks to wait at all. */
export function wantsWait(p: RolloutParams): boolean {
  return p.notBefore !== undefined || (p.spreadSec ?? 0) > 0 || p.window === true;
}

const ms = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Date.parse(iso));

/** At arrival: the reason to reject it, or undefined. `windows`: whether a window service is wired. */
export function admitRollout(p: RolloutParams, now: number, windows: boolean): { code: RolloutCode | 'invalid-params'; message: string } | undefined {
  const deadline = ms(p.deadline);
  const notBefore = ms(p.notBefore);
  if (deadline !== undefined && deadline <= now) return { code: 'deadline-passed', message: `the deadline ${p.deadline} had passed when the update arrived` };
  if (deadline !== undefined && notBefore !== undefined && notBefore >= deadline) return { code: 'invalid-params', message: `notBefore ${p.notBefore} is not before the deadline ${p.deadline}` };
  if (p.window === true && !windows) return { code: 'no-window-service', message: 'window: this agent has no maintenance windows to wait for; send the update without window' };
  return undefined;
}

/**
 * The moment to start: max(now, notBefore, next window) plus a uniform share of `spreadSec`, cut
 * at the deadline. Throws RolloutError `no-window` when a window is asked for and none is known.
 */
export function planStart(p: RolloutParams, now: number, random: () => number, nextWindowStart?: () => number | undefined): number {
  let base = Math.max(now, ms(p.notBefore) ?? now);
  if (p.window === true) {
    const w = nextWindowStart?.();
    if (w === undefined) throw new RolloutError('no-window', 'window: no maintenance window is scheduled on this gateway');
    base = Math.max(base, w);
  }
  const deadline = ms(p.deadline);
  let end = base + (p.spreadSec ?? 0) * 1000;
  if (deadline !== undefined) end = Math.min(end, deadline - 1);
  return end > base ? base + Math.floor((end - base) * random()) : base;
}

/** When the wait ends: go, or the failure to report. */
export function startVerdict(p: RolloutParams, now: number): { code: 'deadline-passed'; message: string } | undefined {
  const deadline = ms(p.deadline);
  if (deadline !== undefined && now >= deadline) return { code: 'deadline-passed', message: `the deadline ${p.deadline} passed before the update could start` };
  return undefined;
}
