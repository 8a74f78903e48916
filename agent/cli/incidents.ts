/**
 * `edge-agent incidents`: what the watchdog recorded (recovery/incidents.ts), newest first, from
 * the state store opened read-only: works when the daemon is down.
 */
import { IncidentStore, type Incident } from '../../recovery/incidents.js';
import { contextOrExit, fail, limitOption, withStoreReadonly } from './context.js';

type Values = Record<string, string | boolean | undefined>;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90m`, `24h`, `7d`, `30s` -> milliseconds; undefined when it is not such a duration. Pure. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,6})([smhd])$/.exec(text.trim());
  if (!m?.[1] || !m[2]) return undefined;
  const unit = UNITS[m[2]];
  return unit === undefined ? undefined : Number(m[1]) * unit;
}

export function formatIncidents(list: readonly Incident[]): string {
  if (list.length === 0) return 'no incidents\n';
  const lines: string[] = [];
  for (const i of list) {
    const how = i.exitCode !== null ? ` code ${i.exitCode}` : i.signal !== null ? ` ${i.signal}` : '';
    const rec = i.resolvedAt ? `recovered in ${(i.recoveryMs ?? 0) / 1000} s` : 'open';
    lines.push(`${i.at}  #${i.id}  ${i.component}  ${i.cause}${how}  -> ${i.action} (level ${i.level}), ${rec}`);
    if (i.detail) lines.push(`    ${i.detail}`);
    for (const l of i.lastLog.slice(-3)) lines.push(`    | ${l}`);
  }
  return lines.join('\n') + '\n';
}

export async function incidentsCommand(v: Values): Promise<number> {
  const name = 'edge-agent incidents';
  const since = typeof v.since === 'string' ? parseDuration(v.since) : undefined;
  if (typeof v.since === 'string' && since === undefined) {
    process.stderr.write(`${name}: --since takes a duration such as 90m, 24h or 7d; got ${JSON.stringify(v.since)}\n`);
    return 64;
  }
  const limit = limitOption(name, v.limit, 100);
  if (limit === undefined) return 64;
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let list: Incident[] | undefined;
  try {
    list = withStoreReadonly(ctx.store, (db) => {
      const store = new IncidentStore(db);
      return store.available()
        ? store.list({ ...(since !== undefined ? { since: Date.now() - since } : {}), ...(typeof v.component === 'string' ? { component: v.component } : {}), limit })
        : [];
    });
  } catch (err) {
    return fail(name, err);
  }
  if (!list) {
    process.stderr.write(`${name}: no state store at ${ctx.store}: the agent has not run with this data directory (give the daemon's --config or --data-dir)\n`);
    return 3;
  }
  process.stdout.write(v.json ? JSON.stringify({ incidents: list }, null, 2) + '\n' : formatIncidents(list));
  return 0;
}
