/**
 * Group `maintenance`: the procedures on this gateway (maintenance/catalog.ts: the shipped ones
 * and `maintenance.proceduresDir`), so an invalid one is never skipped silently.
 *
 * An invalid or unsafe procedure is a warning, not a failure: the agent and everything else on
 * the gateway work, only that procedure cannot run (the WMS gets `invalid-procedure` or
 * `unsafe-procedure` if it asks for it). A directory that exists but cannot be read is a warning
 * too (its procedures are unknown); a missing directory holds no operator procedures (skipped).
 *
 * The schedules too (maintenance/schedule-summary.ts): a schedule whose last run failed, or that
 * is overdue, is a warning.
 *
 * Imports only maintenance/ modules, which import nothing of health/, and core/legacy-keys.ts.
 */
import { existsSync } from 'node:fs';
import { loadCatalog, shippedProceduresDir, type Catalog, type CatalogEntry } from '../../maintenance/catalog.js';
import { agentUidFor } from '../../maintenance/safety.js';
import { readScheduleRows, readWindowRows } from '../../maintenance/schedule-store.js';
import { FAILED_OUTCOMES, scheduleSummary, type ScheduleSummary } from '../../maintenance/schedule-summary.js';
import { ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';
import { legacyScheduleNotes } from '../../core/legacy-keys.js';

/** How many problems a check's message names; the details carry every one. */
export const FIRST_PROBLEMS = 3;

/** The verdicts on a loaded catalog; pure. */
export function procedureVerdicts(catalog: Catalog, dir: string, dirExists: boolean): CheckResult[] {
  const out: CheckResult[] = [];
  if (catalog.problems.length > 0) {
    out.push(warning('procedures-dir', catalog.problems.map((p) => p.message).join('; '), `make ${dir} readable by the agent's user (chmod 0755, owned by root)`, { dir }));
  } else if (!dirExists) {
    out.push(skipped('procedures-dir', `${dir} does not exist: no operator procedures (only the shipped ones)`));
  } else {
    out.push(ok('procedures-dir', `${dir} is readable`, { dir }));
  }
  const bad = catalog.entries.filter((e) => e.status !== 'valid');
  for (const e of bad) out.push(entryVerdict(e));
  if (bad.length === 0) {
    const n = catalog.entries.length;
    out.push(ok('procedures', `${n} procedure${n === 1 ? '' : 's'}, all valid`, { ids: catalog.entries.map((e) => e.id) }));
  }
  return out;
}

/** `procedure:{file name}` for an invalid or unsafe entry; pure. */
export function entryVerdict(e: CatalogEntry): CheckResult {
  const base = e.file.slice(e.file.lastIndexOf('/') + 1);
  const n = e.problems.length;
  const first = e.problems.slice(0, FIRST_PROBLEMS).map((p) => `${p.path}: ${p.message}`);
  const more = n > FIRST_PROBLEMS ? `; and ${n - FIRST_PROBLEMS} more` : '';
  const what = e.status === 'unsafe' ? 'is refused as unsafe' : 'is invalid';
  const rec =
    e.status === 'unsafe'
      ? `make ${e.file} and its directory owned by root (or the agent's user) and not writable by group or others (chmod go-w)`
      : `fix it (edge-agent maintenance validate ${e.file} lists every problem) or remove it`;
  return warning(`procedure:${base}`, `${e.file} ${what} and cannot run (${n} problem${n === 1 ? '' : 's'}): ${first.join('; ')}${more}`, rec, {
    file: e.file,
    id: e.id,
    source: e.source,
    status: e.status,
    definitionSha256: e.definitionSha256 ?? null,
    problems: e.problems.map((p) => ({ path: p.path, message: p.message })),
  });
}

/**
 * `schedule:{procedure}` warnings for a schedule whose last run failed (or was refused,
 * interrupted, cancelled, or has no window to run in) or that is overdue (a slot passed with its
 * random delay and a grace, and nothing ran); `schedules` ok when none is; pure.
 */
export function scheduleVerdicts(s: ScheduleSummary): CheckResult[] {
  const out: CheckResult[] = [];
  for (const x of s.schedules) {
    if (!x.enabled) continue;
    const outcome = x.lastRun?.outcome ?? null;
    const details = { procedure: x.procedure, cron: x.cron, nextRun: x.nextRun, lastRun: x.lastRun, overdueSlot: x.overdueSlot };
    if (x.overdue) {
      out.push(warning(`schedule:${x.procedure}`, `the schedule of ${x.procedure} is overdue: its slot of ${x.overdueSlot} has not run`, 'check that the agent runs (edge-agent status) and see edge-agent maintenance schedule; a missed slot runs after a start only within its catchUpSec', details));
    } else if (outcome !== null && FAILED_OUTCOMES.includes(outcome)) {
      const rec = outcome === 'no-window' ? 'configure a maintenance window (maintenance.windows) or disable the schedule (maintenance.schedules)' : `read the run's report (edge-agent maintenance reports) and fix what failed`;
      out.push(warning(`schedule:${x.procedure}`, `the last scheduled run of ${x.procedure} ended ${outcome}${x.lastRun?.message ? `: ${x.lastRun.message}` : ''}`, rec, details));
    }
  }
  if (out.length === 0) {
    const n = s.schedules.filter((x) => x.enabled).length;
    out.push(ok('schedules', `${n} schedule${n === 1 ? '' : 's'}, none failed or overdue`, { next: s.schedules.map((x) => ({ procedure: x.procedure, nextRun: x.nextRun })), nextWindow: s.windows[0] ?? null }));
  }
  return out;
}

export const maintenanceChecks: GroupCheck = (ctx) => {
  const dir = ctx.config.maintenance.proceduresDir;
  // The daemon judges with its own user; the command line with the data directory's owner.
  const agentUid = ctx.source === 'daemon' ? (process.getuid?.() ?? 0) : agentUidFor(ctx.config.dataDir);
  const catalog = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: dir, agentUid });
  const m = ctx.config.maintenance;
  const now = ctx.now();
  const summary = scheduleSummary({
    procedures: catalog.entries.flatMap((e) => (e.status === 'valid' && e.procedure ? [e.procedure] : [])),
    overrides: m.schedules,
    windows: m.windows,
    maxDeferSec: m.maxDeferSec,
    rows: ctx.db ? readScheduleRows(ctx.db) : [],
    windowRows: ctx.db ? readWindowRows(ctx.db, now - 8 * 86_400_000) : [],
    now,
  });
  // Keys of an earlier release that now move a schedule (core/legacy-keys.ts): work, but say so.
  const legacy = legacyScheduleNotes(ctx.config).map((note, i) => warning(`schedule-config${i === 0 ? '' : `-${i + 1}`}`, note, 'move the value to maintenance.schedules and remove the old key from the configuration file', { note }));
  return Promise.resolve([...procedureVerdicts(catalog, dir, existsSync(dir)), ...scheduleVerdicts(summary), ...legacy]);
};
