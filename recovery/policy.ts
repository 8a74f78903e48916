/**
 * The watchdog's state machine for one supervised component. Pure: every function takes a state
 * and `now` and returns the next state plus the actions the supervisor must carry out. The
 * supervisor persists the next state (recovery/incidents.ts, table recovery_state) BEFORE it acts,
 * so an agent restart in the middle of a crash loop goes on where it was instead of forgetting it.
 *
 *   stopped --start--> starting --probe ok--> running
 *   starting|running --failure--> backoff --nextStartAt--> starting        (a restart)
 *   starting|running --requested--> starting                               (a restart command)
 *
 * A failure is an exit, a hang (no passed probe within the deadline), a start that never passed a
 * probe, or a start that could not be made. Each failure takes ONE escalation step at most,
 * decided by the failures counted within escalation.windowMs since the last healthy period:
 *
 *   level 0  restart after a capped exponential backoff with jitter (lib/backoff.ts)
 *   level 1  (restoreConfigAfter failures) restore the component's configuration, restart
 *   level 2  (rollbackAfter) roll the release back: only when the loop began after the running
 *            release was activated (within rollbackWithinMs); otherwise `rollback-skipped`
 *   level 3  (slowRetryAfter) raise the alarm; from now on retry every slowRetryMs, forever
 *
 * INVARIANTS (test/unit/recovery-policy.test.ts):
 *  1. Never gives up: after any failure the state is `backoff` with a nextStartAt; `stopped` is
 *     only the state before the first start.
 *  2. The level only rises one step per failure, in order 0 -> 1 -> 2 -> 3, and falls only to 0,
 *     after `healthyMs` of uninterrupted health.
 *  3. The alarm is raised exactly when level 3 is reached and cleared exactly at that reset: it
 *     stays raised through every slow retry in between.
 *  4. `attempt` (the backoff exponent) counts failures since the last healthy period; delays are
 *     backoffDelay(backoff, attempt - 1), or slowRetryMs (with the same jitter) at level 3.
 *  5. A requested restart is not a failure: it neither raises the level nor the backoff.
 *  6. Incidents are resolved only once the component has stayed healthy for healthyMs (a process
 *     that lives a moment and dies again has not recovered), as of the moment it became healthy.
 */
import { backoffDelay, type BackoffPolicy } from '../lib/backoff.js';

export type ComponentState = 'stopped' | 'starting' | 'running' | 'backoff';
export type Level = 0 | 1 | 2 | 3;

/** What went wrong (incidents' `cause`; docs/errors.md "recovery"). */
export type FailureCause = 'exited' | 'hung' | 'start-timeout' | 'spawn-failed' | 'gone';

/** The step taken for one failure (incidents' `action`). */
export type Step = 'restart' | 'restore-config' | 'rollback' | 'rollback-skipped' | 'alarm' | 'slow-retry';

export interface PolicyConfig {
  backoff: BackoffPolicy;
  healthyMs: number;
  slowRetryMs: number;
  escalation: { windowMs: number; restoreConfigAfter: number; rollbackAfter: number; slowRetryAfter: number; rollbackWithinMs: number };
}

export interface FailureInfo {
  at: number;
  cause: FailureCause;
  exitCode?: number | undefined;
  signal?: string | undefined;
  detail?: string | undefined;
}

export interface PolicyState {
  state: ComponentState;
  /** When the current state was entered. */
  since: number;
  /** Restarts made (after failures and on request), over the component's whole life. */
  restarts: number;
  /** Failures since the last healthy period: the backoff exponent. */
  attempt: number;
  /** Times of the failures since the last healthy period, within escalation.windowMs. */
  failures: number[];
  level: Level;
  /** The first failure of the current loop (attempt > 0). */
  loopSince?: number | undefined;
  nextStartAt?: number | undefined;
  /** Running and passing probes since. */
  healthySince?: number | undefined;
  lastFailure?: FailureInfo | undefined;
  alarm?: { since: number; message: string } | undefined;
  /** Incidents wait for the component to prove healthy (invariant 6). */
  open?: boolean | undefined;
}

export type Action =
  | { kind: 'start' }
  /** Kill what is left of the component (it is hung, or a restart was asked for). */
  | { kind: 'kill'; hung: boolean }
  | { kind: 'incident'; step: Step; failure: FailureInfo; delayMs: number; level: Level }
  | { kind: 'restore-config' }
  | { kind: 'rollback'; reason: string }
  | { kind: 'raise-alarm'; message: string }
  | { kind: 'clear-alarm'; message: string }
  /** Healthy for healthyMs after incidents: they are resolved as recovered at `at`. */
  | { kind: 'recovered'; at: number };

export interface Transition {
  next: PolicyState;
  actions: Action[];
}

export function initialState(now: number): PolicyState {
  return { state: 'stopped', since: now, restarts: 0, attempt: 0, failures: [], level: 0 };
}

/** The first start of a component (none is running to adopt). */
export function firstStart(s: PolicyState, now: number): Transition {
  if (s.state !== 'stopped') return { next: s, actions: [] };
  return { next: { ...s, state: 'starting', since: now }, actions: [{ kind: 'start' }] };
}

/** A running instance was taken over (after an agent restart): wait for its first probe. */
export function adopted(s: PolicyState, now: number): Transition {
  return { next: { ...s, state: s.state === 'running' ? 'running' : 'starting', since: now, nextStartAt: undefined, healthySince: s.state === 'running' ? s.healthySince : undefined }, actions: [] };
}

/** The component passed a probe. */
export function probeOk(s: PolicyState, now: number, cfg: PolicyConfig): Transition {
  if (s.state === 'starting') return { next: { ...s, state: 'running', since: now, healthySince: now }, actions: [] };
  if (s.state !== 'running') return { next: s, actions: [] };
  const healthySince = s.healthySince ?? now;
  const next: PolicyState = { ...s, healthySince };
  if (now - healthySince >= cfg.healthyMs && (s.attempt > 0 || s.level > 0 || s.alarm || s.failures.length > 0 || s.open)) {
    const actions: Action[] = [];
    if (s.open) actions.push({ kind: 'recovered', at: healthySince });
    if (s.alarm) actions.push({ kind: 'clear-alarm', message: `healthy for ${fmtMs(cfg.healthyMs)} again` });
    return { next: { ...next, attempt: 0, failures: [], level: 0, loopSince: undefined, alarm: undefined, open: false }, actions };
  }
  return { next, actions: [] };
}

/** Whether a rollback may answer this loop: it began with the running release (invariant 2, level 2). */
export function rollbackEligible(loopSince: number | undefined, activatedAt: number | undefined, cfg: PolicyConfig): boolean {
  if (loopSince === undefined || activatedAt === undefined) return false;
  return loopSince >= activatedAt && loopSince - activatedAt <= cfg.escalation.rollbackWithinMs;
}

/**
 * The component failed. `activatedAt`: when the running release was activated, if a rollback
 * target exists at all (undefined otherwise).
 */
export function failure(s: PolicyState, f: FailureInfo, cfg: PolicyConfig, activatedAt: number | undefined, random: () => number = Math.random): Transition {
  if (s.state === 'backoff' || s.state === 'stopped') return { next: s, actions: [] };
  const now = f.at;
  const e = cfg.escalation;
  const failures = [...s.failures.filter((t) => now - t < e.windowMs), now];
  const attempt = s.attempt + 1;
  const loopSince = s.loopSince ?? now;
  const count = failures.length;
  const actions: Action[] = [];
  if (f.cause === 'hung' || f.cause === 'start-timeout') actions.push({ kind: 'kill', hung: true });
  let level: Level = s.level;
  let step: Step = level === 3 ? 'slow-retry' : 'restart';
  let alarm = s.alarm;
  if (level < 1 && count >= e.restoreConfigAfter) {
    level = 1;
    step = 'restore-config';
    actions.push({ kind: 'restore-config' });
  } else if (level === 1 && count >= e.rollbackAfter) {
    level = 2;
    if (rollbackEligible(loopSince, activatedAt, cfg)) {
      step = 'rollback';
      actions.push({ kind: 'rollback', reason: `crash loop: ${count} failures since ${new Date(loopSince).toISOString()}, which began after the release was activated` });
    } else {
      step = 'rollback-skipped';
    }
  } else if (level === 2 && count >= e.slowRetryAfter) {
    level = 3;
    step = 'alarm';
    const message = `${count} failures in a row (last: ${f.cause}); retrying every ${fmtMs(cfg.slowRetryMs)} until it stays up`;
    alarm = { since: now, message };
    actions.push({ kind: 'raise-alarm', message });
  }
  const delayMs =
    level === 3
      ? backoffDelay({ initialMs: cfg.slowRetryMs, maxMs: cfg.slowRetryMs, factor: 1, jitter: cfg.backoff.jitter }, 0, random)
      : backoffDelay(cfg.backoff, attempt - 1, random);
  actions.unshift({ kind: 'incident', step, failure: f, delayMs, level });
  const next: PolicyState = {
    ...s,
    state: 'backoff',
    since: now,
    attempt,
    failures,
    level,
    loopSince,
    nextStartAt: now + delayMs,
    healthySince: undefined,
    lastFailure: f,
    alarm,
    open: true,
  };
  return { next, actions };
}

/** Time passed: a backoff that is over starts the component again. */
export function tick(s: PolicyState, now: number): Transition {
  if (s.state === 'backoff' && s.nextStartAt !== undefined && now >= s.nextStartAt) {
    return { next: { ...s, state: 'starting', since: now, nextStartAt: undefined, restarts: s.restarts + 1 }, actions: [{ kind: 'start' }] };
  }
  return { next: s, actions: [] };
}

/** A restart asked for (the `restart` command): kill, start at once; not a failure (invariant 5). */
export function requested(s: PolicyState, now: number): Transition {
  const kill: Action[] = s.state === 'starting' || s.state === 'running' ? [{ kind: 'kill', hung: false }] : [];
  return { next: { ...s, state: 'starting', since: now, nextStartAt: undefined, healthySince: undefined, restarts: s.restarts + 1, open: true }, actions: [...kill, { kind: 'start' }] };
}

function fmtMs(ms: number): string {
  return ms < 10_000 ? `${ms / 1000} s` : `${Math.round(ms / 1000)} s`;
}

/** Restores a persisted state, or undefined when it is not one (a new component starts afresh). */
export function parseState(raw: unknown): PolicyState | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Partial<PolicyState>;
  const states: ComponentState[] = ['stopped', 'starting', 'running', 'backoff'];
  if (!states.includes(o.state as ComponentState)) return undefined;
  if (typeof o.since !== 'number' || typeof o.restarts !== 'number' || typeof o.attempt !== 'number' || !Array.isArray(o.failures)) return undefined;
  if (![0, 1, 2, 3].includes(o.level as number)) return undefined;
  return o as PolicyState;
}
