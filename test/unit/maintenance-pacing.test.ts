/**
 * The runner's CPU budget (maintenance.maxCpuPct, maintenance/runner.ts pace()): with a fake
 * clock and a fake CPU source, a run whose steps burn CPU is paced (between steps, and inside an
 * action through ctx.pace()) until the CPU over the run is at most the budget; an idle run is
 * not delayed; a dry run is not paced; a cancel is not held up by the pacing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import type { ActionImpls } from '../../maintenance/actions.js';
import { MAINTENANCE_MIGRATIONS, RunStore } from '../../maintenance/run-store.js';
import { Runner, type RunEnd } from '../../maintenance/runner.js';
import { procedureSchema } from '../../maintenance/schema.js';

interface Fake {
  runner: Runner;
  /** Virtual time (ms) and CPU (ms) the test moves. */
  t: { now: number; cpu: number; slept: number };
}

function setup(actions: (t: Fake['t']) => ActionImpls, maxCpuPct = 25): Fake {
  const db = openDatabase(join(mkdtempSync(join(tmpdir(), 'pacing-')), 'm.db'), { migrations: [MAINTENANCE_MIGRATIONS] });
  const t = { now: 1_000_000, cpu: 50_000, slept: 0 };
  const clock: Clock = { ...systemClock, now: () => t.now };
  const runner = new Runner({
    store: new RunStore(db),
    clock,
    logger: silentLogger(),
    actions: actions(t),
    metrics: async () => ({}),
    snapshot: async () => ({}),
    event: () => undefined,
    limits: { maxCpuPct },
    cpu: {
      usedMs: () => t.cpu,
      sleep: async (ms, signal) => {
        if (signal.aborted) return;
        t.now += ms;
        t.slept += ms;
        await new Promise((r) => setImmediate(r));
      },
    },
  });
  return { runner, t };
}

let n = 0;
const run = (f: Fake, steps: unknown[], dryRun = false, signal = new AbortController().signal): Promise<RunEnd> =>
  f.runner.run(
    { runId: `p${++n}`, procedure: procedureSchema.parse({ id: 'p', name: 'p', steps }), definitionSha256: 'x'.repeat(64), file: '/p.yaml', params: {}, dryRun, trigger: 'local', startedBy: 'test' },
    { signal, progress: () => undefined },
  );
const cpuOf = (e: RunEnd): { maxCpuPct: number; cpuPct: number; pacedMs: number } => e.report.cpu as never;

test('a run whose steps burn CPU is paced to at most the budget over its wall time', async () => {
  // Each step: 200 ms of wall time, 180 ms of CPU (90 % of a core).
  const f = setup((t) => ({
    'disk-space': async () => {
      t.now += 200;
      t.cpu += 180;
      return { ok: true, message: 'busy' };
    },
  }));
  const start = f.t.now;
  const cpu0 = f.t.cpu;
  const e = await run(f, [1, 2, 3, 4, 5].map((i) => ({ id: `s${i}`, type: 'action', action: 'disk-space' })));
  assert.equal(e.state, 'succeeded');
  const share = ((f.t.cpu - cpu0) * 100) / (f.t.now - start);
  assert.ok(share <= 25.5, `CPU over the run ${share} % (budget 25 %)`);
  assert.ok(f.t.slept > 0, 'it slept');
  assert.equal(cpuOf(e).maxCpuPct, 25);
  assert.ok(cpuOf(e).cpuPct <= 25.5, JSON.stringify(cpuOf(e)));
  assert.equal(cpuOf(e).pacedMs, f.t.slept);
});

test('an action paces itself inside a long loop through ctx.pace()', async () => {
  let worst = 0;
  const f = setup((t) => ({
    'files-cleanup': async (_a, ctx) => {
      const s0 = t.now;
      const c0 = t.cpu;
      for (let i = 0; i < 50; i++) {
        t.now += 10;
        t.cpu += 10; // a whole core
        await ctx.pace?.();
        worst = Math.max(worst, ((t.cpu - c0) * 100) / (t.now - s0));
      }
      return { ok: true, message: 'cleaned' };
    },
  }));
  const e = await run(f, [{ id: 'c', type: 'action', action: 'files-cleanup', with: {} }]);
  assert.equal(e.state, 'succeeded');
  assert.ok(worst <= 26, `the share inside the step stays at the budget after each item: ${worst} %`);
  assert.ok(cpuOf(e).cpuPct <= 25.5, JSON.stringify(cpuOf(e)));
});

test('an idle run is not delayed, and a dry run is not paced', async () => {
  const f = setup((t) => ({
    'disk-space': async () => {
      t.now += 1000;
      t.cpu += 50; // 5 %
      return { ok: true, message: 'idle' };
    },
  }));
  const e = await run(f, [1, 2, 3].map((i) => ({ id: `s${i}`, type: 'action', action: 'disk-space' })));
  assert.equal(e.state, 'succeeded');
  assert.equal(f.t.slept, 0, 'no pacing under the budget');
  assert.equal(cpuOf(e).pacedMs, 0);

  const g = setup((t) => ({
    'disk-space': async () => {
      t.cpu += 5000;
      return { ok: true, message: 'busy' };
    },
  }));
  const d = await run(g, [1, 2].map((i) => ({ id: `s${i}`, type: 'action', action: 'disk-space' })), true);
  assert.equal(d.state, 'succeeded');
  assert.equal(g.t.slept, 0, 'a dry run is not paced');
  assert.equal(d.report.cpu, undefined);
});

test('a cancel while the run is being paced ends the pacing and the run', async () => {
  const ctl = new AbortController();
  let sleeps = 0;
  const f = setup((t) => ({
    'disk-space': async () => {
      t.cpu += 100_000; // owes 400 s
      return { ok: true, message: 'very busy' };
    },
  }));
  // Cancel during the pacing after the first step.
  const orig = (f.runner as unknown as { d: { cpu: { sleep(ms: number, s: AbortSignal): Promise<void> } } }).d.cpu;
  const sleep = orig.sleep.bind(orig);
  orig.sleep = async (ms, s) => {
    if (++sleeps === 3) ctl.abort();
    await sleep(ms, s);
  };
  const e = await run(f, [1, 2, 3].map((i) => ({ id: `s${i}`, type: 'action', action: 'disk-space' })), false, ctl.signal);
  assert.equal(e.state, 'cancelled');
  assert.ok(sleeps < 10, `the pacing stopped at the cancel (${sleeps} sleeps)`);
});
