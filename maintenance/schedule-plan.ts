/**
 * The pure half of the scheduler: which schedules there are (a procedure's `schedule`, moved or
 * disabled by `maintenance.schedules`), and what a schedule owes after a start (systemd's
 * `Persistent=`: the newest missed slot runs once, never once per missed slot).
 */
import { nextSlot, previousSlot } from './cron.js';
import type { Procedure } from './schema.js';

/** `maintenance.schedules.{id}` of the configuration. */
export interface ScheduleOverride {
  enabled?: boolean | undefined;
  cron?: string | undefined;
  timezone?: string | undefined;
  jitterSec?: number | undefined;
  catchUpSec?: number | undefined;
}

export interface EffectiveSchedule {
  procedure: string;
  cron: string;
  timezone: string | undefined;
  jitterSec: number;
  catchUpSec: number;
  disruptive: boolean;
  enabled: boolean;
  /** `procedure`: as its file says; `config`: moved, added or disabled by `maintenance.schedules`. */
  source: 'procedure' | 'config';
}

/** What the scheduler needs of a procedure; a catalog entry's valid procedure fits. */
export type SchedulableProcedure = Pick<Procedure, 'id' | 'disruptive' | 'schedule'>;

/**
 * Every schedule: each valid procedure with a `schedule` or an override that gives it a `cron`,
 * with the override's keys winning. An override for a procedure that does not exist is returned
 * in `unknown` (the caller logs it; a removed procedure must not fail the agent).
 */
export function effectiveSchedules(procedures: readonly SchedulableProcedure[], overrides: Readonly<Record<string, ScheduleOverride>>): { schedules: EffectiveSchedule[]; unknown: string[] } {
  const schedules: EffectiveSchedule[] = [];
  for (const p of procedures) {
    const o = overrides[p.id];
    const cron = o?.cron ?? p.schedule?.cron;
    if (cron === undefined) continue;
    schedules.push({
      procedure: p.id,
      cron,
      timezone: o?.timezone ?? p.schedule?.timezone,
      jitterSec: o?.jitterSec ?? p.schedule?.jitterSec ?? 0,
      catchUpSec: o?.catchUpSec ?? p.schedule?.catchUpSec ?? 0,
      disruptive: p.disruptive,
      enabled: o?.enabled ?? true,
      source: o === undefined ? 'procedure' : 'config',
    });
  }
  const ids = new Set(procedures.map((p) => p.id));
  return { schedules: schedules.sort((a, b) => a.procedure.localeCompare(b.procedure)), unknown: Object.keys(overrides).filter((id) => !ids.has(id)) };
}

/**
 * The slot a schedule owes at `now` after a start: the newest slot after `baseline` (the newest
 * slot already handled, or when the schedule was first seen) and at or before `now`, when it is
 * at most `max(catchUpSec, jitterSec)` old (a slot whose random delay had not yet run out when
 * the agent stopped is still within its own bound). Older missed slots are dropped: one run, not
 * one per slot.
 */
export function catchUpSlot(s: Pick<EffectiveSchedule, 'cron' | 'timezone' | 'catchUpSec' | 'jitterSec'>, baseline: number, now: number): number | undefined {
  const prev = previousSlot(s, now);
  if (prev === undefined || prev <= baseline) return undefined;
  return now - prev <= Math.max(s.catchUpSec, s.jitterSec) * 1000 ? prev : undefined;
}

/** The next slot to wait for: after `now` and after the newest slot already handled. */
export function upcomingSlot(s: Pick<EffectiveSchedule, 'cron' | 'timezone'>, handled: number | null, now: number): number | undefined {
  return nextSlot(s, Math.max(now, handled ?? -Infinity));
}
