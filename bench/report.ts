/**
 * Results: every measurement is the median of its runs, next to the median of a reference
 * measured in the same run, and their ratio (value / reference). Pure functions plus one
 * writer; the table is for people, the JSON (bench/results/*.json) for tools and the smoke test.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Goal {
  op: '<=' | '<' | '>=';
  value: number;
  /** What the goal bounds: the measured value (default), the ratio value / reference, or the difference value - reference. */
  of?: 'ratio' | 'delta';
}

export interface Measurement {
  id: string;
  title: string;
  unit: string;
  value: number;
  samples: number[];
  reference: { name: string; value: number; samples: number[] };
  /** value / reference.value */
  ratio: number;
  goal: Goal | undefined;
  goalMet: boolean | undefined;
  /** Medians of supporting numbers (breakdowns, raw timings), for whoever digs deeper. */
  details: Record<string, number>;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  node: string;
  platform: string;
  cpus: number;
  broker: { kind: string; version: string; note: string };
  config: Record<string, number | boolean>;
  measurements: Measurement[];
  goalsMet: boolean;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function meetsGoal(value: number, goal: Goal): boolean {
  switch (goal.op) {
    case '<=':
      return value <= goal.value;
    case '<':
      return value < goal.value;
    case '>=':
      return value >= goal.value;
  }
}

export function measurement(m: {
  id: string;
  title: string;
  unit: string;
  samples: number[];
  reference: { name: string; samples: number[] };
  goal?: Goal;
  details?: Record<string, number[]>;
}): Measurement {
  const value = median(m.samples);
  const ref = median(m.reference.samples);
  const details: Record<string, number> = {};
  for (const [k, xs] of Object.entries(m.details ?? {})) details[k] = median(xs);
  return {
    id: m.id,
    title: m.title,
    unit: m.unit,
    value,
    samples: m.samples,
    reference: { name: m.reference.name, value: ref, samples: m.reference.samples },
    ratio: value / ref,
    goal: m.goal,
    goalMet: m.goal ? meetsGoal(m.goal.of === 'ratio' ? value / ref : m.goal.of === 'delta' ? value - ref : value, m.goal) : undefined,
    details,
  };
}

function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return String(v);
  if (unit === 'msg/s') return `${Math.round(v).toLocaleString('en-US')} ${unit}`;
  if (unit === 'MB') return `${v.toFixed(1)} ${unit}`;
  return `${v < 10 ? v.toFixed(2) : Math.round(v)} ${unit}`;
}

/** A plain-text table: one row per measurement, its reference underneath. */
export function formatTable(ms: readonly Measurement[]): string {
  const rows: string[][] = [['Measurement', 'Median', 'Reference (same run)', 'Ref median', 'Ratio', 'Goal']];
  for (const m of ms) {
    const bound =
      m.goal?.of === 'ratio'
        ? `ratio ${m.goal.op} ${m.goal.value.toFixed(2)}x`
        : m.goal?.of === 'delta'
          ? `${m.goal.op} +${fmt(m.goal.value, m.unit)} (${m.value - m.reference.value >= 0 ? '+' : ''}${fmt(m.value - m.reference.value, m.unit)})`
          : m.goal
            ? `${m.goal.op} ${fmt(m.goal.value, m.unit)}`
            : '';
    const goal = m.goal ? `${bound} ${m.goalMet ? 'met' : 'MISSED'}` : '-';
    rows.push([m.title, fmt(m.value, m.unit), m.reference.name, fmt(m.reference.value, m.unit), `${m.ratio.toFixed(2)}x`, goal]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((cell, c) => (c === 1 || c === 3 || c === 4 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n').replace(/ +$/gm, '');
}

/** One line per measurement with every sample, so the spread is visible next to the median. */
export function formatSamples(ms: readonly Measurement[]): string {
  const r = (xs: number[]): string => xs.map((x) => (x >= 100 ? Math.round(x) : x.toFixed(1))).join(', ');
  return ms
    .map((m) => {
      const details = Object.entries(m.details).map(([k, v]) => `${k} ${v >= 100 ? Math.round(v) : v.toFixed(1)}`);
      return `${m.id}: [${r(m.samples)}] vs reference [${r(m.reference.samples)}]${details.length ? `\n  medians: ${details.join(', ')}` : ''}`;
    })
    .join('\n');
}

export function writeResults(path: string, results: BenchResults): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(results, null, 2) + '\n');
}
