import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAfterRestart, type UpdateData } from '../../ota/updater.js';
import { TrialGate, type GateOutcome } from '../../ota/trial-gate.js';
import { activate, beginInstall, commit, failTrial, guardStart, initSlots, loadSlots, markVerified, saveSlots, type SlotsFile } from '../../ota/slots.js';
import type { Clock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';

const NOW = new Date('2026-11-25T10:00:00Z');

function installed(): SlotsFile {
  const root = mkdtempSync(join(tmpdir(), 'ota-'));
  let s = initSlots(root, { version: '1.0.0' }, NOW);
  s = beginInstall(s, 'B', { version: '1.1.0', updateId: 'u1' }, NOW);
  return markVerified(s, 'B', NOW);
}

const data = (phase: UpdateData['phase']): UpdateData => ({ phase, fromSlot: 'A', toSlot: 'B', fromVersion: '1.0.0', toVersion: '1.1.0' });

test('after a restart the phase and slots.json say what happened', () => {
  const verified = installed();
  const trial = activate(verified, 'B', NOW);
  assert.deepEqual(resolveAfterRestart(data('installing'), verified, 'A'), { kind: 'install-interrupted' });
  // Cut after the phase was saved but before the pointer moved: nothing was activated.
  assert.deepEqual(resolveAfterRestart(data('activated'), verified, 'A'), { kind: 'install-interrupted' });
  assert.deepEqual(resolveAfterRestart(data('activated'), trial, 'B'), { kind: 'gate' });
  const done = resolveAfterRestart(data('activated'), commit(trial, NOW), 'B');
  assert.deepEqual(done, { kind: 'done', result: { fromVersion: '1.0.0', toVersion: '1.1.0', slot: 'B', rolledBack: false } });
  const failed = resolveAfterRestart(data('activated'), failTrial(trial, 'health gate failed: x', NOW), 'A');
  assert.deepEqual(failed, { kind: 'rolled-back', reason: '1.1.0: health gate failed: x', result: { fromVersion: '1.0.0', toVersion: '1.1.0', slot: 'A', rolledBack: true } });
  // The guard gave up on the trial (it crashed at start three times).
  let s = trial;
  for (let i = 0; i < 4; i++) s = guardStart(s, 3, NOW).next;
  const r = resolveAfterRestart(data('activated'), s, 'A');
  assert.equal(r.kind, 'rolled-back');
  if (r.kind === 'rolled-back') assert.match(r.reason, /1\.1\.0 did not come up: it crashed or hung.*slot A \(trial-starts-exceeded\)/);
});

/** A clock the test moves by hand; intervals fire as time passes. */
function manualClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  const timers = new Map<number, { at: number; every: number; fn: () => void }>();
  let next = 1;
  const add = (fn: () => void, ms: number, every: number): NodeJS.Timeout => {
    const id = next++;
    timers.set(id, { at: now + ms, every, fn });
    return id as unknown as NodeJS.Timeout;
  };
  const clear = (t: NodeJS.Timeout | undefined): void => {
    timers.delete(t as unknown as number);
  };
  return {
    now: () => now,
    setTimeout: (fn, ms) => add(fn, ms, 0),
    setInterval: (fn, ms) => add(fn, ms, ms),
    clearTimeout: clear,
    clearInterval: clear,
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [id, t] = due;
        now = t.at;
        if (t.every > 0) t.at += t.every;
        else timers.delete(id);
        t.fn();
      }
      now = end;
    },
  };
}

async function gateOn(health: () => boolean, advanceMs: number): Promise<{ outcome: GateOutcome | 'pending'; s: SlotsFile; restarted: boolean }> {
  const root = mkdtempSync(join(tmpdir(), 'gate-'));
  let s = initSlots(root, { version: '1.0.0' }, NOW);
  s = activate(markVerified(beginInstall(s, 'B', { version: '1.1.0' }, NOW), 'B', NOW), 'B', NOW);
  saveSlots(root, s);
  const clock = manualClock();
  let restarted = false;
  const gate = new TrialGate({
    root,
    runningSlot: 'B',
    stableMs: 5000,
    timeoutMs: 20_000,
    healthy: () => (health() ? { ok: true } : { ok: false, why: 'not connected to the WMS broker' }),
    restart: () => (restarted = true),
    clock,
    logger: silentLogger(),
    pollMs: 500,
  });
  assert.equal(gate.isTrial(), true);
  await gate.start();
  clock.advance(advanceMs);
  const outcome: GateOutcome | 'pending' = await Promise.race([gate.outcome, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 50))]);
  await gate.stop();
  // Stopping settles an undecided gate, so nothing waits for it through a shutdown.
  assert.equal(await gate.outcome, outcome === 'pending' ? 'stopped' : outcome);
  return { outcome, s: loadSlots(root), restarted };
}

test('the trial gate commits after stableMs of health without a break', async () => {
  let t = 0;
  // Healthy, then a blip at 3 s that restarts the stable period, then healthy for good.
  const r = await gateOn(() => ++t !== 6, 12_000);
  assert.equal(r.outcome, 'committed');
  assert.equal(r.s.slots.B.state, 'committed');
  assert.equal(r.s.active, 'B');
  assert.equal(r.restarted, false);
});

test('the trial gate fails, persists the rollback and asks for a restart when never healthy', async () => {
  const r = await gateOn(() => false, 25_000);
  assert.equal(r.outcome, 'failed');
  assert.equal(r.s.active, 'A');
  assert.equal(r.s.slots.B.state, 'bad');
  assert.match(r.s.slots.B.reason ?? '', /not connected/);
  assert.equal(r.restarted, true);
});

test('the trial gate does not decide before its time', async () => {
  const r = await gateOn(() => false, 10_000);
  assert.equal(r.outcome, 'pending');
  assert.equal(r.s.slots.B.state, 'trial');
});
