/**
 * The run of a procedure as a state machine written as data (STYLE.md, after thin-edge.io's
 * workflows): one table of run states and the events each accepts with the states they may lead
 * to, and one pure function that picks the next state and says what the runner does next. The
 * runner (not built yet) persists the returned record BEFORE it performs the returned effect.
 *
 * INVARIANTS
 * - Terminal states (`succeeded`, `failed`, `rolled-back`, `cancelled`, `interrupted`) accept
 *   no event: a terminal run never changes again, so it has exactly one terminal state.
 * - `transition` only ever moves along an edge of TRANSITIONS (a unit test enumerates every
 *   reachable record of a few shapes and checks it), and the cursor never passes the end of its
 *   list: `step-done` is refused when no step runs.
 * - Steps run only in `running`. The record names the step about to run (`phase`, `cursor`)
 *   before it runs, so after a restart the run continues at that step boundary (the step runs
 *   again: steps must be safe to repeat) or rolls back, as `onInterrupt` says; never left
 *   `running` with nobody driving it.
 * - `pause` and `cancel` take effect at step boundaries (a cancel may also kill a running
 *   command step, which then ends `cancelled`), or at once from `paused`.
 * - Rollback runs at most once per run, in order, and cannot be paused or cancelled; when it
 *   ends the run is terminal: `rolled-back` after a failed step, `cancelled` after a cancel,
 *   `failed` after a timeout, `rolled-back` after an interruption; `failed` if a rollback step
 *   fails with `onFailure: abort`.
 * - A failing step with `onFailure: rollback` and no rollback steps ends `failed`: nothing was
 *   rolled back.
 */

export const RUN_STATES = ['pending', 'running', 'paused', 'succeeded', 'failed', 'rolled-back', 'cancelled', 'interrupted'] as const;
export type RunState = (typeof RUN_STATES)[number];
export const TERMINAL_RUN_STATES: readonly RunState[] = ['succeeded', 'failed', 'rolled-back', 'cancelled', 'interrupted'];

export type StepOutcome = 'ok' | 'failed' | 'timeout' | 'cancelled';
export type OnFailure = 'abort' | 'continue' | 'rollback';
export type RollbackCause = 'step-failed' | 'cancel' | 'timeout' | 'interrupt';

export type RunEvent =
  | { type: 'start' }
  | { type: 'prerequisites-failed'; reason: string }
  | { type: 'step-done'; outcome: StepOutcome; onFailure: OnFailure }
  | { type: 'criteria-checked'; ok: boolean; reason?: string }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'cancel' }
  | { type: 'deadline' }
  | { type: 'restarted'; onInterrupt: 'resume' | 'rollback' | 'fail' };
export type RunEventType = RunEvent['type'];

/** Every edge: for each state, the events it accepts and the states they may lead to. */
export const TRANSITIONS: Readonly<Record<RunState, Partial<Record<RunEventType, readonly RunState[]>>>> = {
  pending: { start: ['running'], 'prerequisites-failed': ['failed'], cancel: ['cancelled'], restarted: ['pending'] },
  running: {
    'step-done': ['running', 'paused', 'failed', 'rolled-back', 'cancelled'],
    'criteria-checked': ['succeeded', 'failed'],
    pause: ['running'],
    resume: ['running'],
    cancel: ['running'],
    deadline: ['running', 'failed'],
    restarted: ['running', 'interrupted'],
  },
  paused: { resume: ['running'], pause: ['paused'], cancel: ['running', 'cancelled'], deadline: ['running', 'failed'], restarted: ['paused', 'running', 'interrupted'] },
  succeeded: {},
  failed: {},
  'rolled-back': {},
  cancelled: {},
  interrupted: {},
};

export interface RunRecord {
  state: RunState;
  /** Which list the cursor walks. */
  phase: 'steps' | 'rollback';
  /** The index of the next step to run in `phase` (or the one running). */
  cursor: number;
  pauseRequested: boolean;
  cancelRequested: boolean;
  /** Why the rollback runs; decides the terminal state after it. */
  rollbackCause?: RollbackCause;
  /** Why the run ended as it did (the report's reason): a code and a message. */
  reason?: { code: string; message: string };
}

/** What the runner does after persisting the new record. */
export type Effect =
  | { kind: 'run-step'; phase: 'steps' | 'rollback'; index: number }
  | { kind: 'check-criteria' }
  | { kind: 'wait' }
  | { kind: 'finished'; state: RunState };

export interface RunShape {
  steps: number;
  rollback: number;
}

export type Transition = { ok: true; run: RunRecord; effect: Effect } | { ok: false; reason: string };

export function initialRun(): RunRecord {
  return { state: 'pending', phase: 'steps', cursor: 0, pauseRequested: false, cancelRequested: false };
}

export function isTerminal(state: RunState): boolean {
  return TERMINAL_RUN_STATES.includes(state);
}

/** What a record in `running` or `paused` does next; the terminal ones are finished. */
export function effectOf(run: RunRecord, shape: RunShape): Effect {
  if (isTerminal(run.state)) return { kind: 'finished', state: run.state };
  if (run.state === 'paused' || run.state === 'pending') return { kind: 'wait' };
  const len = run.phase === 'steps' ? shape.steps : shape.rollback;
  if (run.cursor < len) return { kind: 'run-step', phase: run.phase, index: run.cursor };
  return { kind: 'check-criteria' };
}

const CAUSE_END: Record<RollbackCause, { state: RunState; code: string }> = {
  'step-failed': { state: 'rolled-back', code: 'step-failed' },
  cancel: { state: 'cancelled', code: 'cancelled' },
  timeout: { state: 'failed', code: 'timeout' },
  interrupt: { state: 'rolled-back', code: 'interrupted' },
};

function end(run: RunRecord, state: RunState, code: string, message: string): RunRecord {
  return { ...run, state, pauseRequested: false, cancelRequested: false, reason: run.reason ?? { code, message } };
}

/** Into the rollback phase, or straight to the end when there is nothing to roll back. */
function rollBack(run: RunRecord, shape: RunShape, cause: RollbackCause, message: string): RunRecord {
  const reason = { code: CAUSE_END[cause].code, message };
  if (shape.rollback === 0) {
    const state: RunState = cause === 'cancel' ? 'cancelled' : cause === 'interrupt' ? 'interrupted' : 'failed';
    return { ...end(run, state, reason.code, message), reason };
  }
  return { ...run, state: 'running', phase: 'rollback', cursor: 0, rollbackCause: cause, pauseRequested: false, cancelRequested: false, reason };
}

/** The end of the rollback phase. */
function rollbackDone(run: RunRecord): RunRecord {
  const cause = run.rollbackCause ?? 'step-failed';
  const e = CAUSE_END[cause];
  return end(run, e.state, e.code, 'rolled back');
}

function stepDone(run: RunRecord, ev: Extract<RunEvent, { type: 'step-done' }>, shape: RunShape): RunRecord {
  if (run.phase === 'rollback') {
    if (ev.outcome !== 'ok' && ev.onFailure === 'abort') return { ...end(run, 'failed', 'rollback-failed', `rollback step ${run.cursor + 1} ended ${ev.outcome}`), reason: { code: 'rollback-failed', message: `rollback step ${run.cursor + 1} ended ${ev.outcome}` } };
    const next = { ...run, cursor: run.cursor + 1 };
    return next.cursor >= shape.rollback ? rollbackDone(next) : next;
  }
  if (ev.outcome === 'cancelled' || (run.cancelRequested && (ev.outcome === 'ok' || ev.onFailure === 'continue'))) {
    return rollBack(run, shape, 'cancel', 'cancelled');
  }
  if (ev.outcome !== 'ok' && ev.onFailure !== 'continue') {
    const message = `step ${run.cursor + 1} ended ${ev.outcome}`;
    const code = ev.outcome === 'timeout' ? 'step-timeout' : 'step-failed';
    if (ev.onFailure === 'rollback') return rollBack(run, shape, 'step-failed', message);
    return { ...end(run, 'failed', code, message), reason: { code, message } };
  }
  const next = { ...run, cursor: run.cursor + 1 };
  if (next.pauseRequested && next.cursor < shape.steps) return { ...next, state: 'paused', pauseRequested: false };
  return next;
}

/**
 * The next record and what to do, or why the event is refused in this state. Pure: the caller
 * persists `run`, then performs `effect`.
 */
export function transition(run: RunRecord, ev: RunEvent, shape: RunShape): Transition {
  const allowed = TRANSITIONS[run.state][ev.type];
  if (!allowed) return { ok: false, reason: `a ${run.state} run does not accept ${ev.type}` };
  let next: RunRecord;
  switch (ev.type) {
    case 'start':
      next = { ...run, state: 'running', phase: 'steps', cursor: 0 };
      break;
    case 'prerequisites-failed':
      next = { ...end(run, 'failed', 'prerequisites-failed', ev.reason), reason: { code: 'prerequisites-failed', message: ev.reason } };
      break;
    case 'step-done':
      if (run.cursor >= (run.phase === 'steps' ? shape.steps : shape.rollback)) return { ok: false, reason: 'no step is running: the success criteria are next' };
      next = stepDone(run, ev, shape);
      break;
    case 'criteria-checked':
      if (run.phase !== 'steps' || run.cursor < shape.steps) return { ok: false, reason: 'the success criteria are checked after the last step' };
      next = ev.ok ? end(run, 'succeeded', 'succeeded', 'all steps ran and the success criteria hold') : { ...end(run, 'failed', 'success-criteria', ev.reason ?? 'the success criteria do not hold'), reason: { code: 'success-criteria', message: ev.reason ?? 'the success criteria do not hold' } };
      break;
    case 'pause':
      if (run.state === 'running' && run.phase === 'rollback') return { ok: false, reason: 'a rollback cannot be paused' };
      next = run.state === 'paused' ? run : { ...run, pauseRequested: true };
      break;
    case 'resume':
      next = run.state === 'paused' ? { ...run, state: 'running' } : { ...run, pauseRequested: false };
      break;
    case 'cancel':
      if (run.state === 'pending') next = { ...end(run, 'cancelled', 'cancelled', 'cancelled before it started'), reason: { code: 'cancelled', message: 'cancelled before it started' } };
      else if (run.state === 'paused') next = rollBack(run, shape, 'cancel', 'cancelled');
      else if (run.phase === 'rollback') return { ok: false, reason: 'the run is already rolling back' };
      else next = { ...run, cancelRequested: true };
      break;
    case 'deadline':
      if (run.phase === 'rollback') next = run; // the rollback runs to its end
      else next = rollBack(run, shape, 'timeout', 'the run took longer than maxDurationSec');
      break;
    case 'restarted':
      if (run.state === 'pending') next = run;
      else if (run.phase === 'rollback') next = { ...run, state: 'running' };
      else if (ev.onInterrupt === 'resume') next = run;
      else if (ev.onInterrupt === 'rollback') next = rollBack(run, shape, 'interrupt', 'the agent stopped during the run');
      else next = { ...end(run, 'interrupted', 'interrupted', 'the agent stopped during the run'), reason: { code: 'interrupted', message: 'the agent stopped during the run' } };
      break;
  }
  if (!allowed.includes(next.state)) {
    // A bug in this file, never a reachable state: refuse rather than leave the table.
    return { ok: false, reason: `internal: ${run.state} --${ev.type}--> ${next.state} is not an edge of TRANSITIONS` };
  }
  return { ok: true, run: next, effect: effectOf(next, shape) };
}
