/**
 * The scheduler in a real process with the real clock, the real catalog and the real store file
 * (test/helpers/scheduler-process.ts, a fake runner port): slots run in order and never early, a
 * slow run is never overlapped, a kill -9 and a restart neither repeat a slot nor forget the one
 * missed while it was down (it runs once after the start); then `edge-agent maintenance schedule`
 * and `edge-agent status` read it all from the store with no daemon running.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { REPO, runCli } from '../helpers/agent.js';
import { exitOf, tempDir, waitFor } from '../helpers/util.js';

const HARNESS = join(REPO, 'dist', 'test', 'helpers', 'scheduler-process.js');
const dir = tempDir('sched-proc-');
after(() => rmSync(dir, { recursive: true, force: true }));

interface Line {
  pid: number;
  ev: 'ready' | 'start' | 'end' | 'window';
  procedure?: string;
  slot?: number;
  at: number;
}

function lines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

test('real clock: on time, no overlap, kill -9 and restart neither repeat nor forget; the CLI reads it with no daemon', { timeout: 120_000 }, async () => {
  const procs = join(dir, 'procedures');
  mkdirSync(procs, { mode: 0o755 });
  chmodSync(procs, 0o755);
  const put = (id: string, schedule: Record<string, unknown>): void => {
    writeFileSync(join(procs, `${id}.yaml`), stringify({ id, name: id, steps: [{ id: 'a', type: 'log', message: 'hi' }], schedule }), { mode: 0o644 });
  };
  put('tick', { cron: '*/3 * * * * *', jitterSec: 1, catchUpSec: 30 });
  put('slow', { cron: '*/2 * * * * *' });
  const config = join(dir, 'config.yaml');
  writeFileSync(config, stringify({ gatewayId: 'gw-sched', dataDir: join(dir, 'data'), maintenance: { proceduresDir: procs, schedules: { 'maintenance-daily': { enabled: false } } } }));
  const runs = join(dir, 'runs.jsonl');
  const durations = JSON.stringify({ tick: 100, slow: 5000 });
  const startHarness = (): ChildProcess => spawn(process.execPath, [HARNESS, config, runs, durations], { stdio: ['ignore', 'inherit', 'inherit'] });
  const starts = (pid: number | undefined, procedure: string): Line[] => lines(runs).filter((l) => l.ev === 'start' && l.procedure === procedure && (pid === undefined || l.pid === pid));

  const a = startHarness();
  await waitFor(() => starts(a.pid, 'tick').length >= 3 && starts(a.pid, 'slow').length >= 2, { timeoutMs: 60_000, what: 'three tick runs and two slow runs' });
  a.kill('SIGKILL');
  await exitOf(a);
  const lastBeforeKill = Math.max(...starts(a.pid, 'tick').map((l) => l.slot ?? 0));
  // Down long enough that at least two tick slots pass with no process.
  await waitFor(() => Date.now() > lastBeforeKill + 7000, { timeoutMs: 20_000, what: 'two slots to pass while stopped' });
  const b = startHarness();
  await waitFor(() => starts(b.pid, 'tick').length >= 3, { timeoutMs: 60_000, what: 'three tick runs after the restart' });
  b.kill('SIGTERM');
  assert.equal((await exitOf(b)).code, 0);

  const all = lines(runs);
  const ready = all.find((l) => l.ev === 'ready' && l.pid === b.pid)?.at ?? 0;
  const tick = starts(undefined, 'tick');
  const slots = tick.map((l) => l.slot ?? 0);
  assert.equal(new Set(slots).size, slots.length, `no slot ran twice: ${slots.join(', ')}`);
  for (const l of tick) assert.ok(l.at >= (l.slot ?? 0), 'never before its slot');
  const beforeA = starts(a.pid, 'tick').map((l) => l.slot ?? 0);
  const inB = starts(b.pid, 'tick').map((l) => l.slot ?? 0);
  for (let i = 1; i < beforeA.length; i++) assert.equal((beforeA[i] ?? 0) - (beforeA[i - 1] ?? 0), 3000, 'no slot skipped while running');
  const caughtUp = inB.filter((s) => s <= ready);
  assert.equal(caughtUp.length, 1, `exactly one missed slot runs after the start (B started at ${ready}; B ran ${inB.join(', ')})`);
  assert.equal(caughtUp[0], Math.floor(ready / 3000) * 3000, 'the newest missed slot');
  assert.ok((caughtUp[0] ?? 0) - lastBeforeKill >= 6000, 'several slots were missed, only one ran');
  for (let i = 1; i < inB.length; i++) assert.equal((inB[i] ?? 0) - (inB[i - 1] ?? 0), 3000, 'then every slot in order');

  // The slow procedure (5 s runs every 2 s) never overlaps within a process.
  for (const pid of [a.pid, b.pid]) {
    const ev = all.filter((l) => l.pid === pid && l.procedure === 'slow' && (l.ev === 'start' || l.ev === 'end'));
    let going = 0;
    for (const l of ev) {
      going += l.ev === 'start' ? 1 : -1;
      assert.ok(going <= 1, 'two runs of slow at once');
    }
  }

  const r = await runCli(['maintenance', 'schedule', '--json', '--config', config]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { schedules: { procedure: string; enabled: boolean; nextRun: string | null; overlaps: number; lastRun: { slot: string; outcome: string; runId: string } | null }[]; windows: { id: string; start: string }[] };
  const t = doc.schedules.find((s) => s.procedure === 'tick');
  assert.equal(t?.lastRun?.outcome, 'succeeded');
  assert.equal(t?.lastRun?.slot, new Date(inB.at(-1) ?? 0).toISOString(), 'the last run is the last slot B ran');
  assert.ok(Date.parse(t?.nextRun ?? '') > (inB.at(-1) ?? 0));
  const slow = doc.schedules.find((s) => s.procedure === 'slow');
  assert.ok((slow?.overlaps ?? 0) > 0, 'the slots skipped for the slow run are counted');
  assert.equal(doc.schedules.find((s) => s.procedure === 'maintenance-daily')?.enabled, false, 'disabled by maintenance.schedules');
  assert.equal(doc.schedules.find((s) => s.procedure === 'maintenance-daily')?.nextRun, null);
  assert.equal(doc.windows[0]?.id, 'weekly', 'the default window');
  const text = await runCli(['maintenance', 'schedule', '--config', config]);
  assert.match(text.stdout, /^tick\s+\*\/3 \* \* \* \* \*\s+\S+\s+\S+\s+succeeded$/m);
  assert.match(text.stdout, /^maintenance-daily\s+30 3 \* \* \*\s+disabled/m);

  const status = await runCli(['status', '--json', '--config', config]);
  assert.equal(status.code, 3, 'no daemon');
  const st = JSON.parse(status.stdout) as { maintenance: { schedules: { procedure: string; lastOutcome: string }[]; nextWindow: { id: string } } };
  assert.equal(st.maintenance.schedules.find((s) => s.procedure === 'tick')?.lastOutcome, 'succeeded');
  assert.equal(st.maintenance.nextWindow.id, 'weekly');
});
