/**
 * `edge-agent audit`: the audit trail (core/audit.ts, docs/audit.md), oldest first, or the check
 * of its chain, from the state store opened read-only: works when the daemon is down.
 */
import { AuditLog, auditAvailable, verifyChain, type AuditEntry, type VerifyResult } from '../../core/audit.js';
import { systemClock } from '../../lib/clock.js';
import { contextOrExit, fail, withStoreReadonly } from './context.js';
import { parseDuration } from './incidents.js';

type Values = Record<string, string | boolean | undefined>;

/** Exit status of `--verify` when the chain is broken. */
export const EXIT_AUDIT_BROKEN = 2;

/** `--since`: a duration back from now (24h, 7d) or an ISO 8601 time; undefined when it is neither. Pure. */
export function parseSince(text: string, now: number): number | undefined {
  const d = parseDuration(text);
  if (d !== undefined) return now - d;
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

export function formatEntries(list: readonly AuditEntry[]): string {
  if (list.length === 0) return 'no audit entries\n';
  return (
    list
      .map((e) => {
        const details = e.details ? `  ${JSON.stringify(e.details)}` : '';
        return `${e.at}  #${e.seq}  ${e.actor}  ${e.action}${e.target !== null ? ` ${e.target}` : ''}  -> ${e.outcome}${details}`;
      })
      .join('\n') + '\n'
  );
}

function formatVerify(r: VerifyResult): string {
  if (!r.ok) return `the audit chain is broken at entry ${r.brokenSeq}: ${r.problem}\n`;
  if (r.entries === 0) return 'the audit chain holds: no entries yet\n';
  const cut = r.startsAfterCut ? ` (the kept chain starts at entry ${r.firstSeq}, after a recorded cut)` : '';
  return `the audit chain holds: ${r.entries} entries, ${r.firstSeq} to ${r.lastSeq}${cut}; head ${r.head}\n`;
}

export async function auditCommand(v: Values): Promise<number> {
  const name = 'edge-agent audit';
  const sinceMs = typeof v.since === 'string' ? parseSince(v.since, Date.now()) : undefined;
  if (typeof v.since === 'string' && sinceMs === undefined) {
    process.stderr.write(`${name}: --since takes a duration such as 90m, 24h or 7d, or a time such as 2026-12-01T00:00:00Z; got ${JSON.stringify(v.since)}\n`);
    return 64;
  }
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let out: { verify: VerifyResult } | { list: AuditEntry[] } | undefined;
  try {
    out = withStoreReadonly(ctx.store, (db) => {
      if (v.verify) return { verify: auditAvailable(db) ? verifyChain(db) : verifyChainEmpty() };
      return { list: auditAvailable(db) ? new AuditLog(db, systemClock).list(sinceMs !== undefined ? { sinceMs } : {}) : [] };
    });
  } catch (err) {
    return fail(name, err);
  }
  if (!out) {
    process.stderr.write(`${name}: no state store at ${ctx.store}: the agent has not run with this data directory (give the daemon's --config or --data-dir)\n`);
    return 3;
  }
  if ('list' in out) {
    process.stdout.write(v.json ? JSON.stringify(out.list, null, 2) + '\n' : formatEntries(out.list));
    return 0;
  }
  const r = out.verify;
  if (v.json) process.stdout.write(JSON.stringify(r.ok ? r : { ...r, code: 'audit-chain-broken' }, null, 2) + '\n');
  if (r.ok) {
    if (!v.json) process.stdout.write(formatVerify(r));
    return 0;
  }
  process.stderr.write(`${name}: audit-chain-broken: ${formatVerify(r)}`);
  return EXIT_AUDIT_BROKEN;
}

function verifyChainEmpty(): VerifyResult {
  return { ok: true, entries: 0, firstSeq: null, lastSeq: null, head: '0'.repeat(64), startsAfterCut: false };
}
