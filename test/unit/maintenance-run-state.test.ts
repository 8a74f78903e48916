/**
 * The run-state machine (maintenance/run-state.ts): the table is the only way through, terminal
 * states never change, and every reachable run can be driven to exactly one terminal state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  initialRun,
  isTerminal,
  RUN_STATES,
  TERMINAL_RUN_STATES,
  transition,
  TRANSITIONS,
  type Effect,
  type RunEvent,
  type RunRecord,
  type RunShape,
} from '../../maintenance/run-state.js';

const OUTCOMES = ['ok', 'failed', 'timeout', 'cancelled'] as const;
const ON_FAILURE = ['abort', 'continue', 'rollback'] as const;
const EVENTS: RunEvent[] = [
  { type: 'start' },
  { type: 'prerequisites-failed', reason: 'disk full' },
  ...OUTCOMES.flatMap((outcome) => ON_FAILURE.map((onFailure) => ({ type: 'step-done', outcome, onFailure }) as const)),
  { type: 'criteria-checked', ok: true },
  { type: 'criteria-checked', ok: false, reason: 'x' },
  { type: 'pause' },
  { type: 'resume' },
  { type: 'cancel' },
  { type: 'deadline' },
  { type: 'restarted', onInterrupt: 'resume' },
  { type: 'restarted', onInterrupt: 'rollback' },
  { type: 'restarted', onInterrupt: 'fail' },
];

function apply(run: RunRecord, shape: RunShape, ...events: RunEvent[]): { run: RunRecord; effect: Effect } {
  let cur = run;
  let effect: Effect = { kind: 'wait' };
  for (const ev of events) {
    const t = transition(cur, ev, shape);
    assert.ok(t.ok, `${cur.state}/${cur.phase}#${cur.cursor} refused ${JSON.stringify(ev)}: ${t.ok ? '' : t.reason}`);
    cur = t.run;
    effect = t.effect;
  }
  return { run: cur, effect };
}

const ok = { type: 'step-done', outcome: 'ok', onFailure: 'abort' } as const;

/** The runner's loop with every step succeeding: from any record, how it ends. */
function drive(run: RunRecord, shape: RunShape): RunRecord {
  let cur = run;
  for (let i = 0; i < shape.steps + shape.rollback + 5; i++) {
    if (isTerminal(cur.state)) return cur;
    const ev: RunEvent = cur.state === 'pending' ? { type: 'start' } : cur.state === 'paused' ? { type: 'resume' } : cur.phase === 'steps' && cur.cursor >= shape.steps ? { type: 'criteria-checked', ok: true } : ok;
    const t = transition(cur, ev, shape);
    assert.ok(t.ok, `drive: ${cur.state} refused ${ev.type}`);
    cur = t.run;
  }
  return cur;
}

test('the table: terminal states accept nothing; every other state accepts restarted', () => {
  assert.deepEqual([...TERMINAL_RUN_STATES].sort(), ['cancelled', 'failed', 'interrupted', 'rolled-back', 'succeeded']);
  for (const s of RUN_STATES) {
    if (isTerminal(s)) assert.deepEqual(TRANSITIONS[s], {}, s);
    else assert.ok(TRANSITIONS[s].restarted, `${s} must say what happens after a restart`);
  }
});

test('every reachable run: only edges of the table, terminal runs refuse every event, and the runner can drive it to one terminal state', () => {
  for (const shape of [{ steps: 1, rollback: 0 }, { steps: 2, rollback: 0 }, { steps: 3, rollback: 2 }, { steps: 1, rollback: 1 }]) {
    const seen = new Map<string, RunRecord>();
    const queue: RunRecord[] = [initialRun()];
    while (queue.length > 0) {
      const run = queue.shift()!;
      const key = JSON.stringify(run);
      if (seen.has(key)) continue;
      seen.set(key, run);
      for (const ev of EVENTS) {
        const t = transition(run, ev, shape);
        if (isTerminal(run.state)) {
          assert.equal(t.ok, false, `a ${run.state} run accepted ${ev.type}`);
          continue;
        }
        if (!t.ok) {
          assert.doesNotMatch(t.reason, /internal/, t.reason);
          continue;
        }
        assert.ok(TRANSITIONS[run.state][ev.type]?.includes(t.run.state), `${run.state} --${ev.type}--> ${t.run.state}`);
        if (t.run.state === 'running') assert.ok(t.run.cursor <= (t.run.phase === 'steps' ? shape.steps : shape.rollback));
        queue.push(t.run);
      }
    }
    assert.ok(seen.size > 20, `explored ${seen.size} records`);
    const reached = new Set<string>();
    for (const run of seen.values()) {
      const end = drive(run, shape);
      assert.ok(isTerminal(end.state), `stuck from ${JSON.stringify(run)} at ${JSON.stringify(end)}`);
      reached.add(run.state);
      // After a restart with any onInterrupt, the driver still ends it.
      for (const onInterrupt of ['resume', 'rollback', 'fail'] as const) {
        if (isTerminal(run.state)) continue;
        const t = transition(run, { type: 'restarted', onInterrupt }, shape);
        assert.ok(t.ok);
        assert.ok(isTerminal(drive(t.run, shape).state));
      }
    }
    // A pause takes effect between steps: with one step there is no between.
    for (const s of RUN_STATES) assert.ok(reached.has(s) || (shape.rollback === 0 && s === 'rolled-back') || (shape.steps === 1 && s === 'paused'), `never reached ${s} with ${JSON.stringify(shape)}`);
  }
});

test('success: each step, then the success criteria', () => {
  const shape = { steps: 2, rollback: 1 };
  let r = apply(initialRun(), shape, { type: 'start' });
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'steps', index: 0 });
  r = apply(r.run, shape, ok);
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'steps', index: 1 });
  r = apply(r.run, shape, ok);
  assert.deepEqual(r.effect, { kind: 'check-criteria' });
  r = apply(r.run, shape, { type: 'criteria-checked', ok: true });
  assert.deepEqual(r.effect, { kind: 'finished', state: 'succeeded' });
  const failed = apply(initialRun(), shape, { type: 'start' }, ok, ok, { type: 'criteria-checked', ok: false, reason: 'cups not active' });
  assert.equal(failed.run.state, 'failed');
  assert.deepEqual(failed.run.reason, { code: 'success-criteria', message: 'cups not active' });
});

test('onFailure: abort ends failed, continue goes on, rollback runs the rollback steps in order and ends rolled-back', () => {
  const shape = { steps: 3, rollback: 2 };
  const abort = apply(initialRun(), shape, { type: 'start' }, { type: 'step-done', outcome: 'failed', onFailure: 'abort' });
  assert.equal(abort.run.state, 'failed');
  assert.equal(abort.run.reason?.code, 'step-failed');
  const timeout = apply(initialRun(), shape, { type: 'start' }, { type: 'step-done', outcome: 'timeout', onFailure: 'abort' });
  assert.equal(timeout.run.reason?.code, 'step-timeout');
  const cont = apply(initialRun(), shape, { type: 'start' }, { type: 'step-done', outcome: 'failed', onFailure: 'continue' });
  assert.deepEqual(cont.effect, { kind: 'run-step', phase: 'steps', index: 1 });
  let r = apply(initialRun(), shape, { type: 'start' }, ok, { type: 'step-done', outcome: 'failed', onFailure: 'rollback' });
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  r = apply(r.run, shape, ok);
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'rollback', index: 1 });
  // A failing rollback step with continue goes on; the rollback ends the run.
  r = apply(r.run, shape, { type: 'step-done', outcome: 'failed', onFailure: 'continue' });
  assert.deepEqual(r.effect, { kind: 'finished', state: 'rolled-back' });
  assert.equal(r.run.reason?.code, 'step-failed');
  // A failing rollback step with abort: failed, rollback-failed.
  const rf = apply(initialRun(), shape, { type: 'start' }, { type: 'step-done', outcome: 'failed', onFailure: 'rollback' }, { type: 'step-done', outcome: 'failed', onFailure: 'abort' });
  assert.deepEqual([rf.run.state, rf.run.reason?.code], ['failed', 'rollback-failed']);
  // Nothing to roll back: failed.
  assert.equal(apply(initialRun(), { steps: 1, rollback: 0 }, { type: 'start' }, { type: 'step-done', outcome: 'failed', onFailure: 'rollback' }).run.state, 'failed');
});

test('pause and resume at step boundaries; a rollback cannot be paused', () => {
  const shape = { steps: 3, rollback: 1 };
  let r = apply(initialRun(), shape, { type: 'start' }, { type: 'pause' });
  assert.equal(r.run.state, 'running', 'the running step finishes first');
  r = apply(r.run, shape, ok);
  assert.equal(r.run.state, 'paused');
  assert.deepEqual(r.effect, { kind: 'wait' });
  r = apply(r.run, shape, { type: 'pause' }, { type: 'resume' });
  assert.deepEqual([r.run.state, r.effect], ['running', { kind: 'run-step', phase: 'steps', index: 1 }]);
  // A resume before the boundary withdraws the pause.
  const withdrawn = apply(initialRun(), shape, { type: 'start' }, { type: 'pause' }, { type: 'resume' }, ok);
  assert.equal(withdrawn.run.state, 'running');
  const rb = apply(initialRun(), shape, { type: 'start' }, { type: 'step-done', outcome: 'failed', onFailure: 'rollback' });
  const t = transition(rb.run, { type: 'pause' }, shape);
  assert.equal(t.ok, false);
  assert.equal(transition(initialRun(), { type: 'pause' }, shape).ok, false);
});

test('cancel: before start, at the next boundary, from paused, or a killed command; then the rollback', () => {
  const shape = { steps: 3, rollback: 1 };
  assert.equal(apply(initialRun(), shape, { type: 'cancel' }).run.state, 'cancelled');
  let r = apply(initialRun(), shape, { type: 'start' }, { type: 'cancel' });
  assert.equal(r.run.state, 'running');
  r = apply(r.run, shape, ok);
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  r = apply(r.run, shape, ok);
  assert.deepEqual([r.run.state, r.run.reason?.code], ['cancelled', 'cancelled']);
  const killed = apply(initialRun(), shape, { type: 'start' }, { type: 'cancel' }, { type: 'step-done', outcome: 'cancelled', onFailure: 'abort' });
  assert.deepEqual(killed.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  const paused = apply(initialRun(), shape, { type: 'start' }, { type: 'pause' }, ok, { type: 'cancel' });
  assert.deepEqual(paused.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  assert.equal(apply(initialRun(), { steps: 2, rollback: 0 }, { type: 'start' }, { type: 'cancel' }, ok).run.state, 'cancelled');
  assert.equal(transition(killed.run, { type: 'cancel' }, shape).ok, false, 'already rolling back');
});

test('deadline: the rollback, then failed with timeout; during the rollback it runs on', () => {
  const shape = { steps: 3, rollback: 1 };
  let r = apply(initialRun(), shape, { type: 'start' }, { type: 'deadline' });
  assert.deepEqual(r.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  r = apply(r.run, shape, { type: 'deadline' }, ok);
  assert.deepEqual([r.run.state, r.run.reason?.code], ['failed', 'timeout']);
  assert.deepEqual([apply(initialRun(), { steps: 1, rollback: 0 }, { type: 'start' }, { type: 'deadline' }).run.reason?.code], ['timeout']);
});

test('after a restart: resume at the step boundary, roll back, or interrupted, as onInterrupt says', () => {
  const shape = { steps: 3, rollback: 1 };
  const mid = apply(initialRun(), shape, { type: 'start' }, ok).run;
  const resume = apply(mid, shape, { type: 'restarted', onInterrupt: 'resume' });
  assert.deepEqual(resume.effect, { kind: 'run-step', phase: 'steps', index: 1 }, 'the step that was running runs again');
  const rollback = apply(mid, shape, { type: 'restarted', onInterrupt: 'rollback' });
  assert.deepEqual(rollback.effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  assert.deepEqual([apply(rollback.run, shape, ok).run.state, apply(rollback.run, shape, ok).run.reason?.code], ['rolled-back', 'interrupted']);
  const fail = apply(mid, shape, { type: 'restarted', onInterrupt: 'fail' });
  assert.deepEqual(fail.effect, { kind: 'finished', state: 'interrupted' });
  // A rollback in progress always goes on, whatever onInterrupt says.
  const inRollback = apply(mid, shape, { type: 'step-done', outcome: 'failed', onFailure: 'rollback' }).run;
  assert.deepEqual(apply(inRollback, shape, { type: 'restarted', onInterrupt: 'fail' }).effect, { kind: 'run-step', phase: 'rollback', index: 0 });
  // A paused run stays paused with resume; a pending one is still to start.
  const paused = apply(initialRun(), shape, { type: 'start' }, { type: 'pause' }, ok).run;
  assert.equal(apply(paused, shape, { type: 'restarted', onInterrupt: 'resume' }).run.state, 'paused');
  assert.equal(apply(paused, shape, { type: 'restarted', onInterrupt: 'fail' }).run.state, 'interrupted');
  assert.equal(apply(initialRun(), shape, { type: 'restarted', onInterrupt: 'fail' }).run.state, 'pending');
});

test('prerequisites that fail end the run before any step', () => {
  const r = apply(initialRun(), { steps: 2, rollback: 1 }, { type: 'prerequisites-failed', reason: 'disk.data.usedPct is 97' });
  assert.deepEqual([r.run.state, r.run.reason], ['failed', { code: 'prerequisites-failed', message: 'disk.data.usedPct is 97' }]);
  assert.deepEqual(r.effect, { kind: 'finished', state: 'failed' });
});
