/**
 * Health history in the agent's store: raw samples, minute and hour rollups (count, sum, min,
 * max per metric), each tier with its own retention, and the active alerts (so a restart neither
 * raises them again nor forgets to clear them).
 *
 * INVARIANTS
 * - Rollups are maintained as samples are written (an upsert per tier), so they never depend on
 *   raw rows that retention may already have removed; a sample is in all three tiers or none
 *   (one transaction per flush).
 * - Samples are buffered and written every `flush()` (the monitor calls it about once a minute):
 *   the store runs synchronous=FULL, and losing the last minute of history on a power cut is a
 *   fair price for not syncing every ten seconds.
 * - Metric names are interned in health_metrics; rows carry the integer id (a third of the bytes).
 * - Time comes from the callers (`now`, each sample's `ts`): tests use made-up clocks.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';
import type { ActiveAlert } from './alerts.js';
import type { Metrics } from './sampler.js';

export const HEALTH_MIGRATIONS: MigrationSet = {
  domain: 'health',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE health_metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE health_raw (t INTEGER NOT NULL, metric INTEGER NOT NULL, v REAL NOT NULL, PRIMARY KEY (t, metric)) WITHOUT ROWID;
      CREATE TABLE health_rollup (
        tier INTEGER NOT NULL CHECK (tier IN (1, 2)),
        t INTEGER NOT NULL,
        metric INTEGER NOT NULL,
        n INTEGER NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        PRIMARY KEY (tier, t, metric)
      ) WITHOUT ROWID;
      CREATE TABLE health_alerts (key TEXT PRIMARY KEY, alert TEXT NOT NULL);`,
    },
  ],
};

export interface Retention {
  rawHours: number;
  minuteDays: number;
  hourDays: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Rollup tiers: 1 minute, 2 hour. */
const TIERS = [
  [1, MINUTE],
  [2, HOUR],
] as const;

export class HealthHistory {
  private buffer: { ts: number; metrics: Metrics }[] = [];
  private readonly ids = new Map<string, number>();
  private readonly stmts;

  constructor(private readonly opts: { db: Db; retention: Retention }) {
    const db = opts.db;
    this.stmts = {
      metricId: db.prepare<[string], { id: number }>('SELECT id FROM health_metrics WHERE name = ?'),
      addMetric: db.prepare<[string]>('INSERT INTO health_metrics(name) VALUES (?)'),
      raw: db.prepare<[number, number, number]>('INSERT OR REPLACE INTO health_raw(t, metric, v) VALUES (?, ?, ?)'),
      rollup: db.prepare<[number, number, number, number, number, number]>(
        `INSERT INTO health_rollup(tier, t, metric, n, sum, min, max) VALUES (?, ?, ?, 1, ?, ?, ?)
         ON CONFLICT(tier, t, metric) DO UPDATE SET n = n + 1, sum = sum + excluded.sum, min = min(min, excluded.min), max = max(max, excluded.max)`,
      ),
      pruneRaw: db.prepare<[number]>('DELETE FROM health_raw WHERE t < ?'),
      pruneTier: db.prepare<[number, number]>('DELETE FROM health_rollup WHERE tier = ? AND t < ?'),
      clearAlerts: db.prepare('DELETE FROM health_alerts'),
      addAlert: db.prepare<[string, string]>('INSERT INTO health_alerts(key, alert) VALUES (?, ?)'),
    };
  }

  /** Buffers a sample until the next flush(). */
  record(ts: number, metrics: Metrics): void {
    this.buffer.push({ ts, metrics });
  }

  pending(): number {
    return this.buffer.length;
  }

  /** Writes buffered samples to all tiers and applies retention, in one transaction. */
  flush(now: number): void {
    const batch = this.buffer;
    this.buffer = [];
    this.opts.db.transaction(() => {
      for (const { ts, metrics } of batch) {
        for (const [name, v] of Object.entries(metrics)) {
          if (!Number.isFinite(v)) continue;
          const id = this.metricId(name);
          this.stmts.raw.run(ts, id, v);
          for (const [tier, ms] of TIERS) this.stmts.rollup.run(tier, ts - (ts % ms), id, v, v, v);
        }
      }
      this.prune(now);
    })();
  }

  private prune(now: number): void {
    const r = this.opts.retention;
    this.stmts.pruneRaw.run(now - r.rawHours * HOUR);
    this.stmts.pruneTier.run(1, now - r.minuteDays * DAY);
    this.stmts.pruneTier.run(2, now - r.hourDays * DAY);
  }

  private metricId(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.stmts.metricId.get(name)?.id ?? Number(this.stmts.addMetric.run(name).lastInsertRowid);
      this.ids.set(name, id);
    }
    return id;
  }

  /** Replaces the stored set of active alerts. */
  saveAlerts(alerts: readonly ActiveAlert[]): void {
    this.opts.db.transaction(() => {
      this.stmts.clearAlerts.run();
      for (const a of alerts) this.stmts.addAlert.run(a.key, JSON.stringify(a));
    })();
  }
}

function missingTables(err: unknown): boolean {
  return err instanceof Error && /no such table/.test(err.message);
}

/** The active alerts the daemon last stored; [] when there are none or no health tables yet. */
export function readActiveAlerts(db: Db): ActiveAlert[] {
  try {
    return db
      .prepare<[], { alert: string }>('SELECT alert FROM health_alerts')
      .all()
      .map((r) => JSON.parse(r.alert) as ActiveAlert)
      .sort((a, b) => a.since - b.since);
  } catch (err) {
    if (missingTables(err)) return [];
    throw err;
  }
}

/** Raw samples since `from` (ms), oldest first: what the degradation window is seeded from after a restart. */
export function readRawSince(db: Db, from: number): { ts: number; metrics: Metrics }[] {
  const rows = db
    .prepare<[number], { t: number; name: string; v: number }>('SELECT r.t, m.name, r.v FROM health_raw r JOIN health_metrics m ON m.id = r.metric WHERE r.t >= ? ORDER BY r.t')
    .all(from);
  const out: { ts: number; metrics: Metrics }[] = [];
  for (const r of rows) {
    let last = out[out.length - 1];
    if (!last || last.ts !== r.t) out.push((last = { ts: r.t, metrics: {} }));
    last.metrics[r.name] = r.v;
  }
  return out;
}

export interface SeriesPoint {
  /** Start of the bucket, ms since the epoch. */
  t: number;
  n: number;
  min: number;
  avg: number;
  max: number;
}

export interface HistoryQuery {
  from: number;
  to: number;
  tier: 'raw' | 'minute' | 'hour';
  bucketMs: number;
  metrics: Record<string, SeriesPoint[]>;
}

/**
 * Min/avg/max per metric in about `buckets` equal buckets from `now - sinceMs` to `now`, from the
 * finest tier that still holds that range: raw up to 3 hours (and within raw retention), minutes
 * up to their retention, hours beyond. Empty (no metrics) when the store has no health tables.
 */
export function queryHistory(db: Db, q: { sinceMs: number; now: number; retention: Retention; buckets?: number }): HistoryQuery {
  const buckets = Math.max(1, q.buckets ?? 12);
  const r = q.retention;
  const tier = q.sinceMs <= Math.min(3 * HOUR, r.rawHours * HOUR) ? 'raw' : q.sinceMs <= r.minuteDays * DAY ? 'minute' : 'hour';
  const res = tier === 'raw' ? 1000 : tier === 'minute' ? MINUTE : HOUR;
  // Bucket edges on the tier's own resolution, so a rollup row never straddles two buckets.
  const bucketMs = Math.max(res, Math.ceil(q.sinceMs / buckets / res) * res);
  const from = Math.floor((q.now - q.sinceMs) / res) * res;
  const sql =
    tier === 'raw'
      ? `SELECT m.name AS name, CAST((r.t - ?) / ? AS INTEGER) AS b, count(*) AS n, sum(r.v) AS sum, min(r.v) AS min, max(r.v) AS max
         FROM health_raw r JOIN health_metrics m ON m.id = r.metric WHERE r.t >= ? AND r.t <= ? GROUP BY r.metric, b ORDER BY m.name, b`
      : `SELECT m.name AS name, CAST((r.t - ?) / ? AS INTEGER) AS b, sum(r.n) AS n, sum(r.sum) AS sum, min(r.min) AS min, max(r.max) AS max
         FROM health_rollup r JOIN health_metrics m ON m.id = r.metric WHERE r.tier = ${tier === 'minute' ? 1 : 2} AND r.t >= ? AND r.t <= ? GROUP BY r.metric, b ORDER BY m.name, b`;
  const metrics: Record<string, SeriesPoint[]> = {};
  let rows: { name: string; b: number; n: number; sum: number; min: number; max: number }[];
  try {
    rows = db.prepare<[number, number, number, number], (typeof rows)[number]>(sql).all(from, bucketMs, from, q.now);
  } catch (err) {
    if (missingTables(err)) rows = [];
    else throw err;
  }
  for (const row of rows) {
    (metrics[row.name] ??= []).push({ t: from + row.b * bucketMs, n: row.n, min: row.min, avg: row.sum / row.n, max: row.max });
  }
  return { from, to: q.now, tier, bucketMs, metrics };
}
