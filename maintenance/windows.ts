/**
 * Maintenance windows (CONTRACT.md section 6, `maintenance.windows`): when disruptive procedures
 * may run from a schedule, announced on ~/events before they open, deferred or skipped by the WMS.
 *
 * An occurrence is one start of a window's cron, keyed by that start (`baseStart`); a `defer`
 * moves its start and end, a `skip` cancels it. Its life: (planned) -> announced -> started ->
 * ended, or announced -> deferred (again, up to `maxDeferSec` in total) -> started -> ended, or
 * announced/deferred -> skipped. Each step is one `maintenance-window` event.
 *
 * INVARIANTS
 * - An answer (defer, skip) is committed to the store before it is confirmed on ~/events, so a
 *   restart keeps it; an announcement is committed after its event is queued, so a power cut
 *   between the two announces it again, never not at all.
 * - Answers are taken only between the announcement and the start; the total deferral of an
 *   occurrence never exceeds `maxDeferSec`.
 * - A skipped occurrence is never inside: isInsideWindow() is false during it.
 * - An occurrence the agent was down for entirely emits nothing; one it starts inside of emits
 *   `started` (its announcement is gone past).
 */
import { isoNow, systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { slotsBetween } from './cron.js';
import { readWindowRows, writeWindowRow, type WindowRow, type WindowState } from './schedule-store.js';
import type { WindowCode } from './window-errors.js';

export interface WindowDef {
  id: string;
  cron: string;
  durationSec: number;
  timezone?: string | undefined;
}

export interface WindowOccurrence {
  id: string;
  baseStart: number;
  start: number;
  end: number;
  state: WindowState | 'planned';
  deferredSec: number;
}

export type WindowAction = 'announced' | 'deferred' | 'skipped' | 'started' | 'ended';

/** The `maintenance-window` event on ~/events (CONTRACT.md section 6). */
export interface WindowEvent {
  type: 'maintenance-window';
  severity: 'info';
  code: `window-${WindowAction}`;
  message: string;
  ts: string;
  id: string;
  start: string;
  end: string;
  procedures: string[];
  action: WindowAction;
}

export type AnswerResult = { ok: true; action: 'defer' | 'skip'; window: WindowOccurrence } | { ok: false; code: WindowCode; message: string };

/** A `defer` without `bySec` moves the window by this much (or what is left of `maxDeferSec`). */
export const DEFAULT_DEFER_SEC = 3600;
/** The longest the timer sleeps: a wall clock that jumps (NTP at boot) is noticed within this. */
const MAX_SLEEP_MS = 5 * 60_000;
/** At most this many occurrences of one window are looked at in one computation. */
const MAX_OCCURRENCES = 2000;

const key = (id: string, baseStart: number): string => `${id}@${baseStart}`;

/**
 * The occurrences of `defs` whose (moved) end is after `from` and start at or before `to`, sorted
 * by start; pure. `rows` are the stored answers and states.
 */
export function windowOccurrences(defs: readonly WindowDef[], rows: readonly WindowRow[], from: number, to: number, maxDeferSec: number): WindowOccurrence[] {
  const stored = new Map(rows.map((r) => [key(r.windowId, r.baseStart), r]));
  const out: WindowOccurrence[] = [];
  for (const d of defs) {
    const lookBack = (d.durationSec + maxDeferSec) * 1000;
    for (const baseStart of slotsBetween(d, from - lookBack - 1, to, MAX_OCCURRENCES)) {
      const r = stored.get(key(d.id, baseStart));
      const o: WindowOccurrence = r
        ? { id: d.id, baseStart, start: r.start, end: r.end, state: r.state, deferredSec: r.deferredSec }
        : { id: d.id, baseStart, start: baseStart, end: baseStart + d.durationSec * 1000, state: 'planned', deferredSec: 0 };
      if (o.end > from && o.start <= to) out.push(o);
    }
  }
  return out.sort((a, b) => a.start - b.start || a.id.localeCompare(b.id));
}

export interface WindowsOptions {
  db: Db;
  log: Logger;
  windows: readonly WindowDef[];
  announceSec: number;
  maxDeferSec: number;
  /** Queues a `maintenance-window` event on ~/events. */
  emit: (event: WindowEvent) => void;
  /** The procedures planned in an occurrence (the scheduler's plannedIn()); default none. */
  planned?: (start: number, end: number) => string[];
  clock?: Clock;
}

export class MaintenanceWindows {
  private readonly clock: Clock;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly opts: WindowsOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  start(): void {
    this.running = true;
    this.tick();
  }

  stop(): void {
    this.running = false;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The occurrence open at `now` (not skipped), if any. */
  currentWindow(now = this.clock.now()): WindowOccurrence | undefined {
    return this.occurrences(now, now).find((o) => o.state !== 'skipped' && o.start <= now && now < o.end);
  }

  /** A window with this id is configured. */
  knows(id: string): boolean {
    return this.opts.windows.some((w) => w.id === id);
  }

  isInsideWindow(now = this.clock.now()): boolean {
    return this.currentWindow(now) !== undefined;
  }

  /** What the runner asks before a disruptive run: inside a window, or when the next opens. */
  insideWindow(now = this.clock.now()): { inside: boolean; window?: WindowOccurrence; next?: WindowOccurrence } {
    const window = this.currentWindow(now);
    if (window) return { inside: true, window };
    const next = this.nextWindows(now, 1)[0];
    return next ? { inside: false, next } : { inside: false };
  }

  /** The next `n` occurrences not skipped whose end is after `now` (the open one first). */
  nextWindows(now = this.clock.now(), n = 3): WindowOccurrence[] {
    const found: WindowOccurrence[] = [];
    // Widen the horizon until n are found (a window's cron may be yearly); at most ~2 years.
    for (let days = 8; days <= 800 && found.length < n; days *= 4) {
      found.splice(0, found.length, ...this.occurrences(now, now + days * 86_400_000).filter((o) => o.state !== 'skipped'));
    }
    return found.slice(0, n);
  }

  /** The WMS's answer to an announced window (the `maintenance` operation's window form). */
  answer(id: string, action: 'defer' | 'skip', bySec?: number): AnswerResult {
    const now = this.clock.now();
    const def = this.opts.windows.find((w) => w.id === id);
    if (!def) {
      const ids = this.opts.windows.map((w) => w.id);
      return { ok: false, code: 'unknown-window', message: `no maintenance window ${JSON.stringify(id)} is configured (${ids.length > 0 ? `there are: ${ids.join(', ')}` : 'maintenance.windows is empty'})` };
    }
    const occ = this.occurrences(now, now + (this.opts.announceSec + this.opts.maxDeferSec) * 1000).find((o) => o.id === id && (o.state === 'announced' || o.state === 'deferred') && now < o.start);
    if (!occ) {
      return { ok: false, code: 'window-not-announced', message: `window ${id} has no announced occurrence to answer: a window is answered between its announcement (${this.opts.announceSec} s before it starts) and its start` };
    }
    if (action === 'skip') {
      const window: WindowOccurrence = { ...occ, state: 'skipped' };
      this.write(window, now);
      this.announce(window, 'skipped', now);
      return { ok: true, action, window };
    }
    const by = bySec ?? Math.min(DEFAULT_DEFER_SEC, this.opts.maxDeferSec - occ.deferredSec);
    const left = this.opts.maxDeferSec - occ.deferredSec;
    if (by < 1 || by > left) {
      return { ok: false, code: 'window-defer-beyond-max', message: `window ${id} can be deferred by ${left} s more at most (maintenance.maxDeferSec ${this.opts.maxDeferSec}, already ${occ.deferredSec}); asked ${by}` };
    }
    const window: WindowOccurrence = { ...occ, start: occ.start + by * 1000, end: occ.end + by * 1000, state: 'deferred', deferredSec: occ.deferredSec + by };
    this.write(window, now);
    this.announce(window, 'deferred', now);
    this.reschedule(now);
    return { ok: true, action, window };
  }

  private occurrences(from: number, to: number): WindowOccurrence[] {
    const lookBack = Math.max(0, ...this.opts.windows.map((w) => w.durationSec)) + this.opts.maxDeferSec;
    return windowOccurrences(this.opts.windows, readWindowRows(this.opts.db, from - lookBack * 1000), from, to, this.opts.maxDeferSec);
  }

  private write(o: WindowOccurrence, now: number): void {
    if (o.state === 'planned') return;
    writeWindowRow(this.opts.db, { windowId: o.id, baseStart: o.baseStart, start: o.start, end: o.end, state: o.state, deferredSec: o.deferredSec, updatedAt: now });
  }

  private announce(o: WindowOccurrence, action: WindowAction, now: number): void {
    const iso = (t: number): string => new Date(t).toISOString();
    const procedures = this.opts.planned?.(o.start, o.end) ?? [];
    const what: Record<WindowAction, string> = {
      announced: `maintenance window ${o.id} opens at ${iso(o.start)} until ${iso(o.end)}`,
      deferred: `maintenance window ${o.id} deferred: it opens at ${iso(o.start)} until ${iso(o.end)}`,
      skipped: `maintenance window ${o.id} of ${iso(o.start)} is skipped`,
      started: `maintenance window ${o.id} is open until ${iso(o.end)}`,
      ended: `maintenance window ${o.id} has closed`,
    };
    const event: WindowEvent = { type: 'maintenance-window', severity: 'info', code: `window-${action}`, message: what[action], ts: isoNow({ ...this.clock, now: () => now }), id: o.id, start: iso(o.start), end: iso(o.end), procedures, action };
    try {
      this.opts.emit(event);
    } catch (err) {
      this.opts.log.warn({ err, window: o.id, action }, 'maintenance-window event not queued');
    }
    this.opts.log.info({ window: o.id, action, start: event.start, end: event.end, procedures }, 'maintenance window');
  }

  /** Announces, opens and closes what is due at `now`, then sleeps until the next of those moments. */
  private tick(): void {
    if (!this.running) return;
    const now = this.clock.now();
    try {
      for (const o of this.occurrences(now - MAX_SLEEP_MS, now + this.opts.announceSec * 1000)) {
        if (o.state === 'skipped' || o.state === 'ended') continue;
        if (now >= o.end) {
          // Announced or planned but never opened while the agent ran: it closes without a word.
          if (o.state === 'started') this.announce(o, 'ended', now);
          if (o.state !== 'planned') this.write({ ...o, state: 'ended' }, now);
        } else if (now >= o.start) {
          if (o.state !== 'started') {
            this.announce(o, 'started', now);
            this.write({ ...o, state: 'started' }, now);
          }
        } else if (o.state === 'planned' && now >= o.start - this.opts.announceSec * 1000) {
          this.announce(o, 'announced', now);
          this.write({ ...o, state: 'announced' }, now);
        }
      }
    } catch (err) {
      this.opts.log.error({ err }, 'maintenance windows: tick failed; trying again later');
    }
    this.reschedule(now);
  }

  private reschedule(now: number): void {
    if (!this.running) return;
    this.clock.clearTimeout(this.timer);
    let wake = now + MAX_SLEEP_MS;
    try {
      for (const o of this.nextWindows(now, Math.max(1, this.opts.windows.length) * 2)) {
        for (const t of [o.start - this.opts.announceSec * 1000, o.start, o.end]) if (t > now && t < wake) wake = t;
      }
    } catch (err) {
      this.opts.log.error({ err }, 'maintenance windows: cannot compute the next window');
    }
    this.timer = this.clock.setTimeout(() => this.tick(), wake - now);
    this.timer.unref?.();
  }
}
