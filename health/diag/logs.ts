/**
 * Group `logs`: the warnings and errors of the last day from the agent's recent-log ring
 * (lib/log-ring.ts, `{dataDir}/logs/agent.log*`), grouped by component and code with a count,
 * the first and last time seen and the latest message. A line without a code is grouped by its
 * message instead, so unrelated problems do not pile up under one "no code" entry.
 *
 * Errors in the last hour make the group a warning: they say what the other groups may only
 * show as a symptom. Logs alone never make a failure.
 */
import { logRingDir } from '../../core/config.js';
import { readRing } from '../../lib/log-ring.js';
import { ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';

export const LOG_WINDOW_MS = 24 * 3600 * 1000;
const RECENT_ERROR_MS = 3600 * 1000;
/** Groups in the report, the most frequent first. */
export const MAX_GROUPS = 20;

export interface LogGroup {
  component: string;
  code: string | null;
  level: 'warn' | 'error' | 'fatal';
  count: number;
  firstSeen: string;
  lastSeen: string;
  message: string;
}

const LEVELS: Record<number, LogGroup['level']> = { 40: 'warn', 50: 'error', 60: 'fatal' };

interface Line {
  level?: unknown;
  time?: unknown;
  component?: unknown;
  name?: unknown;
  code?: unknown;
  msg?: unknown;
  err?: { code?: unknown; type?: unknown; message?: unknown };
}

function timeOf(t: unknown): number | undefined {
  if (typeof t === 'number') return t;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/**
 * Warn and above since `since`, grouped by component and code (or message); pure. Lines that
 * are not JSON objects with a level and a time are ignored.
 */
export function groupLogLines(lines: Iterable<string>, since: number): LogGroup[] {
  const groups = new Map<string, LogGroup & { first: number; last: number; levelNo: number }>();
  for (const text of lines) {
    let l: Line;
    try {
      l = JSON.parse(text) as Line;
    } catch {
      continue;
    }
    if (l === null || typeof l !== 'object' || typeof l.level !== 'number' || l.level < 40) continue;
    const at = timeOf(l.time);
    if (at === undefined || at < since) continue;
    const component = typeof l.component === 'string' ? l.component : typeof l.name === 'string' ? l.name : '-';
    const rawCode = l.code ?? l.err?.code;
    const code = typeof rawCode === 'string' || typeof rawCode === 'number' ? String(rawCode) : null;
    const message = typeof l.msg === 'string' ? l.msg : typeof l.err?.message === 'string' ? l.err.message : '';
    const key = `${component}\u0000${code ?? `\u0001${message}`}`;
    const levelNo = Math.min(60, Math.floor(l.level / 10) * 10);
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { component, code, level: LEVELS[levelNo] ?? 'warn', levelNo, count: 1, first: at, last: at, firstSeen: '', lastSeen: '', message });
      continue;
    }
    g.count++;
    if (at < g.first) g.first = at;
    if (at >= g.last) {
      g.last = at;
      g.message = message;
    }
    if (levelNo > g.levelNo) {
      g.levelNo = levelNo;
      g.level = LEVELS[levelNo] ?? g.level;
    }
  }
  return [...groups.values()]
    .sort((a, b) => b.levelNo - a.levelNo || b.count - a.count || b.last - a.last)
    .map(({ component, code, level, count, first, last, message }) => ({ component, code, level, count, firstSeen: new Date(first).toISOString(), lastSeen: new Date(last).toISOString(), message }));
}

/** The group's verdict from the grouped lines; pure. */
export function logsVerdict(groups: LogGroup[], now: number): CheckResult {
  const shown = groups.slice(0, MAX_GROUPS);
  const details = { windowHours: LOG_WINDOW_MS / 3600_000, groups: shown, more: Math.max(0, groups.length - MAX_GROUPS) };
  const errors = groups.filter((g) => g.level !== 'warn');
  const recent = errors.filter((g) => Date.parse(g.lastSeen) >= now - RECENT_ERROR_MS);
  const count = (gs: LogGroup[]): number => gs.reduce((n, g) => n + g.count, 0);
  const top = (gs: LogGroup[]): string =>
    gs
      .slice(0, 3)
      .map((g) => `${g.component}/${g.code ?? g.message.slice(0, 60)} x${g.count}`)
      .join(', ');
  if (recent.length > 0) {
    return warning('recent', `${count(recent)} errors in the last hour (${top(recent)})`, 'read the grouped errors below (details.groups) and the full log (journalctl -u edge-agent); the other groups show what they affect', details);
  }
  if (groups.length === 0) return ok('recent', 'no warnings or errors in the last 24 h', details);
  return ok('recent', `${count(groups)} warnings and errors in the last 24 h, none in the last hour (${top(groups)})`, details);
}

export const logsChecks: GroupCheck = async (ctx) => {
  const dir = logRingDir(ctx.config);
  const lines = readRing(dir, ctx.config.diag.logRing.files);
  if (lines.length === 0) return [skipped('recent', `no recent log in ${dir} (the daemon has not run here yet)`)];
  const now = ctx.now();
  return [logsVerdict(groupLogLines(lines, now - LOG_WINDOW_MS), now)];
};
