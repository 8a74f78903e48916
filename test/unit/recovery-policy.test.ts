/**
 * The watchdog's state machine (recovery/policy.ts), driven with a fake clock: the backoff
 * schedule, the escalation order, the rollback condition, the reset after a healthy period, the
 * alarm that stays raised, and that it never gives up (also over random event sequences).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as P from '../../recovery/policy.js';
import { prng } from '../helpers/util.js';

const CFG: P.PolicyConfig = {
  backoff: { initialMs: 100, maxMs: 800, factor: 2, jitter: 0 },
  healthyMs: 5000,
  slowRetryMs: 60_000,
  escalation: { windowMs: 600_000, restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 8, rollbackWithinMs: 3_600_000 },
};

type Incident = Extract<P.Action, { kind: 'incident' }>;

/** Starts a component, then lets it exit as soon as it is started, `n` times; returns every step. */
function crashLoop(n: number, opts: { activatedAt?: number; t0?: number; cfg?: P.PolicyConfig } = {}): { s: P.PolicyState; incidents: Incident[]; actions: P.Action[]; times: number[] } {
  const cfg = opts.cfg ?? CFG;
  let now = opts.t0 ?? 1_000_000;
  let s = P.firstStart(P.initialState(now), now).next;
  const incidents: Incident[] = [];
  const actions: P.Action[] = [];
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    now += 50; // it lives 50 ms
    const tr = P.failure(s, { at: now, cause: 'exited', exitCode: 1 }, cfg, opts.activatedAt, () => 0.5);
    assert.equal(tr.next.state, 'backoff', 'after a failure the component waits to be started again');
    assert.ok(tr.next.nextStartAt !== undefined && tr.next.nextStartAt > now);
    actions.push(...tr.actions);
    incidents.push(...tr.actions.filter((a): a is Incident => a.kind === 'incident'));
    times.push(now);
    s = tr.next;
    // Nothing happens before the backoff is over...
    assert.deepEqual(P.tick(s, s.nextStartAt! - 1).actions, []);
    now = s.nextStartAt!;
    const t = P.tick(s, now);
    // ...and then it is started again.
    assert.deepEqual(t.actions, [{ kind: 'start' }]);
    s = t.next;
  }
  return { s, incidents, actions, times };
}

test('backoff: capped exponential, then the slow retry once the alarm is raised', () => {
  const { incidents } = crashLoop(12);
  assert.deepEqual(
    incidents.map((i) => i.delayMs),
    [100, 200, 400, 800, 800, 800, 800, 60_000, 60_000, 60_000, 60_000, 60_000],
  );
});

test('backoff jitter: the delay is drawn from [d * (1 - jitter/2), d]', () => {
  const cfg = { ...CFG, backoff: { ...CFG.backoff, jitter: 1 } };
  const s = P.firstStart(P.initialState(0), 0).next;
  const at = (r: number): number => (P.failure(s, { at: 10, cause: 'exited' }, cfg, undefined, () => r).actions[0] as Incident).delayMs;
  assert.equal(at(0), 50);
  assert.equal(at(1), 100);
  assert.ok(at(0.3) > 50 && at(0.3) < 100);
});

test('escalation: restart, restore-config, rollback (skipped without an activation), alarm, then slow retries, in that order', () => {
  const { incidents, actions, s } = crashLoop(11);
  assert.deepEqual(
    incidents.map((i) => i.step),
    ['restart', 'restart', 'restore-config', 'restart', 'rollback-skipped', 'restart', 'restart', 'alarm', 'slow-retry', 'slow-retry', 'slow-retry'],
  );
  assert.deepEqual(
    incidents.map((i) => i.level),
    [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3],
  );
  assert.equal(actions.filter((a) => a.kind === 'restore-config').length, 1);
  assert.equal(actions.filter((a) => a.kind === 'rollback').length, 0);
  assert.equal(actions.filter((a) => a.kind === 'raise-alarm').length, 1, 'the alarm is raised once');
  assert.ok(s.alarm, 'and stays raised');
  assert.equal(s.restarts, 11);
});

test('escalation: a loop that began after the activation rolls the release back, once', () => {
  const t0 = 5_000_000;
  const { incidents, actions } = crashLoop(11, { t0, activatedAt: t0 - 60_000 });
  assert.equal(incidents[4]?.step, 'rollback');
  const rollbacks = actions.filter((a) => a.kind === 'rollback');
  assert.equal(rollbacks.length, 1);
  assert.match((rollbacks[0] as { reason: string }).reason, /crash loop/);
});

test('rollback condition: not for a loop that began before the activation, nor long after it', () => {
  assert.equal(P.rollbackEligible(1000, 2000, CFG), false, 'the loop was there before the release');
  assert.equal(P.rollbackEligible(2000 + CFG.escalation.rollbackWithinMs + 1, 2000, CFG), false, 'long after the activation');
  assert.equal(P.rollbackEligible(2500, 2000, CFG), true);
  assert.equal(P.rollbackEligible(2500, undefined, CFG), false, 'nothing to roll back to');
  const t0 = 5_000_000;
  const { incidents } = crashLoop(6, { t0, activatedAt: t0 + 100 }); // the first failure is at t0 + 50
  assert.equal(incidents[4]?.step, 'rollback-skipped');
});

test('reset after a healthy period: backoff and escalation start over, the alarm clears, incidents resolve as of the first healthy probe', () => {
  const { s: looping } = crashLoop(9);
  assert.equal(looping.level, 3);
  let now = looping.since + 100;
  let tr = P.probeOk(looping, now, CFG);
  assert.equal(tr.next.state, 'running');
  assert.deepEqual(tr.actions, [], 'not recovered at the first probe');
  const healthyAt = now;
  now += CFG.healthyMs - 1;
  tr = P.probeOk(tr.next, now, CFG);
  assert.deepEqual(tr.actions, [], 'not before healthyMs');
  assert.ok(tr.next.alarm, 'the alarm stays until then');
  now += 1;
  tr = P.probeOk(tr.next, now, CFG);
  assert.deepEqual(
    tr.actions.map((a) => a.kind),
    ['recovered', 'clear-alarm'],
  );
  assert.equal((tr.actions[0] as { at: number }).at, healthyAt);
  assert.equal(tr.next.level, 0);
  assert.equal(tr.next.attempt, 0);
  assert.equal(tr.next.alarm, undefined);
  assert.equal(tr.next.restarts, looping.restarts, 'the restart count is the component life');
  // The next failure starts from the first backoff step again.
  const f = P.failure(tr.next, { at: now + 10, cause: 'exited' }, CFG, undefined, () => 0.5);
  assert.equal((f.actions[0] as Incident).delayMs, 100);
  assert.equal((f.actions[0] as Incident).step, 'restart');
});

test('a failure before healthyMs is over keeps the loop going', () => {
  const { s } = crashLoop(3);
  let now = s.since + 100;
  const running = P.probeOk(s, now, CFG).next;
  now += CFG.healthyMs - 100;
  const f = P.failure(P.probeOk(running, now, CFG).next, { at: now + 1, cause: 'exited' }, CFG, undefined, () => 0.5);
  const inc = f.actions[0] as Incident;
  assert.equal(inc.delayMs, 800, 'the 4th failure in a row');
  assert.equal(f.next.level, 1);
});

test('failures further apart than the window do not escalate', () => {
  const cfg = { ...CFG, escalation: { ...CFG.escalation, windowMs: 1000 } };
  let now = 0;
  let s = P.firstStart(P.initialState(now), now).next;
  for (let i = 0; i < 20; i++) {
    now += 5000;
    const tr = P.failure(s, { at: now, cause: 'exited' }, cfg, undefined, () => 0.5);
    assert.equal((tr.actions[0] as Incident).step, 'restart');
    s = P.tick(tr.next, tr.next.nextStartAt!).next;
  }
  assert.equal(s.level, 0);
});

test('a hung component is killed before it is restarted; a start timeout too', () => {
  for (const cause of ['hung', 'start-timeout'] as const) {
    const s = P.firstStart(P.initialState(0), 0).next;
    const tr = P.failure(s, { at: 10, cause }, CFG, undefined);
    assert.deepEqual(tr.actions[1], { kind: 'kill', hung: true });
  }
  const s = P.firstStart(P.initialState(0), 0).next;
  assert.ok(!P.failure(s, { at: 10, cause: 'exited' }, CFG, undefined).actions.some((a) => a.kind === 'kill'), 'an exited one is not');
});

test('a requested restart is not a failure', () => {
  const { s } = crashLoop(2);
  const running = P.probeOk(s, s.since + 10, CFG).next;
  const tr = P.requested(running, s.since + 20);
  assert.deepEqual(tr.actions, [{ kind: 'kill', hung: false }, { kind: 'start' }]);
  assert.equal(tr.next.attempt, running.attempt);
  assert.equal(tr.next.level, running.level);
  assert.equal(tr.next.restarts, running.restarts + 1);
  assert.equal(tr.next.state, 'starting');
});

test('failures while waiting in backoff (a late exit report) change nothing', () => {
  const { s } = crashLoop(1);
  const b = P.failure(s, { at: s.since + 1, cause: 'exited' }, CFG, undefined).next;
  assert.deepEqual(P.failure(b, { at: b.since + 1, cause: 'exited' }, CFG, undefined), { next: b, actions: [] });
});

test('persisted state: parsed back, garbage refused', () => {
  const { s } = crashLoop(9);
  const stored = JSON.parse(JSON.stringify(s)) as unknown;
  assert.deepEqual(P.parseState(stored), stored);
  assert.equal(P.parseState({ state: 'dancing' }), undefined);
  assert.equal(P.parseState(null), undefined);
  assert.equal(P.parseState({ ...s, level: 7 }), undefined);
});

test('random event sequences: never gives up, one level step per failure, the alarm exactly at level 3', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const rnd = prng(seed);
    let now = 0;
    let s = P.firstStart(P.initialState(now), now).next;
    const activatedAt = rnd() < 0.5 ? 0 : undefined;
    for (let i = 0; i < 200; i++) {
      now += Math.floor(rnd() * 3000);
      const before = s;
      const r = rnd();
      const tr =
        r < 0.4
          ? P.failure(s, { at: now, cause: rnd() < 0.5 ? 'exited' : 'hung' }, CFG, activatedAt, rnd)
          : r < 0.8
            ? P.probeOk(s, now, CFG)
            : r < 0.95
              ? P.tick(s, now)
              : P.requested(s, now);
      s = tr.next;
      const why = `seed ${seed} step ${i}: ${JSON.stringify(before)} -> ${JSON.stringify(s)}`;
      assert.notEqual(s.state, 'stopped', why);
      if (s.state === 'backoff') assert.ok(s.nextStartAt !== undefined, why);
      assert.ok(s.level === before.level || s.level === before.level + 1 || s.level === 0, why);
      if (s.level === 0 && before.level > 0) assert.ok(tr.actions.every((a) => a.kind !== 'incident'), `only a healthy period lowers the level: ${why}`);
      assert.equal(s.alarm !== undefined, s.level === 3, why);
      const raised = tr.actions.filter((a) => a.kind === 'raise-alarm').length;
      assert.equal(raised, before.level < 3 && s.level === 3 ? 1 : 0, why);
    }
  }
});
