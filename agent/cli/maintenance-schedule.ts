/**
 * `edge-agent maintenance schedule [--json]`: every schedule with its next run, last run and last
 * outcome, and the next maintenance windows (maintenance/schedule-summary.ts). Read from the
 * procedure files, the configuration and the store (read-only), so it works when the daemon is
 * not running. Also the `maintenance` part of `edge-agent status`.
 */
import { loadCatalog, shippedProceduresDir } from '../../maintenance/catalog.js';
import { agentUidFor } from '../../maintenance/safety.js';
import { readScheduleRows, readWindowRows } from '../../maintenance/schedule-store.js';
import { scheduleSummary, type ScheduleSummary } from '../../maintenance/schedule-summary.js';
import type { SchedulableProcedure } from '../../maintenance/schedule-plan.js';
import { legacyScheduleNotes } from '../../core/legacy-keys.js';
import { contextOrExit, withStoreReadonly, type CliContext } from './context.js';

type Values = Record<string, string | boolean | undefined>;

/** The summary as the files, the configuration and the store say now. */
export function readScheduleSummary(ctx: CliContext, now = Date.now()): ScheduleSummary {
  const m = ctx.config.maintenance;
  const catalog = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: m.proceduresDir, agentUid: agentUidFor(ctx.config.dataDir) });
  const procedures = catalog.entries.flatMap((e): SchedulableProcedure[] => (e.status === 'valid' && e.procedure ? [e.procedure] : []));
  const stored = withStoreReadonly(ctx.store, (db) => ({ rows: readScheduleRows(db), windowRows: readWindowRows(db, now - 8 * 86_400_000) })) ?? { rows: [], windowRows: [] };
  return scheduleSummary({ procedures, overrides: m.schedules, windows: m.windows, maxDeferSec: m.maxDeferSec, ...stored, now });
}

/** The short form for `edge-agent status`: each schedule's last run and the next window. */
export function statusSummary(s: ScheduleSummary): Record<string, unknown> {
  return {
    schedules: s.schedules.map((x) => ({ procedure: x.procedure, enabled: x.enabled, nextRun: x.nextRun, lastSlot: x.lastRun?.slot ?? null, lastOutcome: x.lastRun?.outcome ?? null, overdue: x.overdue })),
    nextWindow: s.windows[0] ?? null,
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s.padEnd(n);
}

export function formatSchedule(s: ScheduleSummary): string {
  const lines: string[] = [];
  if (s.schedules.length === 0) lines.push('no schedules (no valid procedure has one, and maintenance.schedules adds none)');
  else lines.push(`${pad('PROCEDURE', 22)}${pad('CRON', 16)}${pad('NEXT RUN', 26)}${pad('LAST RUN', 26)}OUTCOME`);
  for (const x of s.schedules) {
    const cron = `${x.cron}${x.timezone ? ` ${x.timezone}` : ''}`;
    const next = x.enabled ? (x.nextRun ?? '-') : 'disabled';
    const last = x.lastRun?.startedAt ?? x.lastRun?.slot ?? '-';
    const flags = [x.disruptive ? 'disruptive' : '', x.source === 'config' ? 'set by maintenance.schedules' : '', x.overdue ? `OVERDUE since ${x.overdueSlot}` : '', x.overlaps > 0 ? `${x.overlaps} slot${x.overlaps === 1 ? '' : 's'} skipped (overlap)` : ''].filter(Boolean);
    lines.push(`${pad(x.procedure, 22)}${pad(cron, 16)}${pad(next, 26)}${pad(last, 26)}${x.lastRun?.outcome ?? 'never ran'}${flags.length > 0 ? `  (${flags.join('; ')})` : ''}`);
    if (x.lastRun?.message) lines.push(`  ${x.lastRun.message}`);
  }
  for (const id of s.unknownOverrides) lines.push(`maintenance.schedules.${id}: no valid procedure ${id}; ignored`);
  lines.push('');
  if (s.windows.length === 0) lines.push('windows: none (maintenance.windows is empty: disruptive procedures run only with force)');
  else {
    lines.push('next windows:');
    for (const w of s.windows) lines.push(`  ${pad(w.id, 20)}${w.start} to ${w.end}${w.state === 'planned' ? '' : `  ${w.state}`}${w.deferredSec > 0 ? ` (deferred ${w.deferredSec} s)` : ''}`);
  }
  return lines.join('\n') + '\n';
}

export function scheduleCommand(v: Values): number {
  const ctx = contextOrExit('edge-agent maintenance', v);
  if (typeof ctx === 'number') return ctx;
  const s = readScheduleSummary(ctx);
  // Keys of an earlier release mapped onto a schedule (core/legacy-keys.ts): said, not hidden.
  const notes = legacyScheduleNotes(ctx.config);
  process.stdout.write(v.json ? JSON.stringify({ ...s, notes }, null, 2) + '\n' : formatSchedule(s) + notes.map((n) => `note: ${n}\n`).join(''));
  return 0;
}
