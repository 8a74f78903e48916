/**
 * The runs of procedures and their reports, in the agent's store (one row per run; the run id is
 * the id of the command that started it). The runner writes a run's row before each step that
 * changes anything, so after a power cut the run continues (or rolls back) from the last step
 * boundary it recorded; reports of finished runs are kept, newest first, up to a bound.
 *
 * INVARIANTS
 * - A run's definition (the procedure as parsed) and its sha256 are written when it starts: a
 *   run resumed after a restart runs what it started with, even if the file changed since.
 * - A terminal row is never changed again (the update is refused by its WHERE clause).
 * - At most `maxReports` finished runs are kept; unfinished ones are never pruned.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';
import type { RunRecord, RunState } from './run-state.js';
import type { Procedure } from './schema.js';
import type { ParamValue } from './schema.js';

export const MAINTENANCE_MIGRATIONS: MigrationSet = {
  domain: 'maintenance',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE maintenance_runs (
        run_id TEXT PRIMARY KEY,
        procedure TEXT NOT NULL,
        definition_sha256 TEXT NOT NULL,
        definition TEXT NOT NULL,
        file TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_by TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        record TEXT NOT NULL,
        steps TEXT NOT NULL,
        rollback_steps TEXT NOT NULL,
        extra TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        deadline_at INTEGER NOT NULL,
        ended_at INTEGER,
        report TEXT
      );
      CREATE INDEX maintenance_runs_started ON maintenance_runs(started_at);
      CREATE INDEX maintenance_runs_state ON maintenance_runs(state);`,
    },
    {
      // Automatic runs from incidents and alerts (triggers.ts): the cooldown and the daily bound.
      version: 2,
      up: `CREATE TABLE maintenance_triggers (
        procedure TEXT PRIMARY KEY,
        last_at INTEGER NOT NULL,
        day TEXT NOT NULL,
        count INTEGER NOT NULL
      );`,
    },
  ],
};

/** One step's outcome in a report (CONTRACT.md section 6). */
export interface StepReport {
  id: string;
  name?: string | undefined;
  type: string;
  outcome: 'ok' | 'failed' | 'skipped' | 'would-run' | 'timeout' | 'cancelled';
  startedAt?: string;
  elapsedMs?: number;
  attempts?: number;
  exitCode?: number | null;
  output?: string;
  message?: string;
  validation?: { ok: boolean; reason: string };
  data?: unknown;
}

export interface ConditionReport {
  name?: string | undefined;
  ok: boolean;
  reason: string;
}

/** What a run keeps besides its steps: prerequisites, success criteria. */
export interface RunExtra {
  prerequisites?: ConditionReport[];
  successCriteria?: ConditionReport[];
  /** The command step's process group while it runs: a restart kills what a killed agent left. */
  running?: { pid: number; startTicks: string; bootId: string };
  /** The CPU budget (maintenance.maxCpuPct): the tree's CPU over the run as a share of one core, and the time spent pacing. */
  cpu?: { maxCpuPct: number; cpuPct: number; pacedMs: number };
}

export interface RunRow {
  runId: string;
  procedure: Procedure;
  definitionSha256: string;
  file: string;
  trigger: string;
  startedBy: string;
  dryRun: boolean;
  params: Record<string, ParamValue>;
  record: RunRecord;
  steps: StepReport[];
  rollbackSteps: StepReport[];
  extra: RunExtra;
  startedAt: number;
  deadlineAt: number;
  endedAt: number | undefined;
  report: Record<string, unknown> | undefined;
}

interface Raw {
  run_id: string;
  procedure: string;
  definition_sha256: string;
  definition: string;
  file: string;
  trigger: string;
  started_by: string;
  dry_run: number;
  params: string;
  state: string;
  record: string;
  steps: string;
  rollback_steps: string;
  extra: string;
  started_at: number;
  deadline_at: number;
  ended_at: number | null;
  report: string | null;
}

function fromRaw(r: Raw): RunRow {
  return {
    runId: r.run_id,
    procedure: JSON.parse(r.definition) as Procedure,
    definitionSha256: r.definition_sha256,
    file: r.file,
    trigger: r.trigger,
    startedBy: r.started_by,
    dryRun: r.dry_run === 1,
    params: JSON.parse(r.params) as Record<string, ParamValue>,
    record: JSON.parse(r.record) as RunRecord,
    steps: JSON.parse(r.steps) as StepReport[],
    rollbackSteps: JSON.parse(r.rollback_steps) as StepReport[],
    extra: JSON.parse(r.extra) as RunExtra,
    startedAt: r.started_at,
    deadlineAt: r.deadline_at,
    endedAt: r.ended_at ?? undefined,
    report: r.report === null ? undefined : (JSON.parse(r.report) as Record<string, unknown>),
  };
}

const TERMINAL = "('succeeded', 'failed', 'rolled-back', 'cancelled', 'interrupted')";

/** A finished run as `reports` lists it. */
export interface ReportSummary {
  runId: string;
  procedure: string;
  state: RunState;
  trigger: string;
  startedBy: string;
  dryRun: boolean;
  startedAt: string;
  endedAt: string | undefined;
}

export class RunStore {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      get: db.prepare<[string], Raw>('SELECT * FROM maintenance_runs WHERE run_id = ?'),
      insert: db.prepare(`INSERT INTO maintenance_runs(run_id, procedure, definition_sha256, definition, file, trigger, started_by, dry_run, params, state, record, steps, rollback_steps, extra, started_at, deadline_at)
        VALUES (@runId, @procedure, @sha, @definition, @file, @trigger, @startedBy, @dryRun, @params, @state, @record, @steps, @rollbackSteps, @extra, @startedAt, @deadlineAt)`),
      save: db.prepare(`UPDATE maintenance_runs SET state = @state, record = @record, steps = @steps, rollback_steps = @rollbackSteps, extra = @extra, ended_at = @endedAt, report = @report
        WHERE run_id = @runId AND state NOT IN ${TERMINAL}`),
      unfinished: db.prepare<[], Raw>(`SELECT * FROM maintenance_runs WHERE state NOT IN ${TERMINAL} ORDER BY started_at`),
      list: db.prepare<[number], { run_id: string; procedure: string; state: string; trigger: string; started_by: string; dry_run: number; started_at: number; ended_at: number | null }>(
        'SELECT run_id, procedure, state, trigger, started_by, dry_run, started_at, ended_at FROM maintenance_runs ORDER BY started_at DESC, rowid DESC LIMIT ?',
      ),
      lastOf: db.prepare<[string], Raw>(`SELECT * FROM maintenance_runs WHERE procedure = ? AND state IN ${TERMINAL} ORDER BY started_at DESC, rowid DESC LIMIT 1`),
      prune: db.prepare(`DELETE FROM maintenance_runs WHERE state IN ${TERMINAL} AND run_id NOT IN (SELECT run_id FROM maintenance_runs WHERE state IN ${TERMINAL} ORDER BY started_at DESC, rowid DESC LIMIT ?)`),
    };
  }

  get(runId: string): RunRow | undefined {
    const r = this.s.get.get(runId);
    return r ? fromRaw(r) : undefined;
  }

  insert(row: RunRow): void {
    this.s.insert.run({
      runId: row.runId,
      procedure: row.procedure.id,
      sha: row.definitionSha256,
      definition: JSON.stringify(row.procedure),
      file: row.file,
      trigger: row.trigger,
      startedBy: row.startedBy,
      dryRun: row.dryRun ? 1 : 0,
      params: JSON.stringify(row.params),
      state: row.record.state,
      record: JSON.stringify(row.record),
      steps: JSON.stringify(row.steps),
      rollbackSteps: JSON.stringify(row.rollbackSteps),
      extra: JSON.stringify(row.extra),
      startedAt: row.startedAt,
      deadlineAt: row.deadlineAt,
    });
  }

  /** Writes the run's progress; false when the row is already terminal (or unknown). */
  save(row: RunRow): boolean {
    return (
      this.s.save.run({
        runId: row.runId,
        state: row.record.state,
        record: JSON.stringify(row.record),
        steps: JSON.stringify(row.steps),
        rollbackSteps: JSON.stringify(row.rollbackSteps),
        extra: JSON.stringify(row.extra),
        endedAt: row.endedAt ?? null,
        report: row.report === undefined ? null : JSON.stringify(row.report),
      }).changes === 1
    );
  }

  unfinished(): RunRow[] {
    return this.s.unfinished.all().map(fromRaw);
  }

  list(limit: number): ReportSummary[] {
    return this.s.list.all(limit).map((r) => ({
      runId: r.run_id,
      procedure: r.procedure,
      state: r.state as RunState,
      trigger: r.trigger,
      startedBy: r.started_by,
      dryRun: r.dry_run === 1,
      startedAt: new Date(r.started_at).toISOString(),
      endedAt: r.ended_at === null ? undefined : new Date(r.ended_at).toISOString(),
    }));
  }

  /** The newest finished run of a procedure. */
  lastOf(procedure: string): RunRow | undefined {
    const r = this.s.lastOf.get(procedure);
    return r ? fromRaw(r) : undefined;
  }

  /** Keeps the newest `keep` finished runs; returns how many were removed. */
  prune(keep: number): number {
    return this.s.prune.run(keep).changes;
  }
}
