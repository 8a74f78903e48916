/**
 * The A/B slot state machine (ota/slots.ts): every transition, every illegal one with its code,
 * and random sequences of transitions (seeded, so a failure replays) that must keep the
 * invariants written at the top of ota/slots.ts after every step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  abortInstall,
  activate,
  beginInstall,
  checkInvariants,
  clearFailedStarts,
  commit,
  failTrial,
  guardStart,
  HISTORY_MAX,
  initSlots,
  loadSlots,
  markVerified,
  parseSlots,
  recordFailedStart,
  rollback,
  saveSlots,
  SLOTS_CODES,
  SlotsError,
  type SlotName,
  type SlotsFile,
} from '../../ota/slots.js';
import { tempDir } from '../helpers/util.js';
import { prng } from '../helpers/util.js';

const NOW = new Date('2026-11-22T10:00:00Z');
const REL = { version: '1.1.0', securityVersion: 2, updateId: 'u-1' };

function fresh(): SlotsFile {
  return {
    format: 1,
    active: 'A',
    slots: { A: { state: 'committed', version: '1.0.0', securityVersion: 1 }, B: { state: 'empty' } },
    highestSecurityVersion: 1,
  };
}

/** A with 1.0.0 committed, B with 1.1.0 on trial (activated, not yet started). */
function inTrial(): SlotsFile {
  return activate(markVerified(beginInstall(fresh(), 'B', REL, NOW), 'B', NOW), 'B', NOW);
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SlotsError, `not a SlotsError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

test('the install path: beginInstall -> markVerified -> activate -> guardStart -> commit', () => {
  const s0 = fresh();
  const s1 = beginInstall(s0, 'B', REL, NOW);
  assert.deepEqual(s1.slots.B, { state: 'installing', version: '1.1.0', securityVersion: 2, updateId: 'u-1' });
  assert.equal(s1.active, 'A');
  assert.deepEqual(s1.slots.A, s0.slots.A, 'the active slot is untouched');
  assert.deepEqual(s0, fresh(), 'transitions are pure');
  const s2 = markVerified(s1, 'B', NOW);
  assert.equal(s2.slots.B.verified, true);
  assert.equal(s2.slots.B.installedAt, NOW.toISOString());
  const s3 = activate(s2, 'B', NOW);
  assert.equal(s3.active, 'B', 'state and pointer change in one value (one write)');
  assert.equal(s3.slots.B.state, 'trial');
  assert.equal(s3.slots.B.trialStarts, 0);
  assert.equal(s3.slots.B.verified, undefined);
  const g = guardStart(s3, 3, NOW);
  assert.equal(g.action, 'run');
  assert.equal(g.next.slots.B.trialStarts, 1);
  const s4 = commit(g.next, NOW);
  assert.equal(s4.slots.B.state, 'committed');
  assert.equal(s4.slots.B.committedAt, NOW.toISOString());
  assert.equal(s4.slots.B.trialStarts, undefined);
  assert.equal(s4.highestSecurityVersion, 2);
  assert.deepEqual(s4.history?.map((h) => h.event), ['install', 'verified', 'activate', 'commit']);
  for (const s of [s1, s2, s3, g.next, s4]) assert.deepEqual(checkInvariants(s), []);
});

test('guardStart: a committed slot runs unchanged; a trial slot gets maxTrialStarts starts, then the committed one', () => {
  const c = fresh();
  assert.deepEqual(guardStart(c, 3, NOW), { next: c, action: 'run' });
  let s = inTrial();
  for (let i = 1; i <= 3; i++) {
    const g = guardStart(s, 3, NOW);
    assert.equal(g.action, 'run');
    assert.equal(g.next.slots.B.trialStarts, i);
    s = g.next;
  }
  const g = guardStart(s, 3, NOW);
  assert.equal(g.action, 'rolled-back');
  assert.equal(g.reason, 'trial-starts-exceeded');
  assert.equal(g.next.active, 'A');
  assert.equal(g.next.slots.B.state, 'bad');
  assert.equal(g.next.slots.B.reason, 'trial-starts-exceeded');
  assert.deepEqual(checkInvariants(g.next), []);
});

test('guardStart repairs an inconsistent file: a non-runnable active slot is abandoned for the committed one', () => {
  const s: SlotsFile = { ...fresh(), active: 'B', slots: { A: { state: 'committed', version: '1.0.0' }, B: { state: 'installing', version: '1.1.0', verified: true } } };
  const g = guardStart(s, 3, NOW);
  assert.equal(g.action, 'rolled-back');
  assert.equal(g.reason, 'active-not-runnable');
  assert.equal(g.next.active, 'A');
  assert.equal(g.next.slots.B.state, 'bad');
  assert.deepEqual(checkInvariants(g.next), []);
  // A trial without a fallback keeps running: there is nothing better to boot.
  const lone: SlotsFile = { ...fresh(), slots: { A: { state: 'trial', version: '1', trialStarts: 9 }, B: { state: 'bad' } } };
  assert.deepEqual([guardStart(lone, 3, NOW).action, guardStart(lone, 3, NOW).reason], ['run', 'no-fallback']);
  const none: SlotsFile = { ...fresh(), slots: { A: { state: 'bad' }, B: { state: 'empty' } } };
  throwsCode(() => guardStart(none, 3, NOW), 'slots-corrupt');
});

test('failTrial: the trial slot is bad, the committed one active, in one step', () => {
  const s = failTrial(guardStart(inTrial(), 3, NOW).next, 'health-check failed: broker unreachable', NOW);
  assert.equal(s.active, 'A');
  assert.deepEqual([s.slots.B.state, s.slots.B.reason], ['bad', 'health-check failed: broker unreachable']);
  assert.equal(s.highestSecurityVersion, 1, 'a failed trial raises nothing');
  assert.deepEqual(checkInvariants(s), []);
});

test('rollback: two committed slots switch; the security version blocks an older one', () => {
  const both = commit(inTrial(), NOW);
  const r = rollback({ ...both, highestSecurityVersion: 1, slots: { ...both.slots, B: { ...both.slots.B, securityVersion: 1 } } }, NOW);
  assert.equal(r.active, 'A');
  assert.equal(r.slots.B.state, 'committed');
  assert.equal(r.history?.at(-1)?.event, 'rollback');
  throwsCode(() => rollback(both, NOW), 'security-version');
  throwsCode(() => rollback(fresh(), NOW), 'no-rollback-target');
  throwsCode(() => rollback(inTrial(), NOW), 'no-rollback-target');
});

test('failed starts of a committed slot: counted within the window, then the other committed slot, if not below the floor', () => {
  const bound = { max: 3, windowMs: 60_000 };
  const at = (ms: number): Date => new Date(NOW.getTime() + ms);
  // B committed and active, A committed: both at securityVersion 2 (A raised to the floor).
  const c = commit(inTrial(), NOW);
  const both: SlotsFile = { ...c, slots: { ...c.slots, A: { ...c.slots.A, securityVersion: 2 } } };
  let s = recordFailedStart(both, 'B', bound, at(0));
  s = recordFailedStart(s, 'B', bound, at(1000));
  assert.deepEqual([s.slots.B.failedStarts, s.slots.B.failedSince], [2, at(0).toISOString()]);
  assert.deepEqual(guardStart(s, 3, at(1500), bound), { next: s, action: 'run' }, 'under the bound: runs');
  // A failed start after the window starts a new count.
  const late = recordFailedStart(s, 'B', bound, at(70_000));
  assert.deepEqual([late.slots.B.failedStarts, late.slots.B.failedSince], [1, at(70_000).toISOString()]);
  s = recordFailedStart(s, 'B', bound, at(2000));
  assert.deepEqual(checkInvariants(s), []);
  const d = guardStart(s, 3, at(2500), bound);
  assert.deepEqual([d.action, d.reason, d.next.active, d.next.slots.B.state, d.next.slots.B.reason], ['rolled-back', 'committed-starts-exceeded', 'A', 'bad', 'committed-starts-exceeded']);
  assert.equal(d.next.slots.B.failedStarts, undefined);
  assert.deepEqual([d.next.history?.at(-1)?.event, d.next.history?.at(-1)?.slot], ['guard-rollback', 'B']);
  assert.deepEqual(checkInvariants(d.next, s), []);
  // Without a bound (an old caller) nothing changes.
  assert.equal(guardStart(s, 3, at(2500)).action, 'run');
  // Once reached, the bound stays reached past the window, until a good run clears it.
  const floor = { ...s, slots: { ...s.slots, A: { ...s.slots.A, securityVersion: 1 } } };
  const stuck = recordFailedStart(floor, 'B', bound, at(600_000));
  assert.equal(stuck.slots.B.failedStarts, 4);
  assert.deepEqual(guardStart(stuck, 3, at(600_000), bound), { next: stuck, action: 'run', reason: 'no-fallback' }, 'A is below the security floor');
  assert.equal(clearFailedStarts(stuck, 'B').slots.B.failedStarts, undefined);
  // Only the active committed slot counts.
  assert.equal(recordFailedStart(both, 'A', bound, at(0)), both);
  assert.equal(recordFailedStart(inTrial(), 'B', bound, at(0)).slots.B.failedStarts, undefined);
});

test('abortInstall empties an installing slot', () => {
  const s = abortInstall(markVerified(beginInstall(fresh(), 'B', REL, NOW), 'B', NOW), 'B', NOW);
  assert.deepEqual(s.slots.B, { state: 'empty' });
  assert.equal(s.history?.at(-1)?.event, 'abort-install');
});

test('every illegal transition throws its code and changes nothing', () => {
  const installing = beginInstall(fresh(), 'B', REL, NOW);
  const trial = inTrial();
  const cases: [string, () => unknown, string][] = [
    ['install into the active slot', () => beginInstall(fresh(), 'A', REL, NOW), 'illegal-transition'],
    ['install while a trial runs (its fallback would be lost)', () => beginInstall(trial, 'A', REL, NOW), 'illegal-transition'],
    ['verify a slot not being installed', () => markVerified(fresh(), 'B', NOW), 'illegal-transition'],
    ['verify the active slot', () => markVerified(fresh(), 'A', NOW), 'illegal-transition'],
    ['activate an unverified slot', () => activate(installing, 'B', NOW), 'not-verified'],
    ['activate an empty slot', () => activate(fresh(), 'B', NOW), 'illegal-transition'],
    ['activate the active slot', () => activate(trial, 'B', NOW), 'illegal-transition'],
    ['commit a committed slot', () => commit(fresh(), NOW), 'illegal-transition'],
    ['fail a committed slot', () => failTrial(fresh(), 'x', NOW), 'illegal-transition'],
    ['fail a trial without a fallback', () => failTrial({ ...trial, slots: { ...trial.slots, A: { state: 'bad' } } }, 'x', NOW), 'no-rollback-target'],
    ['abort a slot not being installed', () => abortInstall(fresh(), 'B', NOW), 'illegal-transition'],
    ['abort the active slot', () => abortInstall(trial, 'B', NOW), 'illegal-transition'],
  ];
  for (const [what, fn, code] of cases) {
    const before = JSON.stringify([installing, trial]);
    throwsCode(fn, code);
    assert.equal(JSON.stringify([installing, trial]), before, what);
  }
});


test('random sequences of transitions keep every invariant (property test, seeded)', () => {
  const MAX = 3;
  const succeeded = new Map<string, number>();
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const slot = (): SlotName => pick(['A', 'B'] as const);
    const ops: [string, (s: SlotsFile) => SlotsFile][] = [
      ['beginInstall', (s) => beginInstall(s, slot(), { version: `1.${seed}.0`, securityVersion: Math.floor(rnd() * 4) }, NOW)],
      ['markVerified', (s) => markVerified(s, slot(), NOW)],
      ['activate', (s) => activate(s, slot(), NOW)],
      ['guardStart', (s) => guardStart(s, MAX, NOW).next],
      ['commit', (s) => commit(s, NOW)],
      ['failTrial', (s) => failTrial(s, 'health', NOW)],
      ['rollback', (s) => rollback(s, NOW)],
      ['abortInstall', (s) => abortInstall(s, slot(), NOW)],
    ];
    let s = fresh();
    for (let step = 0; step < 60; step++) {
      const [name, op] = pick(ops);
      const before = JSON.stringify(s);
      let next: SlotsFile;
      try {
        next = op(s);
      } catch (err) {
        assert.ok(err instanceof SlotsError && (SLOTS_CODES as readonly string[]).includes(err.code), `seed ${seed} step ${step} ${name}: ${String(err)}`);
        assert.equal(JSON.stringify(s), before, `seed ${seed} step ${step}: a failed ${name} changed its input`);
        continue;
      }
      assert.equal(JSON.stringify(s), before, `seed ${seed} step ${step}: ${name} mutated its input`);
      assert.deepEqual(checkInvariants(next, s), [], `seed ${seed} step ${step} after ${name}: ${JSON.stringify(next.slots)}`);
      if (name !== 'guardStart' && name !== 'activate' && name !== 'commit' && name !== 'failTrial' && name !== 'rollback') {
        assert.deepEqual(next.slots[s.active], s.slots[s.active], `seed ${seed}: ${name} touched the active slot`);
      }
      const act = next.slots[next.active];
      if (act.state === 'trial') assert.ok((act.trialStarts ?? 0) <= MAX, `seed ${seed}: a trial started more than ${MAX} times`);
      assert.ok((next.history?.length ?? 0) <= HISTORY_MAX);
      succeeded.set(name, (succeeded.get(name) ?? 0) + 1);
      s = next;
    }
  }
  for (const name of ['beginInstall', 'markVerified', 'activate', 'guardStart', 'commit', 'failTrial', 'rollback', 'abortInstall']) {
    assert.ok((succeeded.get(name) ?? 0) > 0, `the random walk never completed ${name}: it proves nothing about it`);
  }
});

test('initSlots, saveSlots and loadSlots: round trip, atomic, typed errors', () => {
  const root = tempDir('slots');
  throwsCode(() => loadSlots(root), 'not-installed');
  const s = initSlots(root, { version: '1.0.0', securityVersion: 2 }, NOW);
  assert.deepEqual(loadSlots(root), s);
  assert.equal(s.slots.A.state, 'committed');
  assert.equal(s.highestSecurityVersion, 2);
  throwsCode(() => initSlots(root, { version: '9.9.9' }), 'illegal-transition');
  const next = beginInstall(s, 'B', REL, NOW);
  saveSlots(root, next);
  assert.deepEqual(loadSlots(root), next);
  assert.deepEqual(readdirSync(root), ['slots.json'], 'no temp file left behind');
  writeFileSync(join(root, 'slots.json'), '{"format": 1, "active": "A",');
  throwsCode(() => loadSlots(root), 'slots-corrupt');
  assert.ok(existsSync(join(root, 'slots.json')));
});

test('parseSlots names the field that is wrong', () => {
  const good = JSON.parse(JSON.stringify(fresh())) as Record<string, unknown>;
  assert.deepEqual(parseSlots(good), fresh());
  const bad: [unknown, RegExp][] = [
    [[], /not a JSON object/],
    [{ ...good, format: 2 }, /format 2/],
    [{ ...good, active: 'C' }, /active "C"/],
    [{ ...good, highestSecurityVersion: -1 }, /highestSecurityVersion/],
    [{ ...good, slots: { A: { state: 'committed' } } }, /slots\.B: not an object/],
    [{ ...good, slots: { A: { state: 'running' }, B: { state: 'empty' } } }, /slots\.A: state "running"/],
    [{ ...good, slots: { A: { state: 'trial', trialStarts: 1.5 }, B: { state: 'empty' } } }, /trialStarts/],
    [{ ...good, history: {} }, /history/],
  ];
  for (const [raw, re] of bad) {
    assert.throws(() => parseSlots(raw), (err: unknown) => err instanceof SlotsError && err.code === 'slots-corrupt' && re.test(err.message));
  }
});
