/**
 * Starts procedures on their schedules (CONTRACT.md section 6 `schedule`; systemd timers'
 * `Persistent=` and `RandomizedDelaySec=` are the semantics copied). croner computes the slots
 * (maintenance/cron.ts); this file persists what ran and decides what to catch up. It never runs
 * a step itself: it asks the runner through `RunnerPort.start`.
 *
 * INVARIANTS
 * - A slot starts at most once: its row (`handled_slot`, outcome `running`) is committed before
 *   the runner is asked, so a restart never starts it again. (A power cut between the commit and
 *   the runner's own commit loses that one run; it is never run twice.)
 * - Runs of one schedule never overlap: a slot that comes while the previous run is going is not
 *   started; it is counted (`overlaps`, `last_overlap_slot`) and logged.
 * - After a start, the newest slot missed while the agent was down runs once when it is at most
 *   `max(catchUpSec, jitterSec)` old; older missed slots are dropped, never run one by one. A
 *   schedule first seen now owes nothing from before.
 * - A disruptive procedure starts only inside a maintenance window; a slot outside one waits
 *   (outcome `waiting-window`, persisted, so a restart keeps waiting) for the next window. With no
 *   window configured it does not run (`no-window`).
 * - A run's end (the runner's terminal state) is committed when the runner reports it. The run
 *   id is chosen here and committed with the slot, before the runner is asked. A run still
 *   `running` in the store at start was cut by a restart: when the runner still knows it (it
 *   resumed it as its `onInterrupt` says, or ended it), the row follows it: `running` while it
 *   goes on (and the schedule is busy: no overlap), then its real terminal state; when the
 *   runner never got it, it reads `interrupted`.
 */
import { systemClock, type Clock } from '../lib/clock.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { catchUpSlot, effectiveSchedules, upcomingSlot, type EffectiveSchedule, type SchedulableProcedure, type ScheduleOverride } from './schedule-plan.js';
import { readScheduleRows, updateScheduleRow, type ScheduleRow } from './schedule-store.js';
import type { WindowOccurrence } from './windows.js';

export type StartResult = { ok: true; runId: string; done: Promise<{ state: string }> } | { ok: false; code: string; message: string };

/** The runner, as the scheduler sees it (maintenance/runner.ts implements it). */
export interface RunnerPort {
  /** Starts a run with the id `runId` (the scheduler's, committed before this is called). */
  start(procedureId: string, opts: { trigger: 'schedule'; startedBy: string; runId: string }): Promise<StartResult>;
  /**
   * A run of a previous process, at start: its terminal state when it has ended, a promise of it
   * when it is still going (resumed after the restart), undefined when the runner never had it.
   */
  follow?(runId: string): { state: string } | Promise<{ state: string }> | undefined;
}

/** The windows, as the scheduler sees them (MaintenanceWindows implements it). */
export interface WindowPort {
  isInsideWindow(now: number): boolean;
  nextWindows(now: number, n: number): WindowOccurrence[];
}

export interface SchedulerOptions {
  db: Db;
  log: Logger;
  runner: RunnerPort;
  windows: WindowPort;
  /** The valid procedures (catalog entries' `procedure`); setProcedures() replaces them. */
  procedures: readonly SchedulableProcedure[];
  /** `maintenance.schedules`. */
  overrides: Readonly<Record<string, ScheduleOverride>>;
  clock?: Clock;
  /** [0, 1): the random start delay's source. */
  random?: () => number;
}

/** The longest one timer sleeps before it looks again (wall clock jumps). */
const MAX_SLEEP_MS = 5 * 60_000;

interface Armed {
  slot: number;
  at: number;
  waitingWindow: boolean;
  timer: NodeJS.Timeout;
}

export class Scheduler {
  private readonly clock: Clock;
  private readonly random: () => number;
  private schedules: EffectiveSchedule[] = [];
  private readonly armed = new Map<string, Armed>();
  /** Procedures whose run (or start) is in progress: their slots are overlaps. */
  private readonly busy = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;

  constructor(private readonly opts: SchedulerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
  }

  start(): void {
    this.running = true;
    const now = this.clock.now();
    for (const r of readScheduleRows(this.opts.db)) {
      if (r.outcome !== 'running') continue;
      let f: ReturnType<NonNullable<RunnerPort['follow']>>;
      try {
        f = r.runId !== null ? this.opts.runner.follow?.(r.runId) : undefined;
      } catch (err) {
        this.opts.log.warn({ err, procedure: r.procedure, runId: r.runId }, 'schedule: cannot tell how the run cut by the restart went on');
        f = undefined;
      }
      if (f === undefined) {
        updateScheduleRow(this.opts.db, r.procedure, now, { outcome: 'interrupted', message: 'the agent stopped during the run; its report says how it ended' });
      } else if (f instanceof Promise) {
        updateScheduleRow(this.opts.db, r.procedure, now, { message: 'resumed after an agent restart' });
        this.opts.log.info({ procedure: r.procedure, runId: r.runId }, 'schedule: following the run resumed after the restart');
        this.track(r.procedure, r.runId ?? '', f);
      } else {
        updateScheduleRow(this.opts.db, r.procedure, now, { endedAt: now, outcome: f.state, message: 'ended after an agent restart' });
      }
    }
    this.plan(this.opts.procedures, true);
  }

  /** Clears every timer; runs already started go on in the runner (their end is still recorded while the store is open). */
  stop(): void {
    this.running = false;
    for (const a of this.armed.values()) this.clock.clearTimeout(a.timer);
    this.armed.clear();
  }

  /** Settles when every run started by this scheduler has ended and been recorded (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** The procedures changed (the directory watch): schedules are recomputed, nothing owed is lost. */
  setProcedures(procedures: readonly SchedulableProcedure[]): void {
    if (this.running) this.plan(procedures, false);
  }

  /** Every schedule, enabled or not, as configured now. */
  list(): EffectiveSchedule[] {
    return [...this.schedules];
  }

  /** The procedures planned between `start` and `end` (a window's announcement): waiting for a window, or with a slot in it. */
  plannedIn(start: number, end: number): string[] {
    const out = new Set<string>();
    for (const s of this.schedules) {
      if (!s.enabled) continue;
      const a = this.armed.get(s.procedure);
      if (a?.waitingWindow) out.add(s.procedure);
      const next = upcomingSlot(s, null, start - 1);
      if (next !== undefined && next < end) out.add(s.procedure);
    }
    return [...out].sort();
  }

  private plan(procedures: readonly SchedulableProcedure[], atStart: boolean): void {
    const { schedules, unknown } = effectiveSchedules(procedures, this.opts.overrides);
    if (unknown.length > 0) this.opts.log.warn({ procedures: unknown }, 'maintenance.schedules names procedures that do not exist (or are invalid); ignored');
    this.schedules = schedules;
    const now = this.clock.now();
    const rows = new Map(readScheduleRows(this.opts.db).map((r) => [r.procedure, r]));
    for (const [id, a] of this.armed) {
      if (!schedules.some((s) => s.procedure === id && s.enabled)) {
        this.clock.clearTimeout(a.timer);
        this.armed.delete(id);
      }
    }
    for (const s of schedules) {
      if (!s.enabled) continue;
      let row = rows.get(s.procedure);
      if (!row) {
        updateScheduleRow(this.opts.db, s.procedure, now, {});
        row = readScheduleRows(this.opts.db).find((r) => r.procedure === s.procedure);
      }
      if (!row) continue;
      if (this.armed.has(s.procedure) && !atStart) {
        // Keep what is owed; re-arm only when the cron moved.
        const a = this.armed.get(s.procedure);
        if (a && (a.waitingWindow || a.slot === upcomingSlot(s, row.handledSlot, a.slot - 1))) continue;
        this.clock.clearTimeout(a?.timer);
        this.armed.delete(s.procedure);
      }
      this.armFirst(s, row, now);
    }
  }

  private armFirst(s: EffectiveSchedule, row: ScheduleRow, now: number): void {
    if (row.outcome === 'waiting-window' && row.handledSlot !== null) {
      this.armWindow(s, row.handledSlot, now);
      return;
    }
    const owed = catchUpSlot(s, Math.max(row.since, row.handledSlot ?? -Infinity), now);
    if (owed !== undefined) {
      this.opts.log.info({ procedure: s.procedure, slot: new Date(owed).toISOString() }, 'schedule: catching up the newest slot missed while the agent was down');
      this.arm(s, owed, Math.max(now, owed + this.jitter(s)), false);
      return;
    }
    this.armNext(s, row.handledSlot, now);
  }

  private armNext(s: EffectiveSchedule, handled: number | null, now: number): void {
    const slot = upcomingSlot(s, handled, now);
    if (slot === undefined) return;
    this.arm(s, slot, slot + this.jitter(s), false);
  }

  private jitter(s: EffectiveSchedule, boundSec = s.jitterSec): number {
    return Math.floor(this.random() * Math.min(s.jitterSec, boundSec) * 1000);
  }

  private arm(s: EffectiveSchedule, slot: number, at: number, waitingWindow: boolean): void {
    if (!this.running) return;
    this.clock.clearTimeout(this.armed.get(s.procedure)?.timer);
    const now = this.clock.now();
    const wait = Math.min(Math.max(0, at - now), MAX_SLEEP_MS);
    const timer = this.clock.setTimeout(() => this.fire(s.procedure, slot, at, waitingWindow), wait);
    this.armed.set(s.procedure, { slot, at, waitingWindow, timer });
  }

  private fire(procedure: string, slot: number, at: number, waitingWindow: boolean): void {
    this.armed.delete(procedure);
    const s = this.schedules.find((x) => x.procedure === procedure && x.enabled);
    if (!this.running || !s) return;
    const now = this.clock.now();
    if (now < at) {
      this.arm(s, slot, at, waitingWindow); // a long wait in pieces
      return;
    }
    if (this.busy.has(procedure)) {
      const row = readScheduleRows(this.opts.db).find((r) => r.procedure === procedure);
      updateScheduleRow(this.opts.db, procedure, now, { handledSlot: slot, overlaps: (row?.overlaps ?? 0) + 1, lastOverlapSlot: slot });
      this.opts.log.warn({ procedure, slot: new Date(slot).toISOString() }, 'schedule: slot skipped, the previous run is still going');
      this.armNext(s, slot, now);
      return;
    }
    if (s.disruptive && !this.opts.windows.isInsideWindow(now)) {
      this.armWindow(s, slot, now);
      return;
    }
    this.armNext(s, slot, now);
    this.launch(s, slot, now);
  }

  /** A disruptive slot outside a window: wait for the next window (persisted), or record that there is none. */
  private armWindow(s: EffectiveSchedule, slot: number, now: number): void {
    if (this.opts.windows.isInsideWindow(now)) {
      this.arm(s, slot, now, true);
      return;
    }
    const next = this.opts.windows.nextWindows(now, 1)[0];
    if (!next) {
      updateScheduleRow(this.opts.db, s.procedure, now, { handledSlot: slot, outcome: 'no-window', message: 'disruptive, and maintenance.windows is empty: it runs only with force' });
      this.opts.log.warn({ procedure: s.procedure }, 'schedule: a disruptive procedure with no maintenance window configured does not run');
      this.armNext(s, slot, now);
      return;
    }
    updateScheduleRow(this.opts.db, s.procedure, now, { handledSlot: slot, outcome: 'waiting-window', message: `disruptive: waits for window ${next.id} at ${new Date(next.start).toISOString()}` });
    this.opts.log.info({ procedure: s.procedure, window: next.id, start: new Date(next.start).toISOString() }, 'schedule: disruptive procedure waits for the next maintenance window');
    // The random delay stays inside the first quarter of the window.
    this.arm(s, slot, next.start + this.jitter(s, Math.floor((next.end - next.start) / 4000)), true);
  }

  /** Records the end of a run that is going: the schedule is busy until then. */
  private track(procedure: string, runId: string, done: Promise<{ state: string }>): void {
    this.busy.add(procedure);
    const work = (async (): Promise<void> => {
      try {
        await this.recordEnd(procedure, runId, done);
      } catch (err) {
        this.opts.log.error({ err, procedure }, 'schedule: cannot record the end of the run');
      } finally {
        this.busy.delete(procedure);
      }
    })();
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  private async recordEnd(procedure: string, runId: string, done: Promise<{ state: string }>): Promise<void> {
    let state: string;
    try {
      state = (await done).state;
    } catch (err) {
      state = 'failed';
      this.opts.log.error({ err, procedure, runId }, 'schedule: the run ended with an error');
    }
    updateScheduleRow(this.opts.db, procedure, this.clock.now(), { endedAt: this.clock.now(), outcome: state });
    this.opts.log.info({ procedure, runId, state }, 'schedule: run ended');
  }

  private launch(s: EffectiveSchedule, slot: number, now: number): void {
    const procedure = s.procedure;
    this.busy.add(procedure);
    const runId = `schedule-${procedure}-${now}`;
    updateScheduleRow(this.opts.db, procedure, now, { handledSlot: slot, lastSlot: slot, startedAt: now, endedAt: null, outcome: 'running', runId, message: null });
    const work = (async (): Promise<void> => {
      try {
        const r = await this.opts.runner.start(procedure, { trigger: 'schedule', startedBy: `schedule:${procedure}@${new Date(slot).toISOString()}`, runId });
        if (!r.ok) {
          if (r.code === 'outside-window' && this.running) {
            this.armWindow(s, slot, this.clock.now());
            return;
          }
          updateScheduleRow(this.opts.db, procedure, this.clock.now(), { endedAt: this.clock.now(), outcome: 'refused', message: `${r.code}: ${r.message}` });
          this.opts.log.warn({ procedure, code: r.code, msg: r.message }, 'schedule: the runner refused the run');
          return;
        }
        if (r.runId !== runId) updateScheduleRow(this.opts.db, procedure, this.clock.now(), { runId: r.runId });
        await this.recordEnd(procedure, r.runId, r.done);
      } catch (err) {
        this.opts.log.error({ err, procedure }, 'schedule: cannot start or record the run');
        try {
          updateScheduleRow(this.opts.db, procedure, this.clock.now(), { endedAt: this.clock.now(), outcome: 'refused', message: errorMessage(err) });
        } catch {
          // The store is gone (shutdown): the row still says running, read as interrupted at the next start.
        }
      } finally {
        this.busy.delete(procedure);
      }
    })();
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }
}
