/**
 * The boot guard cannot tell anyone why it left a committed release: it runs before any agent,
 * with Node's builtins only, and knows neither the store nor the broker. It writes the reason
 * into ROOT/slots.json (`guard-rollback`, reason `committed-starts-exceeded ...`); the agent it
 * then starts reads that history here and reports each such fallback once: an incident
 * (`edge-agent incidents`) and a critical alarm on `~/events`.
 *
 * INVARIANT: each fallback is reported exactly once. The incident, both events (outbox rows) and
 * the marker (agent_info `guardFallbacksReported`, the `at` of the newest one reported) are
 * committed in one transaction. A store without the marker (a new or rebuilt one) reports every
 * fallback slots.json still remembers (its last HISTORY_MAX transitions).
 */
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import type { HistoryEntry, SlotsFile } from '../ota/slots.js';
import type { IncidentStore } from '../recovery/incidents.js';
import { readAgentInfo, writeAgentInfo } from '../core/agent-info.js';
import type { AgentEvent } from '../core/ports.js';

export const FALLBACK_REASON = 'committed-starts-exceeded';
export const FALLBACK_CODE = 'release-crash-loop';

/** The fallbacks from a committed release newer than `after` (ISO), oldest first. Pure. */
export function unreportedFallbacks(history: readonly HistoryEntry[], after: string | undefined): HistoryEntry[] {
  return history.filter((h) => h.event === 'guard-rollback' && h.reason?.startsWith(FALLBACK_REASON) === true && (after === undefined || h.at > after));
}

export interface GuardReportOptions {
  slots: SlotsFile;
  db: Db;
  incidents?: Pick<IncidentStore, 'record' | 'resolve'> | undefined;
  /** Queues an event on ~/events; durable: committed in the caller's transaction. */
  event(ev: AgentEvent, durable: boolean): void;
  logger: Logger;
  now: number;
}

/** Reports what the guard did since the last report; returns how many fallbacks. */
export function reportGuardFallbacks(o: GuardReportOptions): number {
  const marker = readAgentInfo(o.db).guardFallbacksReported;
  const todo = unreportedFallbacks(o.slots.history ?? [], marker);
  for (const h of todo) {
    const to = o.slots.slots[h.slot === 'A' ? 'B' : 'A'];
    const detail = `release ${h.version ?? '?'} in slot ${h.slot} kept failing at start (${h.reason ?? FALLBACK_REASON}); the boot guard marked it bad and started the committed release ${to.version ?? '?'} instead`;
    o.db.transaction(() => {
      const at = Date.parse(h.at);
      const id = o.incidents?.record({ at, component: 'release', cause: FALLBACK_REASON, action: 'guard-rollback', level: 3, detail });
      // Over by the time anyone reads it: the other release runs.
      o.incidents?.resolve('release', o.now);
      const base = { severity: 'critical' as const, code: FALLBACK_CODE, component: 'release', slot: h.slot, version: h.version, at: h.at };
      o.event({ type: 'incident', ...base, message: `release ${FALLBACK_REASON}: guard-rollback; ${detail}`, incident: id ?? h.at, cause: FALLBACK_REASON, action: 'guard-rollback' }, true);
      o.event({ type: 'alarm', ...base, message: `release: ${detail}; send an update with a fixed release` }, true);
      writeAgentInfo(o.db, { guardFallbacksReported: h.at });
    })();
    o.logger.error({ slot: h.slot, version: h.version, reason: h.reason, at: h.at }, 'the boot guard fell back from a committed release that kept failing at start');
  }
  return todo.length;
}
