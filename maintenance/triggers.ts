/**
 * Procedures matched to incidents and alerts (CONTRACT.md section 6, `triggers`): a watchdog
 * incident (component and, optionally, cause) or a raised alert (its metric) starts the
 * procedures that name it, each at most once per `cooldownSec` and at most `maxAutoRunsPerDay`
 * (UTC days). The decision and its bookkeeping are one transaction, written before the run is
 * asked for, so a restart neither forgets a cooldown nor starts a run twice for one incident.
 *
 * A restart the agent itself asked for (cause `requested`: the `restart` operation, a procedure's
 * `component-restart`) never triggers: a repair must not start itself again.
 */
import type { Db } from '../lib/sqlite.js';
import type { Catalog } from './catalog.js';

export type TriggerSource =
  | { kind: 'incident'; component: string; cause: string; incident?: number | undefined }
  | { kind: 'alert'; metric: string; code?: string | undefined };

export type TriggerVerdict = { procedure: string; run: true } | { procedure: string; run: false; why: 'cooldown' | 'daily-limit' | 'disabled' };

/** The procedures whose triggers name this incident or alert; pure. */
export function matchingProcedures(catalog: Catalog, src: TriggerSource): { id: string; cooldownSec: number; maxAutoRunsPerDay: number }[] {
  if (src.kind === 'incident' && src.cause === 'requested') return [];
  const out: { id: string; cooldownSec: number; maxAutoRunsPerDay: number }[] = [];
  for (const e of catalog.entries) {
    const t = e.status === 'valid' ? e.procedure?.triggers : undefined;
    if (!t) continue;
    const hit = src.kind === 'incident' ? t.incidents.some((i) => i.component === src.component && (i.cause === undefined || i.cause === src.cause)) : t.alerts.includes(src.metric);
    if (hit) out.push({ id: e.id, cooldownSec: t.cooldownSec, maxAutoRunsPerDay: t.maxAutoRunsPerDay });
  }
  return out;
}

export class TriggerBook {
  private readonly get;
  private readonly put;

  constructor(private readonly db: Db) {
    this.get = db.prepare<[string], { last_at: number; day: string; count: number }>('SELECT last_at, day, count FROM maintenance_triggers WHERE procedure = ?');
    this.put = db.prepare('INSERT INTO maintenance_triggers(procedure, last_at, day, count) VALUES (?, ?, ?, ?) ON CONFLICT(procedure) DO UPDATE SET last_at = excluded.last_at, day = excluded.day, count = excluded.count');
  }

  /** Whether the procedure may run now; when it may, the run is counted (committed) at once. */
  claim(p: { id: string; cooldownSec: number; maxAutoRunsPerDay: number }, now: number): TriggerVerdict {
    return this.db.transaction((): TriggerVerdict => {
      if (p.maxAutoRunsPerDay === 0) return { procedure: p.id, run: false, why: 'disabled' };
      const day = new Date(now).toISOString().slice(0, 10);
      const r = this.get.get(p.id);
      if (r && now - r.last_at < p.cooldownSec * 1000) return { procedure: p.id, run: false, why: 'cooldown' };
      const count = r && r.day === day ? r.count : 0;
      if (count >= p.maxAutoRunsPerDay) return { procedure: p.id, run: false, why: 'daily-limit' };
      this.put.run(p.id, now, day, count + 1);
      return { procedure: p.id, run: true };
    })();
  }
}
