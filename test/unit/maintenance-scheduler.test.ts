/**
 * The scheduler (maintenance/scheduler.ts) on a real SQLite store and a controllable clock, with
 * a fake runner port: slots on time with jitter inside its bound, no overlap with a slow run, a
 * restart neither repeats nor skips, missed slots run once, disruptive procedures wait for a
 * window, config moves or disables a schedule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import type { Clock } from '../../lib/clock.js';
import { SCHEDULE_MIGRATIONS, readScheduleRows } from '../../maintenance/schedule-store.js';
import { Scheduler, type RunnerPort, type StartResult, type WindowPort } from '../../maintenance/scheduler.js';
import type { SchedulableProcedure, ScheduleOverride } from '../../maintenance/schedule-plan.js';
import { fakeClock, type FakeClock } from '../helpers/fake-clock.js';

const T0 = Date.UTC(2026, 11, 6, 1, 0, 0); // a whole minute
const SEC = 1000;

function store(): { db: Db; path: string } {
  const path = join(mkdtempSync(join(tmpdir(), 'sched-')), 'agent.db');
  return { db: openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] }), path };
}

interface Run {
  procedure: string;
  startedBy: string;
  slot: number;
  at: number;
  endedAt?: number;
}

/** A runner whose runs take `durationMs` of the clock; `refuse` makes start() answer no. */
function fakeRunner(clock: Clock, durationMs = 100, refuse?: { code: string; message: string }): RunnerPort & { runs: Run[]; maxConcurrent: number } {
  const runs: Run[] = [];
  let going = 0;
  const r = {
    runs,
    maxConcurrent: 0,
    start(procedure: string, opts: { trigger: 'schedule'; startedBy: string }): Promise<StartResult> {
      if (refuse) return Promise.resolve({ ok: false, ...refuse });
      const slot = Date.parse(opts.startedBy.slice(opts.startedBy.indexOf('@') + 1));
      const run: Run = { procedure, startedBy: opts.startedBy, slot, at: clock.now() };
      runs.push(run);
      going++;
      r.maxConcurrent = Math.max(r.maxConcurrent, going);
      const done = new Promise<{ state: string }>((resolve) =>
        clock.setTimeout(() => {
          going--;
          run.endedAt = clock.now();
          resolve({ state: 'succeeded' });
        }, durationMs),
      );
      return Promise.resolve({ ok: true, runId: `run-${runs.length}`, done });
    },
  };
  return r;
}

const noWindow: WindowPort = { isInsideWindow: () => false, nextWindows: () => [] };
const always: WindowPort = { isInsideWindow: () => true, nextWindows: () => [] };

function proc(id: string, cron: string, extra: Partial<{ jitterSec: number; catchUpSec: number; disruptive: boolean }> = {}): SchedulableProcedure {
  return { id, disruptive: extra.disruptive ?? false, schedule: { cron, jitterSec: extra.jitterSec ?? 0, catchUpSec: extra.catchUpSec ?? 0 } };
}

function scheduler(db: Db, clock: FakeClock, runner: RunnerPort, procedures: SchedulableProcedure[], opts: { windows?: WindowPort; overrides?: Record<string, ScheduleOverride>; random?: () => number } = {}): Scheduler {
  return new Scheduler({ db, log: silentLogger(), runner, windows: opts.windows ?? always, procedures, overrides: opts.overrides ?? {}, clock, ...(opts.random ? { random: opts.random } : {}) });
}

test('a schedule every 5 s runs on each slot, with its random delay inside jitterSec', async () => {
  const { db } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const s = scheduler(db, clock, runner, [proc('tick', '*/5 * * * * *', { jitterSec: 2 })]);
  s.start();
  await clock.advance(60 * SEC + 2 * SEC);
  s.stop();
  await s.idle();
  assert.equal(runner.runs.length, 12, 'one run per slot');
  runner.runs.forEach((r, i) => {
    assert.equal(r.slot, T0 + (i + 1) * 5 * SEC, 'slots in order, none missed');
    assert.ok(r.at >= r.slot && r.at <= r.slot + 2 * SEC, `run ${i} started ${r.at - r.slot} ms after its slot`);
  });
  const delays = new Set(runner.runs.map((r) => r.at - r.slot));
  assert.ok(delays.size > 1, 'the delay is random, not a constant');
  const row = readScheduleRows(db)[0];
  assert.equal(row?.outcome, 'succeeded');
  assert.equal(row?.lastSlot, T0 + 60 * SEC);
  assert.equal(row?.runId, 'run-12');
});

test('a run slower than the interval is never overlapped: the slots that come during it are skipped and counted', async () => {
  const { db } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock, 12 * SEC);
  const s = scheduler(db, clock, runner, [proc('slow', '*/5 * * * * *')]);
  s.start();
  await clock.advance(60 * SEC);
  s.stop();
  await clock.advance(20 * SEC);
  await s.idle();
  assert.equal(runner.maxConcurrent, 1, 'never two runs of one schedule at once');
  for (let i = 1; i < runner.runs.length; i++) {
    const prev = runner.runs[i - 1];
    assert.ok(prev?.endedAt !== undefined && (runner.runs[i]?.at ?? 0) >= prev.endedAt, 'each run starts after the previous ended');
  }
  // Slots at 5, 20, 35, 50 run (each 12 s long); 10, 15, 25, 30, 40, 45, 55, 60 are skipped.
  assert.deepEqual(runner.runs.map((r) => (r.slot - T0) / SEC), [5, 20, 35, 50]);
  const row = readScheduleRows(db)[0];
  assert.equal(row?.overlaps, 8);
  assert.equal(row?.lastOverlapSlot, T0 + 60 * SEC);
});

test('a restart neither repeats nor skips a slot; a run cut by the restart reads interrupted', async () => {
  const { path } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock, 1500);
  let db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  let s = scheduler(db, clock, runner, [proc('tick', '*/5 * * * * *')]);
  s.start();
  await clock.advance(21 * SEC); // slot 20 is running
  // "kill -9": timers gone, nothing recorded after this instant.
  s.stop();
  db.close();
  assert.equal(runner.runs.length, 4);
  await clock.advance(1 * SEC);
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  assert.equal(readScheduleRows(db)[0]?.outcome, 'running', 'the cut run was committed as running before it started');
  s = scheduler(db, clock, runner, [proc('tick', '*/5 * * * * *')]);
  s.start();
  assert.equal(readScheduleRows(db)[0]?.outcome, 'interrupted');
  await clock.advance(19 * SEC);
  s.stop();
  await clock.advance(2 * SEC);
  await s.idle();
  assert.deepEqual(runner.runs.map((r) => (r.slot - T0) / SEC), [5, 10, 15, 20, 25, 30, 35, 40], 'every slot once, across the restart');
});

test('a run cut by a restart that the runner resumed reads running while it goes on (its slots are overlaps), then its real outcome; one that ended meanwhile reads its state', async () => {
  const { path } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock, 60 * SEC);
  let db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  let s = scheduler(db, clock, runner, [proc('tick', '*/5 * * * * *')]);
  s.start();
  await clock.advance(6 * SEC); // slot 5 is running
  s.stop();
  db.close();
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  const cut = readScheduleRows(db)[0];
  assert.equal(cut?.outcome, 'running');
  assert.equal(cut?.runId, 'run-1', 'the run id is in the row');
  // The runner resumed it (onInterrupt: resume): it ends 12 s after the restart, rolled back.
  let end: (v: { state: string }) => void = () => undefined;
  const asked: string[] = [];
  const resumed: RunnerPort = {
    start: runner.start.bind(runner),
    follow: (runId) => {
      asked.push(runId);
      return new Promise((r) => (end = r));
    },
  };
  clock.setTimeout(() => end({ state: 'rolled-back' }), 12 * SEC);
  s = scheduler(db, clock, resumed, [proc('tick', '*/5 * * * * *')]);
  s.start();
  assert.deepEqual(asked, [cut?.runId]);
  assert.equal(readScheduleRows(db)[0]?.outcome, 'running', 'not interrupted: it goes on');
  await clock.advance(11 * SEC);
  assert.equal(readScheduleRows(db)[0]?.outcome, 'running');
  assert.equal(runner.runs.length, 1, 'no new run while the resumed one goes on');
  assert.ok((readScheduleRows(db)[0]?.overlaps ?? 0) >= 2, 'its slots are overlaps');
  await clock.advance(2 * SEC);
  assert.equal(readScheduleRows(db)[0]?.outcome, 'rolled-back', "the resumed run's real outcome");
  s.stop();
  await s.idle();
  db.close();

  // Ended before the scheduler started (a short resumed run): its state, at once.
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  db.prepare("UPDATE maintenance_schedules SET outcome = 'running', run_id = 'r-1'").run();
  s = scheduler(db, clock, { start: runner.start.bind(runner), follow: () => ({ state: 'succeeded' }) }, [proc('tick', '*/5 * * * * *')]);
  s.start();
  assert.equal(readScheduleRows(db)[0]?.outcome, 'succeeded');
  s.stop();
  // Never known to the runner: interrupted.
  db.prepare("UPDATE maintenance_schedules SET outcome = 'running', run_id = 'r-2'").run();
  s = scheduler(db, clock, { start: runner.start.bind(runner), follow: () => undefined }, [proc('tick', '*/5 * * * * *')]);
  s.start();
  assert.equal(readScheduleRows(db)[0]?.outcome, 'interrupted');
  s.stop();
  await s.idle();
  db.close();
});

test('slots missed while the agent was stopped run once after start, the newest only, within catchUpSec', async () => {
  const { path } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const p = proc('daily', '*/5 * * * * *', { catchUpSec: 60 });
  let db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  let s = scheduler(db, clock, runner, [p]);
  s.start();
  await clock.advance(11 * SEC);
  s.stop();
  await s.idle();
  db.close();
  assert.equal(runner.runs.length, 2);
  await clock.advance(32 * SEC); // slots 15..40 missed (6 of them); now T0+43
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  s = scheduler(db, clock, runner, [p]);
  s.start();
  await clock.advance(0);
  assert.equal(runner.runs.length, 3, 'one catch-up run right after start, not six');
  assert.equal(runner.runs[2]?.slot, T0 + 40 * SEC, 'the newest missed slot');
  assert.equal(runner.runs[2]?.at, T0 + 43 * SEC);
  await clock.advance(8 * SEC);
  s.stop();
  await s.idle();
  assert.deepEqual(runner.runs.map((r) => (r.slot - T0) / SEC), [5, 10, 40, 45, 50]);
  db.close();

  // Beyond catchUpSec: nothing owed, the next slot runs as usual.
  await clock.advance(120 * SEC); // now T0+171; newest missed slot 170 is 1 s old, 55..165 are dropped
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  s = scheduler(db, clock, runner, [proc('daily', '*/5 * * * * *', { catchUpSec: 0 })]);
  s.start();
  await clock.advance(0);
  assert.equal(runner.runs.length, 5, 'catchUpSec 0: a missed slot is not caught up');
  await clock.advance(5 * SEC);
  s.stop();
  await s.idle();
  assert.deepEqual(runner.runs.slice(5).map((r) => (r.slot - T0) / SEC), [175]);
});

test('a schedule seen for the first time owes nothing from before it was seen', async () => {
  const { db } = store();
  const clock = fakeClock(T0 + 3 * SEC);
  const runner = fakeRunner(clock);
  const s = scheduler(db, clock, runner, [proc('new', '*/5 * * * * *', { catchUpSec: 3600 })]);
  s.start();
  await clock.advance(0);
  assert.equal(runner.runs.length, 0);
  await clock.advance(2 * SEC + 200);
  s.stop();
  await s.idle();
  assert.deepEqual(runner.runs.map((r) => r.slot), [T0 + 5 * SEC]);
});

test('a disruptive procedure outside a window waits for the next window, persisted across a restart', async () => {
  const { path } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  // One window, from T0+90 s to T0+100 s.
  const win = { id: 'w', baseStart: T0 + 90 * SEC, start: T0 + 90 * SEC, end: T0 + 100 * SEC, state: 'planned' as const, deferredSec: 0 };
  const windows: WindowPort = { isInsideWindow: (now) => now >= win.start && now < win.end, nextWindows: (now) => (now < win.end ? [win] : []) };
  const p = proc('weekly', '0 * * * * *', { disruptive: true });
  let db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  let s = scheduler(db, clock, runner, [p], { windows });
  s.start();
  await clock.advance(65 * SEC); // T0+65: slot 60 came, outside the window
  assert.equal(runner.runs.length, 0, 'not outside a window');
  assert.equal(readScheduleRows(db)[0]?.outcome, 'waiting-window');
  s.stop();
  db.close();
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  s = scheduler(db, clock, runner, [p], { windows });
  s.start();
  await clock.advance(30 * SEC); // T0+95
  s.stop();
  await s.idle();
  assert.equal(runner.runs.length, 1, 'ran once, in the window, after the restart');
  assert.equal(runner.runs[0]?.slot, T0 + 60 * SEC);
  assert.equal(runner.runs[0]?.at, T0 + 90 * SEC);
  assert.equal(readScheduleRows(db)[0]?.outcome, 'succeeded');
});

test('a disruptive procedure with no window configured does not run, and says so', async () => {
  const { db } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const s = scheduler(db, clock, runner, [proc('weekly', '*/5 * * * * *', { disruptive: true })], { windows: noWindow });
  s.start();
  await clock.advance(12 * SEC);
  s.stop();
  assert.equal(runner.runs.length, 0);
  assert.equal(readScheduleRows(db)[0]?.outcome, 'no-window');
});

test('maintenance.schedules disables or moves a schedule; a refusal by the runner is recorded', async () => {
  const { db } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const s = scheduler(db, clock, runner, [proc('a', '*/5 * * * * *'), proc('b', '*/5 * * * * *'), { id: 'c', disruptive: false, schedule: undefined }], {
    overrides: { a: { enabled: false }, b: { cron: '*/10 * * * * *' }, c: { cron: '*/20 * * * * *' }, gone: { enabled: false } },
  });
  s.start();
  await clock.advance(40 * SEC + 200);
  s.stop();
  await s.idle();
  assert.deepEqual(runner.runs.filter((r) => r.procedure === 'a'), [], 'disabled');
  assert.deepEqual(runner.runs.filter((r) => r.procedure === 'b').map((r) => (r.slot - T0) / SEC), [10, 20, 30, 40], 'moved');
  assert.deepEqual(runner.runs.filter((r) => r.procedure === 'c').map((r) => (r.slot - T0) / SEC), [20, 40], 'added by the config');
  assert.deepEqual(s.list().map((x) => [x.procedure, x.enabled, x.source]), [['a', false, 'config'], ['b', true, 'config'], ['c', true, 'config']]);

  const clock2 = fakeClock(T0);
  const { db: db2 } = store();
  const s2 = scheduler(db2, clock2, fakeRunner(clock2, 100, { code: 'busy', message: 'the queue is full' }), [proc('a', '*/5 * * * * *')]);
  s2.start();
  await clock2.advance(5 * SEC);
  s2.stop();
  await s2.idle();
  const row = readScheduleRows(db2)[0];
  assert.equal(row?.outcome, 'refused');
  assert.equal(row?.message, 'busy: the queue is full');
});

test('setProcedures (the directory changed): a moved cron is re-armed, a removed procedure stops, a new one starts', async () => {
  const { db } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const s = scheduler(db, clock, runner, [proc('a', '*/5 * * * * *'), proc('b', '*/5 * * * * *')]);
  s.start();
  await clock.advance(6 * SEC); // a and b ran slot 5
  s.setProcedures([proc('a', '*/10 * * * * *'), proc('c', '*/5 * * * * *')]);
  await clock.advance(15 * SEC); // to T0+21
  s.stop();
  await clock.advance(1 * SEC);
  await s.idle();
  const slots = (id: string): number[] => runner.runs.filter((r) => r.procedure === id).map((r) => (r.slot - T0) / SEC);
  assert.deepEqual(slots('a'), [5, 10, 20], 'moved to every 10 s');
  assert.deepEqual(slots('b'), [5], 'removed: no run after');
  assert.deepEqual(slots('c'), [10, 15, 20], 'added: from its next slot');
});

test('a slot whose random delay had not run out when the agent stopped still runs after the start, even with catchUpSec 0', async () => {
  const { path } = store();
  const clock = fakeClock(T0);
  const runner = fakeRunner(clock);
  const p = proc('j', '*/10 * * * * *', { jitterSec: 4, catchUpSec: 0 });
  let db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  let s = scheduler(db, clock, runner, [p], { random: () => 0.9 });
  s.start();
  await clock.advance(12 * SEC); // slot 10 waits until 13.6
  s.stop();
  db.close();
  assert.equal(runner.runs.length, 0);
  await clock.advance(1 * SEC);
  db = openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
  s = scheduler(db, clock, runner, [p], { random: () => 0.9 });
  s.start();
  await clock.advance(1 * SEC);
  s.stop();
  await clock.advance(1 * SEC);
  await s.idle();
  assert.deepEqual(runner.runs.map((r) => [(r.slot - T0) / SEC, (r.at - T0) / SEC]), [[10, 13.6]], 'slot 10, at its own random start');
});
