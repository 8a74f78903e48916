/**
 * The audit trail's wiring (docs/audit.md): the log on the command path's connection (so a
 * command's terminal status and its entry commit in one transaction), the port the router
 * records through, the actor of commands from the admin socket, and the hourly pruning.
 */
import { AuditLog, GENESIS, type AuditInput, type AuditPort } from '../core/audit.js';
import type { AgentConfig } from '../core/config.js';
import type { AgentEvent, Component, Origin, Reason } from '../core/ports.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';

const PRUNE_EVERY_MS = 3_600_000;
const HEAD_EVERY_MS = 86_400_000;

/** Where an operation's params name what it acts on. Pure. */
export function commandTarget(op: string, params: unknown): string | undefined {
  if (params === null || typeof params !== 'object') return undefined;
  const p = params as Record<string, unknown>;
  const key = op === 'restart' ? 'component' : op === 'update' ? 'version' : op === 'cancel' ? 'target' : op === 'maintenance' ? 'procedure' : undefined;
  const v = key !== undefined ? p[key] : undefined;
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
}

/**
 * The flags that change what a command did, kept in its entry: a maintenance run's `dryRun`
 * (nothing changed) and `force` (run outside a maintenance window). Pure.
 */
function commandFlags(op: string, params: unknown): Record<string, true> {
  if (op !== 'maintenance' || params === null || typeof params !== 'object') return {};
  const p = params as Record<string, unknown>;
  return { ...(p.dryRun === true ? { dryRun: true as const } : {}), ...(p.force === true ? { force: true as const } : {}) };
}

/** The entry of a command that reached a terminal status. Pure. */
export function commandAudit(id: string, op: string, status: string, reason: Reason | undefined, params: unknown, origin?: Origin): AuditInput {
  return {
    actor: origin && origin.trigger !== 'wms' ? origin.actor : `wms:${id}`,
    action: op,
    target: commandTarget(op, params),
    outcome: reason ? `${status}/${reason.code}` : status,
    details: { command: id, ...(reason ? { reason: reason.code } : {}), ...commandFlags(op, params) },
  };
}

export interface AuditWiring {
  log: AuditLog;
  /** Appends an entry (the router's hook and the operations that record their own). */
  port: AuditPort;
  /** The router's hook: a command's terminal status, recorded through `port`. */
  command: (id: string, op: string, status: string, reason: Reason | undefined, params: unknown, origin?: Origin) => void;
  component: Component;
}

/**
 * `publish`: the chain's head on ~/events (`audit-head`) at start and daily, so the WMS can tell
 * when a gateway's history was rewritten (or cut short at its end).
 */
export function wireAudit(w: { db: Db; clock: Clock; logger: Logger; limits: AgentConfig['audit']; publish?: (ev: AgentEvent) => void }): AuditWiring {
  const log = new AuditLog(w.db, w.clock);
  const prune = (): void => {
    try {
      const n = log.prune(w.limits);
      if (n > 0) w.logger.info({ removed: n }, 'cut the oldest audit entries (recorded in the trail)');
    } catch (err) {
      w.logger.warn({ err }, 'pruning the audit trail failed; tried again in an hour');
    }
  };
  const head = (): void => {
    try {
      const last = log.tail(1)[0];
      w.publish?.({ type: 'audit', severity: 'info', code: 'audit-head', message: last ? `audit trail head: entry ${last.seq}` : 'the audit trail is empty', seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS, entryAt: last?.at ?? null });
    } catch (err) {
      w.logger.warn({ err }, 'reading the audit trail head failed; tried again tomorrow');
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let headTimer: NodeJS.Timeout | undefined;
  // Who sent a command is its stored origin (router.submit): the entry's actor comes with it.
  const port: AuditPort = (e) => void log.append(e);
  return {
    log,
    port,
    command: (id, op, status, reason, params, origin) => port(commandAudit(id, op, status, reason, params, origin)),
    component: {
      name: 'audit',
      start: async () => {
        prune();
        timer = setInterval(prune, PRUNE_EVERY_MS);
        timer.unref();
        head();
        headTimer = setInterval(head, HEAD_EVERY_MS);
        headTimer.unref();
      },
      stop: async () => {
        clearInterval(timer);
        clearInterval(headTimer);
      },
    },
  };
}
