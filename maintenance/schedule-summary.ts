/**
 * What `edge-agent maintenance schedule`, `edge-agent status` and `diag` show of the schedules and
 * windows: every schedule with its next run, last run and last outcome, and the next windows.
 * Pure: computed from the procedures, the configuration and the store's rows, so it works the
 * same with the daemon running or not.
 */
import { previousSlot } from './cron.js';
import { effectiveSchedules, upcomingSlot, type EffectiveSchedule, type SchedulableProcedure, type ScheduleOverride } from './schedule-plan.js';
import type { ScheduleRow, WindowRow } from './schedule-store.js';
import { windowOccurrences, type WindowDef } from './windows.js';

/** A slot not acted on this long after its latest random start makes its schedule overdue. */
export const OVERDUE_GRACE_MS = 15 * 60_000;
/** Last outcomes that make a schedule's diag check a warning. */
export const FAILED_OUTCOMES: readonly string[] = ['failed', 'rolled-back', 'cancelled', 'interrupted', 'refused', 'no-window'];

export interface ScheduleView extends EffectiveSchedule {
  /** ISO; for a procedure waiting for a window, the window's start. null when disabled or never again. */
  nextRun: string | null;
  lastRun: { slot: string | null; startedAt: string | null; endedAt: string | null; outcome: string | null; runId: string | null; message: string | null } | null;
  /** Slots skipped because the previous run was still going, in total. */
  overlaps: number;
  /** A slot passed (with its random delay and a grace) and nothing was done about it. */
  overdue: boolean;
  /** The slot it is overdue for, ISO. */
  overdueSlot: string | null;
}

export interface WindowView {
  id: string;
  start: string;
  end: string;
  state: string;
  deferredSec: number;
}

export interface ScheduleSummary {
  now: string;
  schedules: ScheduleView[];
  windows: WindowView[];
  /** `maintenance.schedules` ids that name no valid procedure. */
  unknownOverrides: string[];
}

export interface SummaryInput {
  procedures: readonly SchedulableProcedure[];
  overrides: Readonly<Record<string, ScheduleOverride>>;
  windows: readonly WindowDef[];
  maxDeferSec: number;
  rows: readonly ScheduleRow[];
  windowRows: readonly WindowRow[];
  now: number;
  /** How many next windows (default 3). */
  nextWindows?: number;
}

const iso = (t: number | null | undefined): string | null => (t === null || t === undefined ? null : new Date(t).toISOString());

export function scheduleSummary(input: SummaryInput): ScheduleSummary {
  const { now } = input;
  const horizon = now + 800 * 86_400_000;
  const occurrences = (to: number): ReturnType<typeof windowOccurrences> => windowOccurrences(input.windows, input.windowRows, now, to, input.maxDeferSec).filter((o) => o.state !== 'skipped');
  let next = occurrences(now + 8 * 86_400_000);
  if (next.length < (input.nextWindows ?? 3) && input.windows.length > 0) next = occurrences(horizon);
  const windows = next.slice(0, input.nextWindows ?? 3).map((o) => ({ id: o.id, start: new Date(o.start).toISOString(), end: new Date(o.end).toISOString(), state: o.state, deferredSec: o.deferredSec }));
  const rows = new Map(input.rows.map((r) => [r.procedure, r]));
  const { schedules, unknown } = effectiveSchedules(input.procedures, input.overrides);
  const views = schedules.map((s): ScheduleView => {
    const row = rows.get(s.procedure);
    let nextRun: string | null = null;
    if (s.enabled) {
      nextRun = row?.outcome === 'waiting-window' ? (windows[0]?.start ?? null) : iso(upcomingSlot(s, row?.handledSlot ?? null, now));
    }
    const baseline = Math.max(row?.since ?? -Infinity, row?.handledSlot ?? -Infinity);
    const due = previousSlot(s, now - s.jitterSec * 1000 - OVERDUE_GRACE_MS);
    // A schedule the agent has never seen (no row) is not judged: nothing was owed to it yet.
    const overdue = s.enabled && row !== undefined && due !== undefined && due > baseline;
    return {
      ...s,
      nextRun,
      lastRun: row ? { slot: iso(row.lastSlot), startedAt: iso(row.startedAt), endedAt: iso(row.endedAt), outcome: row.outcome, runId: row.runId, message: row.message } : null,
      overlaps: row?.overlaps ?? 0,
      overdue,
      overdueSlot: overdue ? iso(due) : null,
    };
  });
  return { now: new Date(now).toISOString(), schedules: views, windows, unknownOverrides: unknown };
}
