/**
 * The performance review of the `trend-report` action (maintenance-weekly: 7 days,
 * maintenance-monthly: 30 days): the health history of a period summarised per component
 * (memory, CPU, disk growth, restarts and incidents), each figure against the period of the same
 * length just before it, as data (the report's step data, `--json`) and as a table per
 * component for a person (`edge-agent maintenance report RUN`).
 *
 * INVARIANTS
 * - Pure apart from readHourRollups(), which only reads the hour tier of health/history.ts; a
 *   store without health tables reads as no data.
 * - A period with no samples of a metric shows no figure (null, printed "-"), never 0: no data
 *   is not a quiet gateway.
 * - Restarts and incidents are counted from the incidents the caller hands in (recovery/'s
 *   table); a component with no metrics but incidents still gets its table.
 */
import type { Db } from '../lib/sqlite.js';

export interface RollupRow {
  metric: string;
  /** Start of the hour, ms since the epoch. */
  t: number;
  n: number;
  sum: number;
  min: number;
  max: number;
}

export interface IncidentFact {
  at: number;
  component: string;
  action: string;
}

export interface ReviewRow {
  measure: string;
  unit: string;
  current: number | null;
  previous: number | null;
  /** current - previous; null when either is missing. */
  change: number | null;
}

export interface ComponentReview {
  component: string;
  rows: ReviewRow[];
}

export interface PerfReview {
  days: number;
  /** The period reviewed: [from, to); the one before: [previousFrom, from). ISO times. */
  from: string;
  to: string;
  previousFrom: string;
  /** Hours with samples in each period (how much history there was to summarise). */
  hours: { current: number; previous: number };
  components: ComponentReview[];
}

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** The hour rollups of the metrics the review reads, from `from` to `to`. */
export function readHourRollups(db: Db, from: number, to: number): RollupRow[] {
  try {
    return db
      .prepare<[number, number], RollupRow>(
        `SELECT m.name AS metric, r.t AS t, r.n AS n, r.sum AS sum, r.min AS min, r.max AS max
         FROM health_rollup r JOIN health_metrics m ON m.id = r.metric
         WHERE r.tier = 2 AND r.t >= ? AND r.t < ?
           AND (m.name LIKE 'agent.%' OR m.name LIKE 'bridge.%' OR m.name LIKE 'disk.%' OR m.name IN ('cpu.pct', 'mem.usedPct', 'swap.usedPct'))
         ORDER BY r.t`,
      )
      .all(from, to);
  } catch (err) {
    if (err instanceof Error && /no such table/.test(err.message)) return [];
    throw err;
  }
}

interface Agg {
  n: number;
  sum: number;
  max: number;
  /** Average of the first and of the last hour with samples (growth). */
  first: number;
  last: number;
}

function aggregate(rows: readonly RollupRow[]): Map<string, Agg> {
  const out = new Map<string, Agg>();
  for (const r of rows) {
    if (r.n <= 0) continue;
    const a = out.get(r.metric);
    const avg = r.sum / r.n;
    if (!a) out.set(r.metric, { n: r.n, sum: r.sum, max: r.max, first: avg, last: avg });
    else {
      a.n += r.n;
      a.sum += r.sum;
      a.max = Math.max(a.max, r.max);
      a.last = avg; // rows come oldest first
    }
  }
  return out;
}

const round = (v: number): number => Math.round(v * 10) / 10;

function row(measure: string, unit: string, cur: number | undefined, prev: number | undefined): ReviewRow {
  const c = cur === undefined ? null : round(cur);
  const p = prev === undefined ? null : round(prev);
  return { measure, unit, current: c, previous: p, change: c === null || p === null ? null : round(c - p) };
}

const avgOf = (a: Agg | undefined): number | undefined => (a ? a.sum / a.n : undefined);
const maxOf = (a: Agg | undefined): number | undefined => a?.max;

/** A restart in the incidents' terms: the watchdog restarted it, or handed the bridge over. */
export function isRestart(action: string): boolean {
  return /restart|handover|respawn/.test(action);
}

/**
 * The review of the `days` before `now` against the `days` before those. `rows`: the hour
 * rollups of both periods (readHourRollups(db, now - 2 * days, now)); `incidents`: those of both
 * periods.
 */
export function perfReview(rows: readonly RollupRow[], incidents: readonly IncidentFact[], days: number, now: number): PerfReview {
  const to = now;
  const from = now - days * DAY;
  const previousFrom = from - days * DAY;
  const cur = aggregate(rows.filter((r) => r.t >= from && r.t < to));
  const prev = aggregate(rows.filter((r) => r.t >= previousFrom && r.t < from));
  const hours = (lo: number, hi: number): number => new Set(rows.filter((r) => r.t >= lo && r.t < hi).map((r) => Math.floor(r.t / HOUR))).size;
  const both = (m: string, f: (a: Agg | undefined) => number | undefined): [number | undefined, number | undefined] => [f(cur.get(m)), f(prev.get(m))];

  const counts = (component: string): ReviewRow[] => {
    const of = (lo: number, hi: number): IncidentFact[] => incidents.filter((i) => i.component === component && i.at >= lo && i.at < hi);
    const c = of(from, to);
    const p = of(previousFrom, from);
    return [row('restarts', 'count', c.filter((i) => isRestart(i.action)).length, p.filter((i) => isRestart(i.action)).length), row('incidents', 'count', c.length, p.length)];
  };

  // A process's memory and CPU, average and peak, from its metrics `{m}.rssMB` and `{m}.cpuPct`.
  const processRows = (m: string): ReviewRow[] => [
    row('memory avg', 'MB', ...both(`${m}.rssMB`, avgOf)),
    row('memory peak', 'MB', ...both(`${m}.rssMB`, maxOf)),
    row('CPU avg', '%', ...both(`${m}.cpuPct`, avgOf)),
    row('CPU peak', '%', ...both(`${m}.cpuPct`, maxOf)),
  ];
  const components: ComponentReview[] = [];
  components.push({
    component: 'agent',
    rows: [...processRows('agent'), row('event-loop lag peak', 'ms', ...both('agent.loopLagMs', maxOf)), ...counts('agent')],
  });
  components.push({
    component: 'plc-bridge',
    rows: [...processRows('bridge'), ...counts('plc-bridge')],
  });
  components.push({
    component: 'system',
    rows: [row('CPU avg', '%', ...both('cpu.pct', avgOf)), row('CPU peak', '%', ...both('cpu.pct', maxOf)), row('memory used avg', '%', ...both('mem.usedPct', avgOf)), row('memory used peak', '%', ...both('mem.usedPct', maxOf))],
  });
  const disks = [...new Set([...cur.keys(), ...prev.keys()].flatMap((m) => /^disk\.(.+)\.freeMB$/.exec(m)?.[1] ?? []))].sort();
  for (const d of disks) {
    // Growth: what the used space grew by over the period, from the first hour's free space to the last's.
    const growth = (a: Agg | undefined): number | undefined => (a ? a.first - a.last : undefined);
    components.push({
      component: `disk ${d}`,
      rows: [
        row('used at the end', '%', ...both(`disk.${d}.usedPct`, (a) => a?.last)),
        row('growth', 'MB', ...both(`disk.${d}.freeMB`, growth)),
        row('inodes used at the end', '%', ...both(`disk.${d}.inodesUsedPct`, (a) => a?.last)),
      ],
    });
  }
  const named = new Set(['agent', 'plc-bridge']);
  const others = [...new Set(incidents.filter((i) => i.at >= previousFrom && i.at < to).map((i) => i.component))].filter((c) => !named.has(c)).sort();
  for (const c of others) components.push({ component: c, rows: counts(c) });
  return {
    days,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    previousFrom: new Date(previousFrom).toISOString(),
    hours: { current: hours(from, to), previous: hours(previousFrom, from) },
    components,
  };
}

/** Is `v` a review (the step data of a trend-report step)? */
export function isPerfReview(v: unknown): v is PerfReview {
  const r = v as Partial<PerfReview> | null;
  return typeof r === 'object' && r !== null && typeof r.days === 'number' && Array.isArray(r.components);
}

const fmt = (v: number | null, signed = false): string => (v === null ? '-' : `${signed && v > 0 ? '+' : ''}${v}`);

/** The review for a person: a table per component. */
export function formatPerfReview(r: PerfReview, indent = ''): string[] {
  const cur = `last ${r.days} days`;
  const prev = `${r.days} days before`;
  const lines = [`${indent}performance review: ${r.from} to ${r.to} (${r.hours.current} hours of history) against ${r.previousFrom} to ${r.from} (${r.hours.previous} hours)`];
  for (const c of r.components) {
    const labels = c.rows.map((x) => `${x.measure} (${x.unit})`);
    const w = Math.max(c.component.length, ...labels.map((l) => l.length));
    lines.push('', `${indent}${c.component.padEnd(w)}  ${cur.padStart(14)}  ${prev.padStart(16)}  ${'change'.padStart(8)}`);
    c.rows.forEach((x, i) => lines.push(`${indent}${labels[i]!.padEnd(w)}  ${fmt(x.current).padStart(14)}  ${fmt(x.previous).padStart(16)}  ${fmt(x.change, true).padStart(8)}`));
  }
  return lines;
}
