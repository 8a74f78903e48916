/**
 * `edge-agent health`: trends of the health metrics from the state store (opened read-only; works
 * when the daemon is down) and the alerts active when the daemon last stored them. The daemon
 * writes its samples about once a minute, so the newest minute may not be there yet.
 */
import { alertView, type AlertView } from '../../health/monitor.js';
import { queryHistory, readActiveAlerts, type HistoryQuery, type SeriesPoint } from '../../health/history.js';
import { contextOrExit, fail, withStoreReadonly } from './context.js';

type Values = Record<string, string | boolean | undefined>;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `90m`, `24h`, `7d` -> milliseconds; undefined when malformed. Pure. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(s.trim());
  if (!m?.[1] || !m[2]) return undefined;
  const ms = Number(m[1]) * (UNITS[m[2]] ?? NaN);
  return Number.isFinite(ms) && ms >= 1000 ? Math.round(ms) : undefined;
}

export interface HealthReport {
  since: string;
  from: string;
  to: string;
  tier: HistoryQuery['tier'];
  bucketMs: number;
  metrics: Record<string, (Omit<SeriesPoint, 't'> & { t: string })[]>;
  alerts: AlertView[];
}

const SPARK = '▁▂▃▄▅▆▇█';

function num(v: number): string {
  const a = Math.abs(v);
  return a >= 1000 ? String(Math.round(v)) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** One bar per bucket, scaled between the lowest and highest average; a gap is a space. Pure. */
export function sparkline(points: readonly SeriesPoint[], from: number, bucketMs: number, buckets: number): string {
  const avgs = new Map(points.map((p) => [Math.round((p.t - from) / bucketMs), p.avg]));
  const vals = [...avgs.values()];
  const lo = Math.min(...vals);
  const hi = Math.max(...vals);
  let out = '';
  for (let i = 0; i < buckets; i++) {
    const v = avgs.get(i);
    out += v === undefined ? ' ' : SPARK[hi === lo ? 0 : Math.round(((v - lo) / (hi - lo)) * (SPARK.length - 1))];
  }
  return out;
}

function span(ms: number): string {
  for (const [u, size] of [['d', 86_400_000], ['h', 3_600_000], ['min', 60_000]] as const) if (ms >= size && ms % size === 0) return `${ms / size} ${u}`;
  return `${Math.round(ms / 1000)} s`;
}

function matcher(pattern: string | undefined): (name: string) => boolean {
  if (pattern === undefined) return () => true;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (n) => re.test(n);
}

export function formatHealth(r: HealthReport, detail: boolean): string {
  const lines = [`health since ${r.from} (${r.since}; ${r.tier === 'raw' ? 'raw samples' : `${r.tier} rollups`}, buckets of ${span(r.bucketMs)})`, ''];
  const names = Object.keys(r.metrics).sort();
  if (names.length === 0) lines.push('no samples in this range');
  const from = Date.parse(r.from);
  const buckets = Math.ceil((Date.parse(r.to) - from) / r.bucketMs);
  if (!detail && names.length > 0) {
    const w = Math.max(6, ...names.map((n) => n.length));
    lines.push(`${'metric'.padEnd(w)}  ${'min'.padStart(8)}  ${'avg'.padStart(8)}  ${'max'.padStart(8)}  ${'last'.padStart(8)}  trend`);
    for (const n of names) {
      const pts = r.metrics[n]!.map((p) => ({ ...p, t: Date.parse(p.t) }));
      const n1 = pts.reduce((a, p) => a + p.n, 0);
      const avg = pts.reduce((a, p) => a + p.avg * p.n, 0) / n1;
      const min = Math.min(...pts.map((p) => p.min));
      const max = Math.max(...pts.map((p) => p.max));
      const last = pts[pts.length - 1]!.avg;
      lines.push(`${n.padEnd(w)}  ${num(min).padStart(8)}  ${num(avg).padStart(8)}  ${num(max).padStart(8)}  ${num(last).padStart(8)}  ${sparkline(pts, from, r.bucketMs, buckets)}`);
    }
  }
  if (detail) {
    for (const n of names) {
      lines.push(n, `  ${'bucket start'.padEnd(24)}  ${'n'.padStart(6)}  ${'min'.padStart(8)}  ${'avg'.padStart(8)}  ${'max'.padStart(8)}`);
      for (const p of r.metrics[n]!) lines.push(`  ${p.t.padEnd(24)}  ${String(p.n).padStart(6)}  ${num(p.min).padStart(8)}  ${num(p.avg).padStart(8)}  ${num(p.max).padStart(8)}`);
      lines.push('');
    }
  }
  lines.push('', 'active alerts');
  if (r.alerts.length === 0) lines.push('  none');
  for (const a of r.alerts) {
    const when = a.kind === 'degradation' ? `, threshold expected ${a.predictedAt ?? '?'}` : '';
    lines.push(`  ${a.code.padEnd(22)} ${a.metric} ${num(a.value)} (threshold ${num(a.threshold)}) since ${a.since}${when}`);
  }
  return lines.join('\n') + '\n';
}

export async function healthCommand(v: Values): Promise<number> {
  const name = 'edge-agent health';
  const since = typeof v.since === 'string' ? v.since : '24h';
  const sinceMs = parseDuration(since);
  if (sinceMs === undefined) {
    process.stderr.write(`${name}: --since takes a duration such as 90m, 24h or 7d, got ${JSON.stringify(since)}\n`);
    return 64;
  }
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let report: HealthReport | undefined;
  try {
    report = withStoreReadonly(ctx.store, (db): HealthReport => {
      const q = queryHistory(db, { sinceMs, now: Date.now(), retention: ctx.config.health.retention });
      const keep = matcher(typeof v.metric === 'string' ? v.metric : undefined);
      const metrics: HealthReport['metrics'] = {};
      for (const [m, pts] of Object.entries(q.metrics)) if (keep(m)) metrics[m] = pts.map((p) => ({ ...p, t: new Date(p.t).toISOString() }));
      const iso = (ms: number): string => new Date(ms).toISOString();
      return { since, from: iso(q.from), to: iso(q.to), tier: q.tier, bucketMs: q.bucketMs, metrics, alerts: readActiveAlerts(db).map(alertView) };
    });
  } catch (err) {
    return fail(name, err);
  }
  if (!report) {
    process.stderr.write(`${name}: no state store at ${ctx.store}: the agent has not run with this data directory (give its --config or --data-dir)\n`);
    return 3;
  }
  process.stdout.write(v.json ? JSON.stringify(report, null, 2) + '\n' : formatHealth(report, typeof v.metric === 'string'));
  return 0;
}
