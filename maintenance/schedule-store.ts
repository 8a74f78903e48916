/**
 * The scheduler's and the windows' memory in the agent's store (its own tables, created through
 * lib/sqlite.ts migrations like every domain's): the last run of each schedule, and what became
 * of each maintenance window occurrence (announced, deferred, skipped, started, ended).
 *
 * INVARIANTS
 * - Each write is one transaction (the store runs WAL with synchronous=FULL): a power cut leaves
 *   a row before or after a change, never half of one.
 * - `handled_slot` only grows: a slot at or before it is never started again (no repeat after a
 *   restart); a slot after it that was missed is caught up by the scheduler's rule.
 * - Readers (the command line, diag) tolerate a store whose migrations have not run yet: no
 *   table reads as no rows.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';

export const SCHEDULE_MIGRATIONS: MigrationSet = {
  domain: 'maintenance-schedule',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE maintenance_schedules (
        procedure TEXT PRIMARY KEY,
        since INTEGER NOT NULL,
        handled_slot INTEGER,
        last_slot INTEGER,
        started_at INTEGER,
        ended_at INTEGER,
        outcome TEXT,
        run_id TEXT,
        message TEXT,
        overlaps INTEGER NOT NULL DEFAULT 0,
        last_overlap_slot INTEGER
      );
      CREATE TABLE maintenance_windows (
        window_id TEXT NOT NULL,
        base_start INTEGER NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        state TEXT NOT NULL,
        deferred_sec INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (window_id, base_start)
      );`,
    },
  ],
};

/**
 * What the scheduler knows of a schedule's last run. `outcome`: `running`, a run's terminal
 * state (`succeeded`, `failed`, `rolled-back`, `cancelled`, `interrupted`), `refused` (the
 * runner said no: `message` has its code), `waiting-window` (a disruptive procedure waiting for
 * the next window), `no-window` (disruptive, and no window is configured).
 */
export interface ScheduleRow {
  procedure: string;
  /** When the scheduler first saw this schedule: slots before it are never caught up. */
  since: number;
  /** The newest slot acted on (started, skipped for an overlap, or waiting for a window). */
  handledSlot: number | null;
  lastSlot: number | null;
  startedAt: number | null;
  endedAt: number | null;
  outcome: string | null;
  runId: string | null;
  message: string | null;
  /** Slots skipped because the previous run of the schedule was still going, in total. */
  overlaps: number;
  lastOverlapSlot: number | null;
}

export type WindowState = 'announced' | 'deferred' | 'skipped' | 'started' | 'ended';

export interface WindowRow {
  windowId: string;
  /** The occurrence's start from its cron: the occurrence's key. */
  baseStart: number;
  /** Its start and end now (moved by `defer`). */
  start: number;
  end: number;
  state: WindowState;
  deferredSec: number;
  updatedAt: number;
}

function missingTable(err: unknown): boolean {
  return err instanceof Error && /no such table/.test(err.message);
}

interface RawSchedule {
  procedure: string;
  since: number;
  handled_slot: number | null;
  last_slot: number | null;
  started_at: number | null;
  ended_at: number | null;
  outcome: string | null;
  run_id: string | null;
  message: string | null;
  overlaps: number;
  last_overlap_slot: number | null;
}

export function readScheduleRows(db: Db): ScheduleRow[] {
  let rows: RawSchedule[];
  try {
    rows = db.prepare('SELECT * FROM maintenance_schedules ORDER BY procedure').all() as RawSchedule[];
  } catch (err) {
    if (missingTable(err)) return [];
    throw err;
  }
  return rows.map((r) => ({
    procedure: r.procedure,
    since: r.since,
    handledSlot: r.handled_slot,
    lastSlot: r.last_slot,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    outcome: r.outcome,
    runId: r.run_id,
    message: r.message,
    overlaps: r.overlaps,
    lastOverlapSlot: r.last_overlap_slot,
  }));
}

const COLUMNS: Record<keyof Omit<ScheduleRow, 'procedure'>, string> = {
  since: 'since',
  handledSlot: 'handled_slot',
  lastSlot: 'last_slot',
  startedAt: 'started_at',
  endedAt: 'ended_at',
  outcome: 'outcome',
  runId: 'run_id',
  message: 'message',
  overlaps: 'overlaps',
  lastOverlapSlot: 'last_overlap_slot',
};

/** Changes some fields of a schedule's row (created with `since` = `now` when missing), in one transaction. */
export function updateScheduleRow(db: Db, procedure: string, now: number, change: Partial<Omit<ScheduleRow, 'procedure' | 'since'>>): void {
  const keys = Object.keys(change) as (keyof typeof change)[];
  db.transaction(() => {
    db.prepare('INSERT INTO maintenance_schedules(procedure, since) VALUES (?, ?) ON CONFLICT(procedure) DO NOTHING').run(procedure, now);
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${COLUMNS[k]} = ?`).join(', ');
    db.prepare(`UPDATE maintenance_schedules SET ${sets} WHERE procedure = ?`).run(...keys.map((k) => change[k] ?? null), procedure);
  })();
}

interface RawWindow {
  window_id: string;
  base_start: number;
  start: number;
  end: number;
  state: WindowState;
  deferred_sec: number;
  updated_at: number;
}

/** Occurrences whose (moved) end is after `since`. */
export function readWindowRows(db: Db, since: number): WindowRow[] {
  let rows: RawWindow[];
  try {
    rows = db.prepare('SELECT * FROM maintenance_windows WHERE "end" > ? ORDER BY start').all(since) as RawWindow[];
  } catch (err) {
    if (missingTable(err)) return [];
    throw err;
  }
  return rows.map((r) => ({ windowId: r.window_id, baseStart: r.base_start, start: r.start, end: r.end, state: r.state, deferredSec: r.deferred_sec, updatedAt: r.updated_at }));
}

/** Writes an occurrence's row, and forgets occurrences that ended more than `keepMs` ago, in one transaction. */
export function writeWindowRow(db: Db, row: WindowRow, keepMs = 30 * 86_400_000): void {
  db.transaction(() => {
    db.prepare(
      `INSERT INTO maintenance_windows(window_id, base_start, start, "end", state, deferred_sec, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(window_id, base_start) DO UPDATE SET start = excluded.start, "end" = excluded."end", state = excluded.state,
         deferred_sec = excluded.deferred_sec, updated_at = excluded.updated_at`,
    ).run(row.windowId, row.baseStart, row.start, row.end, row.state, row.deferredSec, row.updatedAt);
    db.prepare('DELETE FROM maintenance_windows WHERE "end" < ?').run(row.updatedAt - keepMs);
  })();
}
