/**
 * The audit trail (docs/audit.md): an append-only, hash-chained record of every change and every
 * privileged action, in the state store's `audit_log` table.
 *
 * - Each entry's `hash` is sha256 over a canonical serialization of its fields and `prevHash`,
 *   the hash of the entry before it (GENESIS for the very first). Editing, deleting, reordering
 *   or inserting an entry breaks the chain at that entry; `verify()` names it.
 * - Bounded by age and count (`audit.maxAgeDays`, `audit.maxEntries`): `prune()` deletes the
 *   oldest entries and appends an `audit-prune` entry that records the cut. The first kept entry
 *   keeps its predecessor's hash, so verify starts from it; an unrecorded cut at the front is a break.
 * - `details` is what the caller chooses to record: never secret values. Keys that look like
 *   secrets (password, token, key, ...) are replaced by "[redacted]" anyway.
 * - `append()` is a transaction of its own, or a savepoint inside the caller's transaction: call
 *   it inside the transaction that commits the action's state where there is one.
 *
 * Deleting entries at the end (the newest) leaves a valid shorter chain: only a copy of the head
 * kept elsewhere can show that.
 */
import * as crypto from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { registerCodes } from '../lib/errors.js';
import type { Db, MigrationSet } from '../lib/sqlite.js';

export const AUDIT_MIGRATIONS: MigrationSet = {
  domain: 'audit',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        details TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_log_at ON audit_log(at)`,
    },
  ],
};

/** `edge-agent audit --verify`'s code for a broken chain (docs/errors.md). */
export const AUDIT_CODES = registerCodes('audit', ['audit-chain-broken'] as const);

/** The prevHash of the first entry ever written. */
export const GENESIS = '0'.repeat(64);

/** What a caller records: who, what, on what, how it ended, and (no secrets) the particulars. */
export interface AuditInput {
  /** `wms:<command id>`, `local:<uid>`, `local`, `agent`, ... */
  actor: string;
  /** The operation or the action, e.g. `update`, `rollback`, `restart`. */
  action: string;
  target?: string | undefined;
  /** The result, e.g. `successful`, `failed/invalid-params`. */
  outcome: string;
  details?: Record<string, unknown> | undefined;
}

/** The port the agent's parts record through. */
export type AuditPort = (entry: AuditInput) => void;

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  outcome: string;
  details: Record<string, unknown> | null;
  prevHash: string;
  hash: string;
}

type RawRow = [number, string, string, string, string | null, string, string | null, string, string];

/** A row as SQLite returns it: `details` still JSON text, the hash column's own name. */
type Row = Omit<AuditEntry, 'details' | 'prevHash'> & { details: string | null; prev_hash: string };

const SECRET_KEY = /pass(word|phrase)?|secret|token|private|credential|authorization|^key$|Key$|_key$/i;

/** A deep copy of `value` with secret-looking keys' values replaced by "[redacted]" and keys sorted. Pure. */
export function redactDetails(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactDetails);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    out[k] = SECRET_KEY.test(k) ? '[redacted]' : redactDetails(v);
  }
  return out;
}

/** crypto.hash (Node >= 20.12, not in our @types/node yet): one-shot, about 3x faster than createHash for short input. */
const oneShot = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;

/** sha256 of a string, hex. */
function sha256(text: string): string {
  return oneShot ? oneShot('sha256', text, 'hex') : crypto.createHash('sha256').update(text).digest('hex');
}

/** The hash of an entry: sha256 (hex) over the JSON array of its fields in a fixed order, details as stored. Pure. */
export function entryHash(e: { seq: number; at: string; actor: string; action: string; target: string | null; outcome: string; details: string | null; prevHash: string }): string {
  const canonical = JSON.stringify([e.seq, e.at, e.actor, e.action, e.target, e.outcome, e.details, e.prevHash]);
  return sha256(canonical);
}

export type VerifyResult =
  | { ok: true; entries: number; firstSeq: number | null; lastSeq: number | null; head: string; startsAfterCut: boolean }
  | { ok: false; entries: number; brokenSeq: number; problem: string };

export interface AuditLimits {
  maxAgeDays: number;
  maxEntries: number;
}

export class AuditLog {
  private readonly insert;
  private readonly last;
  private readonly tx;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {
    this.insert = db.prepare('INSERT INTO audit_log(seq, at, actor, action, target, outcome, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.last = db.prepare<[], { seq: number; hash: string }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    this.tx = db.transaction((e: AuditInput): AuditEntry => {
      const prev = this.last.get();
      const seq = (prev?.seq ?? 0) + 1;
      const prevHash = prev?.hash ?? GENESIS;
      const at = new Date(this.clock.now()).toISOString();
      const details = e.details === undefined ? null : JSON.stringify(redactDetails(e.details));
      const target = e.target ?? null;
      const hash = entryHash({ seq, at, actor: e.actor, action: e.action, target, outcome: e.outcome, details, prevHash });
      this.insert.run(seq, at, e.actor, e.action, target, e.outcome, details, prevHash, hash);
      return { seq, at, actor: e.actor, action: e.action, target, outcome: e.outcome, details: details === null ? null : (JSON.parse(details) as Record<string, unknown>), prevHash, hash };
    });
  }

  /** Appends one entry (a savepoint when called inside a transaction); throws what the store threw. */
  append(e: AuditInput): AuditEntry {
    return this.tx.immediate(e);
  }

  /**
   * Deletes entries older than maxAgeDays and beyond maxEntries (the oldest first), then records
   * the cut as an `audit-prune` entry; the count includes that entry. Returns how many it removed.
   */
  prune(limits: AuditLimits): number {
    return this.db.transaction((): number => {
      const bounds = this.db.prepare<[], { first: number | null; last: number | null }>('SELECT MIN(seq) AS first, MAX(seq) AS last FROM audit_log').get();
      if (!bounds || bounds.first === null || bounds.last === null) return 0;
      const cutoff = new Date(this.clock.now() - limits.maxAgeDays * 86_400_000).toISOString();
      const byAge = this.db.prepare<[string], { seq: number }>('SELECT seq FROM audit_log WHERE at >= ? ORDER BY seq LIMIT 1').get(cutoff)?.seq ?? bounds.last + 1;
      // Room for the cut's own entry within maxEntries.
      const byCount = bounds.last - Math.max(1, limits.maxEntries - 1) + 1;
      // The newest entry is always kept, so the chain has a head to go on from.
      const keepFrom = Math.min(bounds.last, Math.max(byAge, byCount));
      if (keepFrom <= bounds.first) return 0;
      const removedHead = this.db.prepare<[number], { hash: string }>('SELECT hash FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT 1').get(keepFrom);
      const removed = this.db.prepare('DELETE FROM audit_log WHERE seq < ?').run(keepFrom).changes;
      this.append({
        actor: 'agent',
        action: 'audit-prune',
        outcome: 'successful',
        details: { removed, removedFrom: bounds.first, keptFrom: keepFrom, removedHeadHash: removedHead?.hash, maxAgeDays: limits.maxAgeDays, maxEntries: limits.maxEntries },
      });
      return removed;
    }).immediate();
  }

  /** Entries oldest first, from `sinceMs` (epoch ms) when given. */
  list(opts: { sinceMs?: number } = {}): AuditEntry[] {
    const rows =
      opts.sinceMs === undefined
        ? this.db.prepare<[], Row>('SELECT * FROM audit_log ORDER BY seq').all()
        : this.db.prepare<[string], Row>('SELECT * FROM audit_log WHERE at >= ? ORDER BY seq').all(new Date(opts.sinceMs).toISOString());
    return rows.map(toEntry);
  }

  /** The newest `limit` entries, oldest first. */
  tail(limit: number): AuditEntry[] {
    return this.db.prepare<[number], Row>('SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?').all(limit).reverse().map(toEntry);
  }

  /** Walks the chain oldest first; the first entry that breaks it is named. */
  verify(): VerifyResult {
    return verifyChain(this.db);
  }
}

function toEntry(r: Row): AuditEntry {
  return {
    seq: r.seq,
    at: r.at,
    actor: r.actor,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    details: r.details === null ? null : (JSON.parse(r.details) as Record<string, unknown>),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** Whether the store has the audit table (an older store, or one read-only before the agent ran). */
export function auditAvailable(db: Db): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'").get() !== undefined;
}

/**
 * The chain check, streaming (1,000,000 entries in a few seconds). An entry breaks the chain when
 * its stored hash is not the hash of its fields, when its prevHash is not the previous entry's
 * hash, or when its seq does not follow the previous one. The first entry may follow a cut (its
 * prevHash is not GENESIS) only when the newest `audit-prune` entry says the kept chain starts there.
 */
export function verifyChain(db: Db): VerifyResult {
  // Raw rows (arrays in the column order of the hash, then the stored hash): no object per row.
  const it = db.prepare<[], RawRow>('SELECT seq, at, actor, action, target, outcome, details, prev_hash, hash FROM audit_log ORDER BY seq').raw(true).iterate();
  let prev: { seq: number; hash: string } | undefined;
  let first: { seq: number; prev_hash: string } | undefined;
  let entries = 0;
  for (const raw of it) {
    entries++;
    const stored = raw.pop() as string;
    const r = { seq: raw[0], prev_hash: raw[7], hash: stored };
    // JSON.stringify of [seq, at, actor, action, target, outcome, details, prevHash]: entryHash's canonical form.
    const computed = sha256(JSON.stringify(raw));
    if (computed !== r.hash) return { ok: false, entries, brokenSeq: r.seq, problem: `entry ${r.seq} was changed: its hash does not match its contents` };
    if (prev === undefined) {
      first = r;
    } else if (r.prev_hash !== prev.hash) {
      const gap = r.seq === prev.seq + 1 ? '' : ` (entries ${prev.seq + 1} to ${r.seq - 1} are missing)`;
      return { ok: false, entries, brokenSeq: r.seq, problem: `entry ${r.seq} does not follow entry ${prev.seq}: its prevHash is not that entry's hash${gap}` };
    } else if (r.seq !== prev.seq + 1) {
      return { ok: false, entries, brokenSeq: r.seq, problem: `entry ${r.seq} follows entry ${prev.seq}: the sequence was renumbered` };
    }
    prev = { seq: r.seq, hash: r.hash };
  }
  if (!first || !prev) return { ok: true, entries: 0, firstSeq: null, lastSeq: null, head: GENESIS, startsAfterCut: false };
  if (first.prev_hash === GENESIS && first.seq !== 1) return { ok: false, entries, brokenSeq: first.seq, problem: `entry ${first.seq} claims to be the first entry ever written but is numbered ${first.seq}` };
  const startsAfterCut = first.prev_hash !== GENESIS;
  if (startsAfterCut) {
    const cut = db.prepare<[], { details: string | null }>("SELECT details FROM audit_log WHERE action = 'audit-prune' AND actor = 'agent' ORDER BY seq DESC LIMIT 1").get();
    const keptFrom = cut?.details ? (JSON.parse(cut.details) as { keptFrom?: unknown }).keptFrom : undefined;
    if (keptFrom !== first.seq) {
      return { ok: false, entries, brokenSeq: first.seq, problem: `entry ${first.seq} follows entries that are missing, and no audit-prune entry records a cut there${typeof keptFrom === 'number' ? ` (the last cut kept from entry ${keptFrom})` : ''}` };
    }
  }
  return { ok: true, entries, firstSeq: first.seq, lastSeq: prev.seq, head: prev.hash, startsAfterCut };
}
