/**
 * The boot guard cannot tell anyone why it left a committed release: it runs before any agent,
 * with Node's builtins only, and knows neither the store nor the broker. It writes the reason
 * into ROOT/slots.json (`guard-rollback`, reason `committed-starts-exceeded ...`); the agent it
 * then starts reads that history here and reports each such fallback once: an incident
 * (`edge-agent incidents`) and a critical alarm on `~/events`.
 *
 * INVARIANT: each fallback's incident is recorded exactly once and its events are never lost. The
 * events are queued durably first (the outbox lives on the command path's own connection, so they
 * cannot share a transaction with the incident: a write transaction open on one connection would
 * lock the other out), then the incident and the marker (agent_info `guardFallbacksReported`, the
 * `at` of the newest one reported) are committed in one transaction. A power cut between the two
 * sends the events again at the next start, never none. A store without the marker (a new or
 * rebuilt one) reports every fallback slots.json still remembers (its last HISTORY_MAX transitions).
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
  /** Queues an event on ~/events; durable: committed before it returns. */
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
    const base = { severity: 'critical' as const, code: FALLBACK_CODE, component: 'release', slot: h.slot, version: h.version, at: h.at };
    o.event({ type: 'incident', ...base, message: `release ${FALLBACK_REASON}: guard-rollback; ${detail}`, incident: h.at, cause: FALLBACK_REASON, action: 'guard-rollback' }, true);
    o.event({ type: 'alarm', ...base, message: `release: ${detail}; send an update with a fixed release` }, true);
    o.db.transaction(() => {
      o.incidents?.record({ at: Date.parse(h.at), component: 'release', cause: FALLBACK_REASON, action: 'guard-rollback', level: 3, detail });
      // Over by the time anyone reads it: the other release runs.
      o.incidents?.resolve('release', o.now);
      writeAgentInfo(o.db, { guardFallbacksReported: h.at });
    })();
    o.logger.error({ slot: h.slot, version: h.version, reason: h.reason, at: h.at }, 'the boot guard fell back from a committed release that kept failing at start');
  }
  return todo.length;
}
