/**
 * `edge-agent status`: from the daemon when it runs; from the store when it does not (exit 3,
 * like `systemctl status` for a stopped unit), so the admin always learns something.
 */
import { adminRequest } from '../../core/admin.js';
import { readAgentInfo } from '../../core/agent-info.js';
import { readOutboxStats } from '../outbox.js';
import { CommandStore } from '../command-store.js';
import { IncidentStore } from '../../recovery/incidents.js';
import { cliContext, fail, openStoreReadonly, type CliContext } from './context.js';
import { readScheduleSummary, statusSummary } from './maintenance-schedule.js';

type Values = Record<string, string | boolean | undefined>;

export async function statusCommand(v: Values): Promise<number> {
  let ctx: CliContext;
  try {
    ctx = cliContext(v);
  } catch (err) {
    return fail('edge-agent status', err);
  }
  let live: Record<string, unknown> | undefined;
  try {
    live = (await adminRequest(ctx.socket, 'status', {}, 3000)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED' && code !== 'admin-timeout') return fail('edge-agent status', err);
  }
  const report = live ?? offlineReport(ctx);
  report.maintenance ??= maintenanceSummary(ctx);
  if (v.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else process.stdout.write(formatStatus(report));
  return live ? 0 : 3;
}

function offlineReport(ctx: CliContext): Record<string, unknown> {
  const db = openStoreReadonly(ctx.store);
  if (!db) return { daemon: 'not running', dataDir: ctx.config.dataDir, store: 'absent (the agent has not run with this data directory)' };
  try {
    const info = readAgentInfo(db);
    const unfinished = new CommandStore(db).unfinished().map((c) => ({ id: c.id, op: c.op, status: c.status }));
    return {
      daemon: 'not running',
      pid: info.pid === undefined ? undefined : Number(info.pid),
      version: info.version,
      slot: info.slot,
      gatewayId: info.gatewayId,
      dataDir: ctx.config.dataDir,
      lastStartedAt: info.startedAt,
      lastStoppedAt: info.stoppedAt ?? 'not recorded (killed or crashed?)',
      broker: { connected: false, url: info.brokerUrl },
      outbox: readOutboxStats(db),
      operations: unfinished,
      // The watchdog's last persisted view; detached components may well still run.
      components: new IncidentStore(db).allStates().map(({ component, state: s }) => ({
        name: component,
        state: s.state,
        restarts: s.restarts,
        level: s.level,
        ...(s.lastFailure ? { lastFailure: { at: new Date(s.lastFailure.at).toISOString(), cause: s.lastFailure.cause, exitCode: s.lastFailure.exitCode, signal: s.lastFailure.signal } } : {}),
        ...(s.alarm ? { alarm: { since: new Date(s.alarm.since).toISOString(), message: s.alarm.message } } : {}),
      })),
    };
  } finally {
    db.close();
  }
}

/** Each schedule's last run and the next window, from the files and the store; never fails the status. */
function maintenanceSummary(ctx: CliContext): Record<string, unknown> {
  try {
    return statusSummary(readScheduleSummary(ctx));
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function age(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** The fields of a status report that the text output shows (the JSON has them all). */
interface StatusView {
  daemon: string;
  pid?: number;
  version?: string;
  slot?: string;
  gatewayId?: string;
  uptimeSec?: number;
  lastStartedAt?: string;
  lastStoppedAt?: string;
  store?: unknown;
  broker?: { connected?: boolean; url?: string; since?: string; lastError?: string; state?: string };
  outbox?: { depth?: number; bytes?: number; oldestCreatedAt?: number; dropped?: number };
  operations?: { id: string; op: string; status?: string; step?: string }[];
  components?: ComponentView[];
  maintenance?: {
    schedules?: { procedure: string; enabled: boolean; nextRun: string | null; lastSlot: string | null; lastOutcome: string | null; overdue: boolean }[];
    nextWindow?: { id: string; start: string; end: string; state: string } | null;
    error?: string;
  };
  alerts?: { code: string; severity: string; metric: string; value: number; threshold: number; since: string; predictedAt?: string }[];
}

interface ComponentView {
  name: string;
  state: string;
  restarts: number;
  pid?: number;
  lastFailure?: { at: string; cause: string; exitCode?: number; signal?: string };
  alarm?: { since: string; message: string };
}

/** One line per supervised component; the alarm on its own line, so it is not missed. */
export function formatComponents(list: readonly ComponentView[]): string[] {
  return list.flatMap((c) => {
    const f = c.lastFailure;
    const how = f ? (f.exitCode !== undefined && f.exitCode !== null ? ` code ${f.exitCode}` : f.signal ? ` ${f.signal}` : '') : '';
    const line = `  ${c.name.padEnd(14)} ${c.state.padEnd(8)} restarts ${c.restarts}${c.pid ? `  pid ${c.pid}` : ''}${f ? `  last failure ${age(Date.parse(f.at))} ago: ${f.cause}${how}` : ''}`;
    return c.alarm ? [line, `    ALARM since ${c.alarm.since}: ${c.alarm.message}`] : [line];
  });
}

export function formatStatus(report: Record<string, unknown>): string {
  const r = report as unknown as StatusView;
  const b = r.broker ?? {};
  const o = r.outbox ?? {};
  const ops = r.operations ?? [];
  const lines = [
    `daemon      ${r.daemon}${r.pid ? (r.daemon === 'running' ? ` (pid ${r.pid})` : ` (last pid ${r.pid})`) : ''}`,
    `version     ${r.version ?? '-'}  slot ${r.slot ?? '-'}  gateway ${r.gatewayId ?? '-'}`,
  ];
  if (r.uptimeSec !== undefined) lines.push(`uptime      ${r.uptimeSec}s  state ${b.state ?? '-'}`);
  if (r.lastStartedAt !== undefined) lines.push(`last run    started ${r.lastStartedAt}, stopped ${r.lastStoppedAt ?? '-'}`);
  lines.push(
    `broker      ${b.connected ? 'connected' : 'not connected'}  ${b.url ?? ''}${b.since ? `  since ${b.since}` : ''}${b.lastError ? `  last error: ${b.lastError}` : ''}`,
  );
  lines.push(`outbox      ${o.depth ?? 0} waiting (${o.bytes ?? 0} bytes), oldest ${age(o.oldestCreatedAt)}${o.dropped ? `, ${o.dropped} dropped` : ''}`);
  lines.push(`operation   ${ops.length === 0 ? 'none' : ops.map((x) => `${x.op} ${x.id}${x.step ? ` (${x.step})` : x.status ? ` (${x.status})` : ''}`).join(', ')}`);
  if (r.components && r.components.length > 0) lines.push('components', ...formatComponents(r.components));
  if (r.alerts && r.alerts.length > 0) {
    lines.push(`alerts      ${r.alerts.length} active`);
    for (const a of r.alerts) {
      const when = a.predictedAt ? `, predicted to cross ${a.threshold} at ${a.predictedAt}` : ` (threshold ${a.threshold})`;
      lines.push(`  ${a.severity.toUpperCase().padEnd(8)} ${a.code}: ${a.metric} ${a.value}${when}, since ${a.since}`);
    }
  }
  if (r.maintenance) lines.push(...formatMaintenance(r.maintenance));
  if (typeof r.store === 'string') lines.push(`store       ${r.store}`);
  return lines.join('\n') + '\n';
}

/** The schedules' last runs and the next window (edge-agent maintenance schedule has the rest). */
function formatMaintenance(m: NonNullable<StatusView['maintenance']>): string[] {
  if (m.error !== undefined) return [`schedules   unknown: ${m.error}`];
  const w = m.nextWindow;
  const lines = [`window      ${w ? `next ${w.id} ${w.start} to ${w.end}${w.state === 'planned' ? '' : ` (${w.state})`}` : 'none configured'}`];
  const list = m.schedules ?? [];
  lines.push(`schedules   ${list.length === 0 ? 'none' : `${list.length}`}`);
  for (const x of list) {
    const last = x.lastSlot ? `last ${x.lastSlot} ${x.lastOutcome ?? ''}` : x.lastOutcome ? `last ${x.lastOutcome}` : 'never ran';
    lines.push(`  ${x.procedure.padEnd(22)} ${x.enabled ? `next ${x.nextRun ?? '-'}` : 'disabled'}  ${last}${x.overdue ? '  OVERDUE' : ''}`);
  }
  return lines;
}
