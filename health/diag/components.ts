/**
 * Group `components`: the daemon itself (running, answering), its critical loops (what the
 * systemd watchdog sees), the supervised components' watchdog states (admin `status`
 * `components`: [{name, state, restarts, lastFailure?, alarm?}], when the release has a
 * supervisor), restarts in the last hour and incidents still open (the `incidents` table of
 * the store, when it exists). Reads whatever of this exists; absent parts are skipped.
 */
import type { Db } from '../../lib/sqlite.js';
import { readAgentInfo } from '../../core/agent-info.js';
import { errText, failure, humanAge, ok, skipped, warning, type CheckResult, type DiagContext, type GroupCheck } from './types.js';

const HOUR_MS = 3600 * 1000;
/** More restarts than this within an hour is a crash loop worth a look. */
export const RESTARTS_PER_HOUR_WARN = 3;

const GOOD = new Set(['running', 'healthy', 'ok', 'up', 'active']);
const BAD = new Set(['failed', 'dead', 'hung', 'down', 'stopped', 'gave-up', 'crashed']);

export interface ComponentView {
  name: string;
  state: string;
  restarts?: number;
  lastFailure?: unknown;
  alarm?: unknown;
}

/** One supervised component's verdict; pure. */
export function componentVerdict(c: ComponentView): CheckResult {
  const name = `component:${c.name}`;
  const extra = `${c.restarts ? `, ${c.restarts} restart${c.restarts === 1 ? '' : 's'}` : ''}`;
  const last = c.lastFailure === undefined ? '' : `; last failure: ${typeof c.lastFailure === 'string' ? c.lastFailure : JSON.stringify(c.lastFailure)}`;
  const details = { state: c.state, restarts: c.restarts ?? null, alarm: c.alarm ?? null };
  if (BAD.has(c.state)) return failure(name, `${c.name} is ${c.state}${extra}${last}`, `look at ${c.name}'s log and \`edge-agent incidents --component ${c.name}\`; the watchdog keeps trying to restart it`, details);
  if (!GOOD.has(c.state) || c.alarm) return warning(name, `${c.name} is ${c.state}${c.alarm ? ' with an alarm raised' : ''}${extra}${last}`, `watch whether ${c.name} recovers; see \`edge-agent incidents --component ${c.name}\``, details);
  return ok(name, `${c.name} is ${c.state}${extra}`, details);
}

function daemonCheck(ctx: DiagContext): CheckResult {
  if (ctx.source === 'daemon') return ok('daemon', `the daemon runs (pid ${process.pid})`);
  const live = ctx.live;
  if (ctx.daemon === 'running' && live) {
    return ok('daemon', `the daemon runs (pid ${String(live.pid)}, version ${String(live.version)}, slot ${String(live.slot)}, up ${humanAge(Number(live.uptimeSec ?? 0) * 1000)})`);
  }
  if (ctx.daemon === 'not answering') {
    return failure('daemon', 'the daemon does not answer on its admin socket: it is hung or overloaded', 'look at `journalctl -u edge-agent`; the systemd watchdog restarts a hung agent, or run systemctl restart edge-agent');
  }
  let last = '';
  if (ctx.db) {
    const info = readAgentInfo(ctx.db);
    last = info.startedAt ? ` (last started ${info.startedAt}, ${info.stoppedAt ? `stopped ${info.stoppedAt}` : 'no clean stop recorded: killed or crashed?'})` : '';
  }
  return failure('daemon', `the daemon is not running${last}`, 'start it (systemctl start edge-agent) and look at why it stopped (journalctl -u edge-agent, group logs)');
}

function loopsCheck(ctx: DiagContext): CheckResult | undefined {
  const l = ctx.live?.loops as { ok?: boolean; eventLoopLagMs?: number; stale?: { name: string; ageMs: number }[] } | undefined;
  if (!l) return undefined;
  if (l.ok) return ok('loops', `critical loops tick; event loop lag ${Math.round(l.eventLoopLagMs ?? 0)} ms`);
  const stale = (l.stale ?? []).map((s) => `${s.name} (${humanAge(s.ageMs)})`).join(', ');
  return failure('loops', `the agent is unhealthy: ${stale ? `stale loops ${stale}` : `event loop lag ${Math.round(l.eventLoopLagMs ?? 0)} ms`}`, 'the systemd watchdog will restart it; if it repeats, collect a support bundle');
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? (/^\d+$/.test(v) ? Number(v) : Date.parse(v)) : undefined);
const pick = (r: Record<string, unknown>, ...keys: string[]): unknown => keys.map((k) => r[k]).find((v) => v !== undefined && v !== null);
const text = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '?');

/** Restarts in the last hour and incidents not resolved; pure over the table's rows. */
export function incidentVerdicts(rows: Record<string, unknown>[], now: number): CheckResult[] {
  const recent = rows.filter((r) => (num(pick(r, 'at', 'ts', 'created_at', 'createdAt')) ?? 0) >= now - HOUR_MS);
  const open = rows.filter((r) => pick(r, 'resolvedAt', 'resolved_at') === undefined);
  const byComp = (rs: Record<string, unknown>[]): string =>
    [...rs.reduce((m, r) => m.set(text(pick(r, 'component')), (m.get(text(pick(r, 'component'))) ?? 0) + 1), new Map<string, number>())].map(([c, n]) => `${c} ${n}`).join(', ');
  const out: CheckResult[] = [];
  if (recent.length > RESTARTS_PER_HOUR_WARN) out.push(warning('restarts', `${recent.length} incidents in the last hour (${byComp(recent)})`, 'a component keeps failing: see `edge-agent incidents --since 1h`', { lastHour: recent.length }));
  else out.push(ok('restarts', `${recent.length} incident${recent.length === 1 ? '' : 's'} in the last hour${recent.length ? ` (${byComp(recent)})` : ''}`, { lastHour: recent.length }));
  if (open.length > 0) {
    const causes = open.slice(0, 5).map((r) => `${text(pick(r, 'component'))}: ${text(pick(r, 'cause'))}`);
    out.push(warning('incidents', `${open.length} incident${open.length === 1 ? '' : 's'} not resolved (${causes.join('; ')})`, 'see `edge-agent incidents`; they resolve once the component is healthy again', { open: open.length }));
  } else out.push(ok('incidents', 'no open incidents'));
  return out;
}

function incidentChecks(db: Db | undefined, now: number): CheckResult[] {
  if (!db) return [skipped('incidents', 'no state store: no incidents recorded')];
  const has = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incidents'").get();
  if (!has) return [skipped('incidents', 'this release records no incidents')];
  const rows = db.prepare('SELECT * FROM incidents ORDER BY rowid DESC LIMIT 2000').all() as Record<string, unknown>[];
  return incidentVerdicts(rows, now);
}

export const componentsChecks: GroupCheck = async (ctx) => {
  const results: CheckResult[] = [daemonCheck(ctx)];
  const loops = loopsCheck(ctx);
  if (loops) results.push(loops);
  const comps = ctx.live?.components;
  if (Array.isArray(comps) && comps.length === 0) {
    results.push(skipped('watchdog', 'no supervised components configured'));
  } else if (Array.isArray(comps)) {
    for (const c of comps as ComponentView[]) if (c && typeof c.name === 'string') results.push(componentVerdict({ ...c, state: String(c.state) }));
  } else if (ctx.live) {
    results.push(skipped('watchdog', 'this release reports no supervised components'));
  }
  try {
    results.push(...incidentChecks(ctx.db, ctx.now()));
  } catch (err) {
    results.push(warning('incidents', `cannot read the incidents: ${errText(err)}`, 'check {dataDir}/agent.db'));
  }
  return results;
};
