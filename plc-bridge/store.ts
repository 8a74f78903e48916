/**
 * Store and forward for the bridge: messages that could not be delivered live wait here, in the
 * bridge's own SQLite file ({dataDir}/plc-bridge.db), until the broker acknowledges their replay.
 * The same file holds the `set` ids, so a write is executed once even while two bridge instances
 * (old and new, during a handover) are both subscribed.
 *
 * INVARIANTS
 * - Row ids only grow (AUTOINCREMENT), also after the table empties and across processes, so a
 *   reader's cursor "everything after id N" never skips a row committed later.
 * - Oldest first is id order. A row leaves the table by ack() (the broker has it) or by the bounds.
 * - The counters (depth, bytes, dropped, droppedBytes) live in one row updated in the same
 *   transaction as the rows they count, so they stay right with two processes on the file and
 *   survive a restart.
 * - Bounds, enforced at each commit: data older than maxAgeSec goes, then the oldest data goes
 *   until the bytes fit. `result` rows (answers on ~/res/{id}) are never dropped: each `set` must
 *   reach exactly one terminal status, and results only arise from sets received while connected,
 *   so they cannot grow without bound. Age is judged oldest id first (a clock step backwards only
 *   delays an expiry).
 * - push() is group-committed: one transaction per turn of the event loop or per FLUSH_AT
 *   messages; what is buffered is not yet durable. flush() commits now; peek() and close() flush.
 * - claimWrite() is one INSERT: SQLite's write lock makes it atomic across processes.
 *   claimWrites() claims a batch (a flood of sets) in one transaction, each id with its first
 *   status, so a burst costs one commit, not one per set.
 * - A write id is `terminal = 0` from its claim until its terminal status is recorded; one still
 *   open when a new session starts was left by a process that stopped: closeUnfinishedWrites().
 * - The write log (`write_log`, docs/plc-bridge.md "The write log"): every claimed write gets
 *   exactly one row, in the same transaction that records its terminal status (a rejection at
 *   claim, the outcome, or `interrupted`), so a terminal status is never without its row. `seq`
 *   only grows (AUTOINCREMENT), across the processes of a handover (they share this file), so
 *   the agent's cursor "everything after seq N" never skips a row. Bounded: the oldest rows
 *   beyond WRITE_LOG_MAX go; a reader sees the cut as `first` > its cursor + 1. `log` (random,
 *   made with the table) names this log: a new store is a new log.
 */
import type { Logger } from '../lib/log.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { openDatabase, type Db, type MigrationSet } from '../lib/sqlite.js';

export interface Stored {
  id: number;
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
  kind: 'data' | 'result';
  createdAt: number;
}

export type StoredInput = Omit<Stored, 'id' | 'createdAt'>;

export interface ForwardStoreStats {
  depth: number;
  bytes: number;
  dropped: number;
  droppedBytes: number;
  oldestAgeMs?: number;
}

export interface ForwardStoreOptions {
  path: string;
  maxBytes: number;
  maxAgeSec: number;
  clock?: Clock;
  /** The caller's child logger ({component: 'plc-store'}). */
  logger: Logger;
}

export const FORWARD_MIGRATIONS: MigrationSet = {
  domain: 'plc-bridge',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE forward (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
        retain INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('data', 'result')),
        created_at INTEGER NOT NULL
      );
      CREATE INDEX forward_kind_id ON forward(kind, id);
      CREATE TABLE forward_meta (
        k INTEGER PRIMARY KEY CHECK (k = 1),
        depth INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        dropped INTEGER NOT NULL,
        dropped_bytes INTEGER NOT NULL
      );
      INSERT INTO forward_meta VALUES (1, 0, 0, 0, 0);
      CREATE TABLE plc_writes (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        last_message TEXT,
        terminal INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX plc_writes_updated ON plc_writes(updated_at);`,
    },
    {
      version: 2,
      up: `ALTER TABLE plc_writes ADD COLUMN origin TEXT;
      ALTER TABLE plc_writes ADD COLUMN request TEXT;
      CREATE TABLE write_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        device TEXT NOT NULL,
        origin TEXT NOT NULL,
        request TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        result TEXT,
        at INTEGER NOT NULL
      );
      CREATE TABLE write_log_meta (k INTEGER PRIMARY KEY CHECK (k = 1), log_id TEXT NOT NULL);
      INSERT INTO write_log_meta VALUES (1, lower(hex(randomblob(16))));`,
    },
  ],
};

/** Rows the write log keeps at most (a few hundred bytes each): the oldest beyond go. */
export const WRITE_LOG_MAX = 50_000;

/** A write with its terminal status, as the write log keeps it (docs/plc-bridge.md). */
export interface WriteRecord {
  seq: number;
  id: string;
  device: string;
  /** Who asked: `wms:{id}` for a set on `~/plc/{device}/set`, what a control-socket caller said (`console:{session}`). */
  origin: string;
  /** The requested values, `{TAG: value}`; null when the set was not parsed that far. */
  tags: Record<string, unknown> | null;
  status: string;
  reason?: { code: string; message?: string };
  result?: Record<string, unknown>;
  /** When the terminal status was recorded (ISO 8601). */
  at: string;
}

export interface WriteLogPage {
  /** This log's id: it changes only when the store is made anew. */
  log: string;
  /** The oldest and newest seq kept (0 when empty). */
  first: number;
  last: number;
  records: WriteRecord[];
}

/** What a claim records besides the id's first status. */
export interface WriteClaim {
  id: string;
  device: string;
  lastMessage: string;
  terminal: boolean;
  origin?: string;
  /** The requested values as JSON. */
  request?: string;
}

/** Messages per group commit; at 20k values/s a tick rarely holds more. */
const FLUSH_AT = 1000;
/** Rows looked at per step while enforcing the bounds. */
const BOUND_BATCH = 500;
const DROP_LOG_EVERY_MS = 60_000;

interface Row {
  id: number;
  topic: string;
  payload: string;
  qos: number;
  retain: number;
  kind: string;
  created_at: number;
}

interface LogRow {
  seq: number;
  id: string;
  device: string;
  origin: string;
  request: string | null;
  status: string;
  reason: string | null;
  result: string | null;
  at: number;
}

/** A terminal status message's parts the write log keeps. Pure. */
function terminalParts(message: string): { status: string; reason: string | null; result: string | null } {
  try {
    const m = JSON.parse(message) as { status?: unknown; reason?: unknown; result?: unknown };
    return {
      status: typeof m.status === 'string' ? m.status : 'unknown',
      reason: m.reason !== undefined ? JSON.stringify(m.reason) : null,
      result: m.result !== undefined ? JSON.stringify(m.result) : null,
    };
  } catch {
    return { status: 'unknown', reason: null, result: null };
  }
}

function toRecord(r: LogRow): WriteRecord {
  const rec: WriteRecord = {
    seq: r.seq,
    id: r.id,
    device: r.device,
    origin: r.origin,
    tags: r.request === null ? null : (JSON.parse(r.request) as Record<string, unknown>),
    status: r.status,
    at: new Date(r.at).toISOString(),
  };
  if (r.reason !== null) rec.reason = JSON.parse(r.reason) as WriteRecord['reason'] & object;
  if (r.result !== null) rec.result = JSON.parse(r.result) as Record<string, unknown>;
  return rec;
}

interface Meta {
  depth: number;
  bytes: number;
  dropped: number;
  dropped_bytes: number;
}

interface Pending {
  m: StoredInput;
  bytes: number;
  at: number;
}

function statements(db: Db) {
  return {
    insert: db.prepare<[string, string, number, number, number, string, number]>(
      'INSERT INTO forward(topic, payload, bytes, qos, retain, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    peek: db.prepare<[number, number], Row>('SELECT id, topic, payload, qos, retain, kind, created_at FROM forward WHERE id > ? ORDER BY id LIMIT ?'),
    ack: db.prepare<[number], { bytes: number }>('DELETE FROM forward WHERE id = ? RETURNING bytes'),
    oldestData: db.prepare<[number], { id: number; bytes: number; created_at: number }>(
      "SELECT id, bytes, created_at FROM forward WHERE kind = 'data' ORDER BY id LIMIT ?",
    ),
    dropDataUpTo: db.prepare<[number]>("DELETE FROM forward WHERE kind = 'data' AND id <= ?"),
    oldest: db.prepare<[], { t: number }>('SELECT created_at AS t FROM forward ORDER BY id LIMIT 1'),
    meta: db.prepare<[], Meta>('SELECT depth, bytes, dropped, dropped_bytes FROM forward_meta WHERE k = 1'),
    addMeta: db.prepare<[number, number, number, number]>(
      'UPDATE forward_meta SET depth = depth + ?, bytes = bytes + ?, dropped = dropped + ?, dropped_bytes = dropped_bytes + ? WHERE k = 1',
    ),
    claim: db.prepare<[string, string, number, number]>(
      'INSERT INTO plc_writes(id, device, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO NOTHING',
    ),
    unfinished: db.prepare<[], { id: string; device: string; last_message: string | null }>('SELECT id, device, last_message FROM plc_writes WHERE terminal = 0 ORDER BY created_at, id'),
    lastMessage: db.prepare<[string], { last_message: string | null }>('SELECT last_message FROM plc_writes WHERE id = ?'),
    record: db.prepare<[string, number, number, string]>('UPDATE plc_writes SET last_message = ?, terminal = ?, updated_at = ? WHERE id = ?'),
    prune: db.prepare<[number]>('DELETE FROM plc_writes WHERE updated_at < ?'),
    claimFull: db.prepare<[string, string, string, number, number, number, string | null, string | null]>(
      'INSERT INTO plc_writes(id, device, last_message, terminal, created_at, updated_at, origin, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING',
    ),
    writeRow: db.prepare<[string], { device: string; origin: string | null; request: string | null }>('SELECT device, origin, request FROM plc_writes WHERE id = ?'),
    logInsert: db.prepare<[string, string, string, string | null, string, string | null, string | null, number]>(
      'INSERT INTO write_log(id, device, origin, request, status, reason, result, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    logTrim: db.prepare<[number]>('DELETE FROM write_log WHERE seq <= ?'),
    logPage: db.prepare<[number, number], LogRow>('SELECT seq, id, device, origin, request, status, reason, result, at FROM write_log WHERE seq > ? ORDER BY seq LIMIT ?'),
    logBounds: db.prepare<[], { first: number | null; last: number | null }>('SELECT MIN(seq) AS first, MAX(seq) AS last FROM write_log'),
    logId: db.prepare<[], { log_id: string }>('SELECT log_id FROM write_log_meta WHERE k = 1'),
  };
}

export class ForwardStore {
  private db: Db | undefined;
  private stmts: ReturnType<typeof statements> | undefined;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private flushScheduled: NodeJS.Immediate | undefined;
  private lastDropLogAt = -Infinity;
  private droppedSinceLog = 0;
  private droppedBytesSinceLog = 0;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: ForwardStoreOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
  }

  open(): void {
    if (this.db) return;
    this.db = openDatabase(this.opts.path, { migrations: [FORWARD_MIGRATIONS] });
    this.stmts = statements(this.db);
  }

  /** Commits what is buffered and closes the file. The rows stay for the next start. */
  close(): void {
    if (!this.db) return;
    this.flush();
    this.db.close();
    this.db = undefined;
    this.stmts = undefined;
  }

  push(m: StoredInput): void {
    this.handles(); // fail here, at the caller, rather than in the deferred commit
    const bytes = Buffer.byteLength(m.payload, 'utf8');
    this.pending.push({ m, bytes, at: this.clock.now() });
    this.pendingBytes += bytes;
    if (this.pending.length >= FLUSH_AT) this.flush();
    else this.flushScheduled ??= setImmediate(() => this.flush());
  }

  /** Commits the buffer and enforces the bounds, in one transaction. */
  flush(): void {
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
    const { db, stmts } = this.handles();
    const batch = this.pending;
    if (batch.length === 0 && !this.overBounds(stmts)) return;
    this.pending = [];
    this.pendingBytes = 0;
    db.transaction(() => {
      let bytes = 0;
      for (const p of batch) {
        stmts.insert.run(p.m.topic, p.m.payload, p.bytes, p.m.qos, p.m.retain ? 1 : 0, p.m.kind, p.at);
        bytes += p.bytes;
      }
      if (batch.length > 0) stmts.addMeta.run(batch.length, bytes, 0, 0);
      this.enforceBounds(stmts);
    })();
  }

  /** Up to `limit` rows with an id above `afterId`, oldest first. */
  peek(limit: number, afterId = 0): Stored[] {
    this.flush();
    return this.handles().stmts.peek.all(afterId, limit).map((r) => ({
      id: r.id,
      topic: r.topic,
      payload: r.payload,
      qos: r.qos === 1 ? 1 : 0,
      retain: r.retain === 1,
      kind: r.kind === 'result' ? 'result' : 'data',
      createdAt: r.created_at,
    }));
  }

  /** Deletes delivered rows. A row already gone (dropped by the bounds, acked by the other instance) is skipped. */
  ack(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const { db, stmts } = this.handles();
    db.transaction(() => {
      let n = 0;
      let bytes = 0;
      for (const id of ids) {
        const r = stmts.ack.get(id);
        if (!r) continue;
        n++;
        bytes += r.bytes;
      }
      if (n > 0) stmts.addMeta.run(-n, -bytes, 0, 0);
    })();
  }

  stats(): ForwardStoreStats {
    const { stmts } = this.handles();
    const meta = stmts.meta.get();
    const oldest = stmts.oldest.get()?.t ?? this.pending[0]?.at;
    const s: ForwardStoreStats = {
      depth: (meta?.depth ?? 0) + this.pending.length,
      bytes: (meta?.bytes ?? 0) + this.pendingBytes,
      dropped: meta?.dropped ?? 0,
      droppedBytes: meta?.dropped_bytes ?? 0,
    };
    if (oldest !== undefined) s.oldestAgeMs = Math.max(0, this.clock.now() - oldest);
    return s;
  }

  /** 'claimed' when this call inserted the id; otherwise the stored last status message. */
  claimWrite(id: string, device: string): { claimed: true } | { claimed: false; lastMessage?: string } {
    const { stmts } = this.handles();
    const now = this.clock.now();
    if (stmts.claim.run(id, device, now, now).changes === 1) return { claimed: true };
    const last = stmts.lastMessage.get(id)?.last_message;
    return last == null ? { claimed: false } : { claimed: false, lastMessage: last };
  }

  /**
   * Claims a batch of ids in one transaction, each with its first status (`accepted`, or a
   * rejection as terminal). Per item, in order: claimed, or the stored last status of an id seen
   * before (also earlier in the same batch).
   */
  claimWrites(items: readonly WriteClaim[]): ({ claimed: true } | { claimed: false; lastMessage?: string })[] {
    const { db, stmts } = this.handles();
    const now = this.clock.now();
    return db.transaction(() =>
      items.map((it) => {
        if (stmts.claimFull.run(it.id, it.device, it.lastMessage, it.terminal ? 1 : 0, now, now, it.origin ?? null, it.request ?? null).changes === 1) {
          if (it.terminal) this.logTerminal(stmts, it.id, it.lastMessage, now);
          return { claimed: true as const };
        }
        const last = stmts.lastMessage.get(it.id)?.last_message;
        return last == null ? { claimed: false as const } : { claimed: false as const, lastMessage: last };
      }),
    )();
  }

  /** The stored last status of a write id, without claiming it; undefined when unknown. */
  lastWrite(id: string): { known: boolean; lastMessage?: string } {
    const row = this.handles().stmts.lastMessage.get(id);
    if (!row) return { known: false };
    return row.last_message == null ? { known: true } : { known: true, lastMessage: row.last_message };
  }

  /**
   * Closes every write id still open (claimed, no terminal status): `close` gives each its
   * terminal message. One transaction; returns what was closed, to be published.
   */
  closeUnfinishedWrites(close: (w: { id: string; device: string; lastMessage: string | undefined }) => string): { id: string; message: string }[] {
    const { db, stmts } = this.handles();
    const now = this.clock.now();
    return db.transaction(() =>
      stmts.unfinished.all().map((r) => {
        const message = close({ id: r.id, device: r.device, lastMessage: r.last_message ?? undefined });
        stmts.record.run(message, 1, now, r.id);
        this.logTerminal(stmts, r.id, message, now);
        return { id: r.id, message };
      }),
    )();
  }

  /** Records a write's latest status; a terminal one with its write-log row, in one transaction. */
  recordWrite(id: string, lastMessage: string, terminal: boolean): void {
    const { db, stmts } = this.handles();
    const now = this.clock.now();
    if (!terminal) {
      stmts.record.run(lastMessage, 0, now, id);
      return;
    }
    db.transaction(() => {
      stmts.record.run(lastMessage, 1, now, id);
      this.logTerminal(stmts, id, lastMessage, now);
    })();
  }

  /** Up to `limit` write-log rows with a seq above `after`, oldest first, with the log's id and bounds. */
  writeLog(after: number, limit: number): WriteLogPage {
    const { stmts } = this.handles();
    const b = stmts.logBounds.get();
    return {
      log: stmts.logId.get()?.log_id ?? '',
      first: b?.first ?? 0,
      last: b?.last ?? 0,
      records: stmts.logPage.all(after, limit).map(toRecord),
    };
  }

  /** The write-log row of a write that reached its terminal status (inside the caller's transaction). */
  private logTerminal(stmts: ReturnType<typeof statements>, id: string, message: string, now: number): void {
    const w = stmts.writeRow.get(id);
    if (!w) return;
    const t = terminalParts(message);
    const seq = Number(stmts.logInsert.run(id, w.device, w.origin ?? `wms:${id}`, w.request, t.status, t.reason, t.result, now).lastInsertRowid);
    if (seq > WRITE_LOG_MAX) stmts.logTrim.run(seq - WRITE_LOG_MAX);
  }

  /** Forgets write ids not touched for `olderThanMs`; returns how many. */
  pruneWrites(olderThanMs: number): number {
    return this.handles().stmts.prune.run(this.clock.now() - olderThanMs).changes;
  }

  /** Two indexed lookups: is anything over the byte bound or too old? */
  private overBounds(stmts: ReturnType<typeof statements>): boolean {
    if ((stmts.meta.get()?.bytes ?? 0) > this.opts.maxBytes) return true;
    const oldest = stmts.oldestData.get(1);
    return oldest !== undefined && oldest.created_at < this.clock.now() - this.opts.maxAgeSec * 1000;
  }

  private enforceBounds(stmts: ReturnType<typeof statements>): void {
    const cutoff = this.clock.now() - this.opts.maxAgeSec * 1000;
    let dropped = 0;
    let droppedBytes = 0;
    while (this.overBounds(stmts)) {
      const excess = (stmts.meta.get()?.bytes ?? 0) - this.opts.maxBytes;
      const rows = stmts.oldestData.all(BOUND_BATCH);
      let lastId: number | undefined;
      let n = 0;
      let b = 0;
      for (const r of rows) {
        if (r.created_at >= cutoff && b >= excess) break;
        lastId = r.id;
        n++;
        b += r.bytes;
      }
      if (lastId === undefined) break;
      stmts.dropDataUpTo.run(lastId);
      stmts.addMeta.run(-n, -b, n, b);
      dropped += n;
      droppedBytes += b;
      if (n < rows.length) break;
    }
    if (dropped === 0) return;
    // During a long outage every commit drops a little: one line per minute, with the totals.
    this.droppedSinceLog += dropped;
    this.droppedBytesSinceLog += droppedBytes;
    const now = this.clock.now();
    if (now - this.lastDropLogAt < DROP_LOG_EVERY_MS) return;
    this.lastDropLogAt = now;
    this.log.warn({ dropped: this.droppedSinceLog, droppedBytes: this.droppedBytesSinceLog }, 'store and forward full or expired: oldest data dropped');
    this.droppedSinceLog = 0;
    this.droppedBytesSinceLog = 0;
  }

  private handles(): { db: Db; stmts: ReturnType<typeof statements> } {
    if (!this.db || !this.stmts) throw new Error('ForwardStore used before open() or after close()');
    return { db: this.db, stmts: this.stmts };
  }
}
