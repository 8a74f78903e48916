/**
 * The boot guard (ota/boot-guard.ts) as a real process, installed with installGuard into a temp
 * install root and run from ROOT/guard (only GUARD_FILES there: it needs nothing else), starting
 * fake releases (test/integration/guard-fixture.ts) that record each start in a marker file.
 * Real signals, real kill -9, real files; conditions are polled with deadlines.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkInvariants, loadSlots, saveSlots } from '../../ota/slots.js';
import { waitFor } from '../helpers/util.js';
import { alive, cleanup, events, makeRoot, startGuard, starts, trialB, type Fixture, type GuardProcess } from './guard-fixture.js';

const fixtures: Fixture[] = [];
const guards: GuardProcess[] = [];
const FAST = ['--backoff-min-ms', '50', '--backoff-max-ms', '200', '--poll-ms', '50'];

function root(a: Parameters<typeof makeRoot>[0], b?: Parameters<typeof makeRoot>[1]): Fixture {
  const fx = makeRoot(a, b);
  fixtures.push(fx);
  return fx;
}

function guard(fx: Fixture, args: string[], env?: NodeJS.ProcessEnv): GuardProcess {
  const g = startGuard(fx, args, env);
  guards.push(g);
  return g;
}

afterEach(async () => {
  await cleanup(fixtures.splice(0), guards.splice(0));
});

test('(a) a committed slot runs with the guard\'s env; SIGTERM stops the agent and the guard exits 0', async () => {
  const fx = root('run');
  const g = guard(fx, ['--node-flag', '--max-semi-space-size=1'], { WATCHDOG_PID: '1', WATCHDOG_USEC: '30000000' });
  await g.until(() => starts(fx, 'A').length === 1, 'slot A to start');
  const a = starts(fx, 'A')[0]!;
  assert.equal(a.guard, '1');
  assert.equal(a.root, fx.root);
  assert.deepEqual(a.args, ['run', '--config', '/nonexistent/config.yaml']);
  assert.deepEqual(a.execArgv, ['--max-semi-space-size=1']);
  assert.equal(a.watchdogPid, null, 'WATCHDOG_PID names the guard: the agent must not see it');
  assert.equal(a.watchdogUsec, '30000000');
  assert.equal(g.logged('start')[0]?.state, 'committed');
  g.proc.kill('SIGTERM');
  assert.deepEqual(await g.exited, { code: 0, signal: null });
  assert.ok(events(fx).some((e) => e.ev === 'stopped' && e.pid === a.pid), 'the agent got the SIGTERM');
  assert.ok(!alive(a.pid));
  assert.equal(g.logged('stopped')[0]?.status, 0);
});

test('(b) a trial that exits 1 at once: after 3 starts it is bad and the committed slot runs', async () => {
  const fx = root('run', 'exit1');
  trialB(fx.root, loadSlots(fx.root));
  const g = guard(fx, ['--max-trial-starts', '3', ...FAST]);
  await g.until(() => starts(fx, 'A').length === 1, 'the rollback to slot A');
  assert.equal(starts(fx, 'B').length, 3);
  const s = loadSlots(fx.root);
  assert.equal(s.active, 'A');
  assert.deepEqual([s.slots.A.state, s.slots.B.state, s.slots.B.reason], ['committed', 'bad', 'trial-starts-exceeded']);
  assert.deepEqual(checkInvariants(s), []);
  assert.deepEqual(g.logged('rolled-back').map((l) => [l.from, l.slot, l.reason]), [['B', 'A', 'trial-starts-exceeded']]);
  assert.deepEqual(g.logged('child-exit').map((l) => [l.slot, l.code, l.reason]), [['B', 1, 'crashed'], ['B', 1, 'crashed'], ['B', 1, 'crashed']]);
  assert.ok(alive(starts(fx, 'A')[0]!.pid), 'slot A keeps running');
});

test('(c) a trial that hangs is stopped after the trial timeout each time, then rolled back', async () => {
  const fx = root('run', 'hang');
  trialB(fx.root, loadSlots(fx.root));
  const g = guard(fx, ['--max-trial-starts', '3', '--trial-timeout-ms', '1500', '--kill-grace-ms', '300', ...FAST]);
  await g.until(() => starts(fx, 'A').length === 1, 'the rollback to slot A', 20_000);
  const b = starts(fx, 'B');
  assert.equal(b.length, 3);
  const exits = g.logged('child-exit');
  assert.deepEqual(exits.map((l) => [l.slot, l.reason, l.signal]), Array(3).fill(['B', 'trial-timeout', 'SIGKILL']));
  for (const l of exits) assert.ok((l.ranMs as number) >= 1500, `stopped after ${String(l.ranMs)} ms, before the trial timeout`);
  assert.equal(g.logged('kill').length, 3, 'SIGTERM was ignored, so each got SIGKILL after the grace period');
  assert.equal(events(fx).filter((e) => e.ev === 'ignored-sigterm').length, 3, 'each got SIGTERM first');
  for (const e of b) assert.ok(!alive(e.pid));
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.B.state], ['A', 'bad']);
});

test('(d) a trial that commits itself keeps running past the trial timeout and stays active', async () => {
  const fx = root('run', 'commit');
  trialB(fx.root, loadSlots(fx.root));
  const g = guard(fx, ['--max-trial-starts', '3', '--trial-timeout-ms', '1500', ...FAST]);
  await g.until(() => g.logged('trial-committed').length === 1, 'the guard to see the commit');
  const b = starts(fx, 'B');
  assert.equal(b.length, 1);
  // Proving an absence (no stop at the trial timeout) takes waiting past it.
  const spawnedAt = Date.parse(g.logged('spawned')[0]!.time as string);
  assert.ok(Number.isFinite(spawnedAt), 'the guard logs an ISO time');
  await new Promise((r) => setTimeout(r, Math.max(0, spawnedAt + 1500 + 1000 - Date.now())));
  assert.ok(alive(b[0]!.pid), 'the committed agent was stopped');
  assert.equal(starts(fx).length, 1);
  assert.deepEqual(g.logged('child-exit'), []);
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.B.state, s.highestSecurityVersion], ['B', 'committed', 2]);
  assert.deepEqual(checkInvariants(s), []);
});

test('(e) exit 75 restarts the agent at once, without the backoff', async () => {
  const fx = root('exit75-once');
  // A backoff of a minute: a restart within the deadline below cannot have waited for it.
  const g = guard(fx, ['--backoff-min-ms', '60000', '--backoff-max-ms', '60000']);
  await g.until(() => starts(fx, 'A').length === 2, 'the restart');
  assert.deepEqual(g.logged('child-exit').map((l) => [l.code, l.reason, l.delayMs]), [[75, 'restart-requested', 0]]);
});

test('(f) a crashing agent is restarted with a growing, capped backoff, without giving up', async () => {
  const fx = root('crash');
  const g = guard(fx, ['--backoff-min-ms', '100', '--backoff-max-ms', '400']);
  await g.until(() => starts(fx, 'A').length >= 6, 'six starts');
  const delays = g.logged('child-exit').map((l) => {
    assert.deepEqual([l.code, l.reason], [1, 'crashed']);
    return l.delayMs as number;
  });
  assert.ok(delays.length >= 5);
  assert.ok(delays[0]! >= 100 && delays[0]! <= 125, `first delay ${delays[0]}`);
  assert.ok(delays[1]! >= 200 && delays[1]! <= 250, `second delay ${delays[1]}`);
  for (const d of delays.slice(2)) assert.equal(d, 400, 'capped');
  assert.equal(g.exitCode(), undefined, 'the guard keeps going');
});

test('(g) kill -9 of the guard during a trial: the next guard continues the persisted start count', async () => {
  const fx = root('run', 'run');
  trialB(fx.root, loadSlots(fx.root));
  const args = ['--max-trial-starts', '3', '--trial-timeout-ms', '60000', ...FAST];
  for (let i = 1; i <= 3; i++) {
    const g = guard(fx, args);
    await g.until(() => starts(fx, 'B').length === i, `start ${i} of slot B`);
    const s = loadSlots(fx.root);
    assert.deepEqual([s.active, s.slots.B.state, s.slots.B.trialStarts], ['B', 'trial', i], 'persisted before the spawn');
    g.proc.kill('SIGKILL');
    await g.exited;
    // systemd would kill the rest of the cgroup; here the orphaned agent goes the same way.
    const pid = starts(fx, 'B')[i - 1]!.pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !alive(pid), { what: 'the orphaned agent to die' });
  }
  const g = guard(fx, args);
  await g.until(() => starts(fx, 'A').length === 1, 'the rollback to slot A');
  assert.equal(starts(fx, 'B').length, 3, 'three trial starts in all, across four guard processes');
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.B.state], ['A', 'bad']);
  assert.deepEqual(checkInvariants(s), []);
});

/** Both slots committed with securityVersions `a` and `b`; slot B active (an update long since committed). */
function committedBoth(fx: Fixture, a: number, b: number): void {
  const s = loadSlots(fx.root);
  const at = new Date().toISOString();
  saveSlots(fx.root, {
    ...s,
    active: 'B',
    slots: { A: { ...s.slots.A, securityVersion: a }, B: { state: 'committed', version: '1.1.0', securityVersion: b, installedAt: at, committedAt: at } },
    highestSecurityVersion: Math.max(a, b),
  });
}

const COMMITTED = ['--max-committed-failures', '3', '--committed-failure-window-ms', '120000'];

test('(h) a committed slot that fails at each start: after the bound the guard falls back to the other committed slot and says why', async () => {
  const fx = root('run', 'crash');
  committedBoth(fx, 1, 1);
  // The default bound (5 failed starts within 5 minutes): no --max-committed-failures.
  const g = guard(fx, FAST);
  await g.until(() => starts(fx, 'A').length === 1, 'the fallback to slot A');
  assert.equal(starts(fx, 'B').length, 5, 'five failed starts of slot B, then slot A');
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state, s.slots.B.reason], ['A', 'committed', 'bad', 'committed-starts-exceeded']);
  assert.deepEqual(checkInvariants(s), []);
  const last = s.history?.at(-1);
  assert.deepEqual([last?.event, last?.slot, last?.version], ['guard-rollback', 'B', '1.1.0']);
  assert.match(last?.reason ?? '', /^committed-starts-exceeded \(5 failed starts since /);
  assert.deepEqual(g.logged('rolled-back').map((l) => [l.from, l.slot, l.reason]), [['B', 'A', 'committed-starts-exceeded']]);
  assert.deepEqual(g.logged('child-exit').map((l) => [l.slot, l.failedStart]), Array(5).fill(['B', true]));
  assert.ok(alive(starts(fx, 'A')[0]!.pid), 'slot A keeps running');
});

test('(i) a committed slot that fails at each start with no usable fallback (below the security floor) is retried for ever', async () => {
  const fx = root('run', 'crash');
  committedBoth(fx, 1, 2);
  const g = guard(fx, [...COMMITTED, '--backoff-min-ms', '50', '--backoff-max-ms', '100', '--poll-ms', '50']);
  await g.until(() => starts(fx, 'B').length >= 6, 'six starts of slot B');
  assert.deepEqual(starts(fx, 'A'), [], 'slot A is below the security floor: never started');
  assert.ok(g.logged('no-fallback').length >= 2, 'the guard says why it does not fall back');
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['B', 'committed', 'committed']);
  assert.ok((s.slots.B.failedStarts ?? 0) >= 5, JSON.stringify(s.slots.B));
  assert.deepEqual(checkInvariants(s), []);
  assert.equal(g.exitCode(), undefined, 'the guard keeps going');
});

test('(j) kill -9 of the guard while a committed slot fails: the next guard continues the persisted count', async () => {
  const fx = root('run', 'crash');
  committedBoth(fx, 1, 1);
  const first = guard(fx, [...COMMITTED, ...FAST]);
  await first.until(() => (loadSlots(fx.root).slots.B.failedStarts ?? 0) >= 2, 'two failed starts persisted');
  first.proc.kill('SIGKILL');
  await first.exited;
  const before = starts(fx, 'B').length;
  const g = guard(fx, [...COMMITTED, ...FAST]);
  await g.until(() => starts(fx, 'A').length === 1, 'the fallback to slot A');
  assert.ok(starts(fx, 'B').length - before <= 1, `the second guard started slot B ${starts(fx, 'B').length - before} times: it did not continue the count`);
  assert.equal(loadSlots(fx.root).slots.B.state, 'bad');
});

test('(k) a trial slot whose own runtime is not a program: its starts fail, it is bad, and the committed slot runs on the guard\'s', async () => {
  const fx = root('run', 'run');
  // What a corrupt runtime in a self-contained release looks like: runtime/bin/node with its ELF
  // header and program headers overwritten (as test/integration/release.test.ts ships one).
  const node = join(fx.root, 'slots', 'B', 'runtime', 'bin', 'node');
  mkdirSync(join(node, '..'), { recursive: true });
  writeFileSync(node, Buffer.alloc(64 * 1024, 0x5a), { mode: 0o755 });
  trialB(fx.root, loadSlots(fx.root));
  const g = guard(fx, ['--max-trial-starts', '3', ...FAST]);
  await g.until(() => starts(fx, 'A').length === 1, 'the rollback to slot A');
  assert.equal(starts(fx, 'B').length, 0, 'slot B\'s code never ran: its runtime does not start');
  const s = loadSlots(fx.root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state, s.slots.B.reason], ['A', 'committed', 'bad', 'trial-starts-exceeded']);
  assert.deepEqual(checkInvariants(s), []);
  // (The shell's complaint about the binary shares the guard's stderr, so a log line can be torn:
  // every start of B that was logged, not how many.)
  const spawnedB = g.logged('spawned').filter((l) => l.slot === 'B');
  assert.ok(spawnedB.length > 0 && spawnedB.every((l) => l.node === node), `each start of B was on slot B's own runtime: ${JSON.stringify(spawnedB)}`);
  assert.deepEqual(g.logged('rolled-back').map((l) => [l.from, l.slot, l.reason]), [['B', 'A', 'trial-starts-exceeded']]);
  assert.ok(alive(starts(fx, 'A')[0]!.pid), 'slot A keeps running, on the guard\'s Node.js (it has no runtime of its own)');
  assert.equal(g.proc.exitCode, null, 'the guard itself is untouched');
});

test('slots.json missing at the first start: exit 78, not installed', async () => {
  const fx = root('run');
  rmSync(join(fx.root, 'slots.json'));
  const g = guard(fx, FAST);
  assert.deepEqual(await g.exited, { code: 78, signal: null });
  assert.match(String(g.logged('not-installed')[0]?.msg), /not installed/);
  assert.deepEqual(starts(fx), []);
});

test('a corrupt slots.json is retried with a backoff until it is readable', async () => {
  const fx = root('run');
  const good = loadSlots(fx.root);
  writeFileSync(join(fx.root, 'slots.json'), '{"format": 1, "act');
  const g = guard(fx, FAST);
  await g.until(() => g.logged('slots-unusable').length >= 3, 'three retries');
  assert.equal(g.logged('slots-unusable')[0]?.code, 'slots-corrupt');
  assert.deepEqual(starts(fx), []);
  writeFileSync(join(fx.root, 'slots.json'), JSON.stringify(good));
  await g.until(() => starts(fx, 'A').length === 1, 'slot A to start once the file is good');
});
