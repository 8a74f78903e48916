/**
 * The cron arithmetic of schedules and windows, from croner (pinned: time zones and DST are its
 * tested business, STYLE.md "Schedules belong to the scheduler library"). Times are epoch
 * milliseconds; croner's own timers are never used (ours come from the injected Clock).
 */
import { Cron } from 'croner';

export interface CronSpec {
  cron: string;
  /** An IANA zone; undefined: the gateway's local time. */
  timezone?: string | undefined;
}

function job(spec: CronSpec): Cron {
  return new Cron(spec.cron, { paused: true, ...(spec.timezone === undefined ? {} : { timezone: spec.timezone }) });
}

/** The first slot strictly after `after`, or undefined when there is none. */
export function nextSlot(spec: CronSpec, after: number): number | undefined {
  return job(spec).nextRun(new Date(after))?.getTime();
}

/** The latest slot at or before `at`, or undefined. */
export function previousSlot(spec: CronSpec, at: number): number | undefined {
  return job(spec).previousRuns(1, new Date(at + 1))[0]?.getTime();
}

/** The slots in (from, to], oldest first, at most `max`. */
export function slotsBetween(spec: CronSpec, from: number, to: number, max: number): number[] {
  const j = job(spec);
  const out: number[] = [];
  let t = from;
  while (out.length < max) {
    const n = j.nextRun(new Date(t))?.getTime();
    if (n === undefined || n > to) break;
    out.push(n);
    t = n;
  }
  return out;
}

/** An error message when croner refuses the expression or the zone, else undefined. */
export function cronProblem(spec: CronSpec): string | undefined {
  try {
    job(spec).nextRun();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
