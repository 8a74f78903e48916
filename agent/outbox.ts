/**
 * The durable outbox: every QoS 1 message the agent sends to the WMS (events, command statuses)
 * is written to SQLite before it is sent and removed only when the broker acknowledges it.
 *
 * INVARIANTS
 * - A message is sent only after its row is committed (`flush()` runs before any send).
 * - Rows are sent in `seq` order. After a reconnect sending starts again from the lowest row
 *   still present, so the receiver sees every message at least once and first sightings in order.
 * - `seq` is assigned in memory from max(seq)+1 at start; this process is the only writer.
 * - Bounds (count, bytes) are enforced at flush: the oldest telemetry goes first, then the oldest
 *   events; command statuses (`kind = 'status'`) are never dropped, even past the bounds.
 * - Writes are group-committed: `enqueue()` buffers and commits on the next turn of the event
 *   loop (or at once when the buffer is large); `commit(write)` commits the buffer, the caller's
 *   own writes and the messages it returns in one transaction, for statuses that must be durable
 *   before the action they guard (`enqueueNow()` is commit of one message).
 * - The counters (depth, bytes, dropped) change only once a transaction has committed, so they
 *   always match the table. A commit that fails (disk full) changes nothing: the buffered
 *   messages stay buffered and are committed by a later flush (the store gate retries), a
 *   caller's own messages are not queued and the caller is told (commit() throws).
 */
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { Db, MigrationSet } from '../lib/sqlite.js';
import type { StoreGate } from './store-gate.js';
import type { WalSync } from '../lib/wal-sync.js';

export type OutboxKind = 'status' | 'event' | 'telemetry';

export interface OutboxMessage {
  topic: string;
  payload: string | Buffer;
  kind: OutboxKind;
  retain?: boolean;
}

/** The part of an MQTT client the outbox needs; the callback fires on PUBACK or on failure. */
export interface OutboxSender {
  publish(topic: string, payload: Buffer, opts: { qos: 1; retain: boolean }, cb: (err?: Error) => void): void;
}

export interface OutboxLimits {
  maxMessages: number;
  maxBytes: number;
  inflight: number;
}

export const OUTBOX_MIGRATIONS: MigrationSet = {
  domain: 'outbox',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('status', 'event', 'telemetry')),
        retain INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX outbox_kind_seq ON outbox(kind, seq);`,
    },
  ],
};

interface Row {
  seq: number;
  topic: string;
  payload: Buffer;
  retain: number;
}

const FLUSH_AT = 1000;
const ACK_DELAY_MS = 200;
const READ_BATCH = 512;

export interface OutboxStats {
  depth: number;
  bytes: number;
  inflight: number;
  dropped: number;
  sent: number;
  acked: number;
  oldestCreatedAt: number | undefined;
  connected: boolean;
  /** Buffered in memory, not committed yet (a failing store keeps them here). */
  uncommitted: number;
}

interface Pending {
  seq: number;
  msg: OutboxMessage;
  payload: Buffer;
  at: number;
  /** Runs in the commit's transaction first (the caller's own write); false: the message is not queued. */
  guard?: () => boolean;
}

/** Counters as a transaction changes them; applied only once it has committed. */
interface Tally {
  count: number;
  bytes: number;
  dropped: number;
}

export class Outbox {
  private nextSeq = 1;
  /** Rows up to this seq are durable and may be sent. */
  private durableSeq = 0;
  private count = 0;
  private bytes = 0;
  private dropped = 0;
  private sent = 0;
  private acked = 0;
  private pending: Pending[] = [];
  /** Acknowledged rows waiting for their delete: [seq, payload bytes]. */
  private acks: [number, number][] = [];
  private flushScheduled: NodeJS.Immediate | undefined;
  private ackScheduled: NodeJS.Timeout | undefined;
  private sender: OutboxSender | undefined;
  private generation = 0;
  private cursor = 0;
  private inflight = 0;
  private buffer: Row[] = [];
  private bufferExhausted = false;
  private readonly drainWaiters = new Set<() => void>();

  private readonly stmts;

  constructor(
    private readonly opts: {
      db: Db;
      logger: Logger;
      clock: Clock;
      limits: OutboxLimits;
      gate?: StoreGate;
      /** With a connection at synchronous = NORMAL: rows are sent only once this says they are durable. */
      sync?: WalSync;
    },
  ) {
    const db = opts.db;
    this.stmts = {
      insert: db.prepare<[number, string, Buffer, string, number, number]>('INSERT INTO outbox(seq, topic, payload, kind, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      del: db.prepare<[number]>('DELETE FROM outbox WHERE seq = ?'),
      next: db.prepare<[number, number], Row>('SELECT seq, topic, payload, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
      oldestOfKind: db.prepare<[string, number], { seq: number; b: number }>('SELECT seq, length(payload) AS b FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?'),
      // The lowest seq is the oldest row: a primary-key lookup, not a scan.
      oldest: db.prepare<[], { t: number | null }>('SELECT created_at AS t FROM outbox ORDER BY seq LIMIT 1'),
    };
  }

  /** Loads counters from the table. Synchronous; call once before use. */
  open(): void {
    const r = this.opts.db.prepare('SELECT count(*) AS n, coalesce(sum(length(payload)), 0) AS b, coalesce(max(seq), 0) AS m FROM outbox').get() as {
      n: number;
      b: number;
      m: number;
    };
    this.count = r.n;
    this.bytes = r.b;
    this.nextSeq = r.m + 1;
    this.durableSeq = r.m;
    this.opts.gate?.addRetry(() => {
      const ok = this.flush() && this.flushAcks();
      // Rows whose fsync failed are sent once a new one succeeds.
      if (ok && this.durableSeq < this.nextSeq - 1) this.afterDurable(this.nextSeq - 1);
      return ok;
    });
  }

  /**
   * Buffers a message; committed on the next turn of the event loop. Returns its seq. `guard`,
   * when given, runs first in that commit's transaction (the caller's own write, group-committed
   * with the message); when it returns false the message is not queued.
   */
  enqueue(msg: OutboxMessage, guard?: () => boolean): number {
    const p = this.toPending(msg);
    if (guard) p.guard = guard;
    this.pending.push(p);
    if (this.pending.length >= FLUSH_AT) this.flush();
    else this.flushScheduled ??= setImmediate(() => this.flush());
    return p.seq;
  }

  /** Commits the buffer and this message now. Throws when the store cannot commit (nothing is queued then). */
  enqueueNow(msg: OutboxMessage): number {
    return this.commit(() => [msg])[0]!;
  }

  /**
   * One transaction: `write` (the caller's own writes, e.g. a command's status row), the buffered
   * messages, and the messages `write` returns, after them in sequence order. Only once it has
   * committed are they counted and sent. Throws what the commit threw; then nothing changed but
   * the sequence numbers `write`'s messages would have had.
   *
   * Call it outside any other transaction: a caller's transaction that rolls back after this
   * returned would leave the counters wrong.
   */
  commit(write: () => readonly OutboxMessage[] | void): number[] {
    this.clearScheduledFlush();
    const buffered = this.pending;
    this.pending = [];
    const tally: Tally = { count: this.count, bytes: this.bytes, dropped: 0 };
    let own: Pending[] = [];
    const acks = this.acks;
    this.acks = [];
    try {
      this.opts.db.transaction(() => {
        // The buffered messages (and their guards' writes) come first: they were queued first.
        for (const p of buffered) this.insertRow(p, tally);
        own = (write() ?? []).map((m) => this.toPending(m));
        for (const p of own) this.insertRow(p, tally);
        this.deleteAcked(acks, tally);
        this.enforceBounds(tally);
      })();
    } catch (err) {
      this.pending = buffered.concat(this.pending);
      this.acks = acks.concat(this.acks);
      throw err;
    }
    if (this.acks.length === 0 && this.ackScheduled) {
      clearTimeout(this.ackScheduled);
      this.ackScheduled = undefined;
    }
    this.count = tally.count;
    this.bytes = tally.bytes;
    this.dropped += tally.dropped;
    if (this.count === 0 && acks.length > 0) this.notifyDrained();
    if (tally.count > this.opts.limits.maxMessages || tally.bytes > this.opts.limits.maxBytes) {
      this.opts.logger.warn({ depth: tally.count, bytes: tally.bytes }, 'outbox over its bounds with command statuses only; keeping them');
    }
    this.bufferExhausted = false;
    try {
      this.afterDurable(this.nextSeq - 1);
    } catch (err) {
      // Committed: a sender that throws must not make the caller think it was not.
      this.opts.logger.error({ err }, 'sending from the outbox failed');
    }
    return own.map((p) => p.seq);
  }

  /**
   * Commits buffered messages and enforces the bounds; then sends what the window allows. Never
   * throws: when the store cannot commit, the messages stay buffered (the oldest telemetry and
   * events beyond the bounds are dropped from memory) and the store gate retries. True when
   * nothing is left uncommitted.
   */
  flush(): boolean {
    this.clearScheduledFlush();
    if (this.pending.length === 0) return true;
    try {
      this.commit(() => undefined);
      return true;
    } catch (err) {
      this.boundPending();
      if (this.opts.gate) this.opts.gate.failed(err, 'outbox');
      else this.opts.logger.error({ err, uncommitted: this.pending.length }, 'outbox commit failed; the messages stay in memory');
      return false;
    }
  }

  /** Rows up to `seq` are committed: sent once durable. */
  private afterDurable(seq: number): void {
    const sync = this.opts.sync;
    if (!sync) {
      this.durableSeq = Math.max(this.durableSeq, seq);
      return this.pump();
    }
    sync.after((durable) => {
      if (!durable) {
        // Not known to be on disk: not sent; the next commit's sync covers these rows too.
        this.opts.gate?.failed(new Error('fsync of the store failed'), 'outbox');
        return;
      }
      this.durableSeq = Math.max(this.durableSeq, seq);
      this.bufferExhausted = false;
      this.pump();
    });
  }

  private toPending(msg: OutboxMessage): Pending {
    const payload = typeof msg.payload === 'string' ? Buffer.from(msg.payload, 'utf8') : msg.payload;
    return { seq: this.nextSeq++, msg, payload, at: this.opts.clock.now() };
  }

  private insertRow(p: Pending, t: Tally): void {
    if (p.guard && !p.guard()) return;
    this.stmts.insert.run(p.seq, p.msg.topic, p.payload, p.msg.kind, p.msg.retain ? 1 : 0, p.at);
    t.count++;
    t.bytes += p.payload.length;
  }

  private clearScheduledFlush(): void {
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
  }

  /** While the store cannot commit: the memory buffer keeps every status, and telemetry and events within the bounds. */
  private boundPending(): void {
    let over = this.pending.length - this.opts.limits.maxMessages;
    if (over <= 0) return;
    for (const kind of ['telemetry', 'event'] as const) {
      if (over <= 0) break;
      this.pending = this.pending.filter((p) => {
        if (over <= 0 || p.msg.kind !== kind) return true;
        over--;
        this.dropped++;
        return false;
      });
    }
  }

  private enforceBounds(t: Tally): void {
    const { maxMessages, maxBytes } = this.opts.limits;
    for (const kind of ['telemetry', 'event'] as const) {
      while (t.count > maxMessages || t.bytes > maxBytes) {
        const over = Math.max(t.count - maxMessages, 1);
        const victims = this.stmts.oldestOfKind.all(kind, Math.min(over, 1000));
        if (victims.length === 0) break;
        for (const v of victims) {
          this.stmts.del.run(v.seq);
          t.count--;
          t.bytes -= v.b;
          t.dropped++;
          if (t.count <= maxMessages && t.bytes <= maxBytes) break;
        }
      }
    }
  }

  /** A connection is up: send everything still in the table, from the lowest seq. */
  attach(sender: OutboxSender): void {
    this.flushAcks();
    this.sender = sender;
    this.generation++;
    this.cursor = 0;
    this.inflight = 0;
    this.buffer = [];
    this.bufferExhausted = false;
    this.flush();
    this.pump();
  }

  /** The connection is gone: unacknowledged rows stay and are sent again on the next attach. */
  detach(): void {
    this.sender = undefined;
    this.generation++;
    this.inflight = 0;
    this.buffer = [];
    this.flushAcks();
  }

  private pump(): void {
    const sender = this.sender;
    if (!sender) return;
    const gen = this.generation;
    while (this.inflight < this.opts.limits.inflight && this.sender === sender && gen === this.generation) {
      if (this.buffer.length === 0) {
        if (this.bufferExhausted) break;
        this.buffer = this.stmts.next.all(this.cursor, READ_BATCH);
        if (this.buffer.length < READ_BATCH) this.bufferExhausted = this.buffer.length === 0;
        if (this.buffer.length === 0) break;
      }
      // Committed but not yet known to be on disk: sent after the fsync (afterDurable).
      if (this.buffer[0]!.seq > this.durableSeq) break;
      const row = this.buffer.shift()!;
      this.cursor = row.seq;
      this.inflight++;
      this.sent++;
      sender.publish(row.topic, row.payload, { qos: 1, retain: row.retain === 1 }, (err) => {
        if (gen !== this.generation) return;
        this.inflight--;
        if (err) {
          // The connection will be replaced; the row stays and is sent again after attach().
          this.opts.logger.debug({ err, seq: row.seq }, 'publish not acknowledged');
          return;
        }
        this.acked++;
        this.acks.push([row.seq, row.payload.length]);
        // Deleting acknowledged rows is not urgent (a row left behind is sent again: at least once),
        // so it rides along with the next commit, or a commit of its own a little later: not one
        // fsync per turn of the event loop while a flood is acknowledged.
        if (this.acks.length >= 1024) this.flushAcks();
        else this.ackScheduled ??= setTimeout(() => this.flushAcks(), ACK_DELAY_MS);
        this.pump();
      });
    }
  }

  /** Deletes acknowledged rows; when the store cannot commit they are kept and deleted later. */
  private flushAcks(): boolean {
    if (this.ackScheduled) {
      clearTimeout(this.ackScheduled);
      this.ackScheduled = undefined;
    }
    if (this.acks.length === 0) return true;
    const acks = this.acks;
    this.acks = [];
    const tally: Tally = { count: this.count, bytes: this.bytes, dropped: 0 };
    try {
      this.opts.db.transaction(() => this.deleteAcked(acks, tally))();
    } catch (err) {
      this.acks = acks.concat(this.acks);
      if (this.opts.gate) this.opts.gate.failed(err, 'outbox acknowledgements');
      else this.opts.logger.error({ err }, 'cannot delete acknowledged outbox rows; kept for later');
      return false;
    }
    this.count = tally.count;
    this.bytes = tally.bytes;
    if (this.count === 0) this.notifyDrained();
    return true;
  }

  private deleteAcked(acks: [number, number][], t: Tally): void {
    for (const [seq, b] of acks) {
      // A row evicted by the bounds while in flight is already gone and already counted.
      if (this.stmts.del.run(seq).changes === 0) continue;
      t.count--;
      t.bytes -= b;
    }
  }

  private notifyDrained(): void {
    for (const w of this.drainWaiters) w();
    this.drainWaiters.clear();
  }

  /** Resolves true once the table is empty (everything acknowledged), false after timeoutMs. */
  waitDrained(timeoutMs: number): Promise<boolean> {
    this.flush();
    this.flushAcks();
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = this.opts.clock.setTimeout(() => {
        this.drainWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        this.opts.clock.clearTimeout(t);
        resolve(true);
      };
      this.drainWaiters.add(done);
    });
  }

  stats(): OutboxStats {
    const oldest = this.stmts.oldest.get()?.t ?? undefined;
    return {
      depth: this.count,
      bytes: this.bytes,
      inflight: this.inflight,
      dropped: this.dropped,
      sent: this.sent,
      acked: this.acked,
      oldestCreatedAt: oldest,
      connected: !!this.sender,
      uncommitted: this.pending.length,
    };
  }

  /** Commits what is buffered and forgets the connection. The rows stay for the next start. */
  close(): void {
    this.flush();
    this.detach();
    for (const w of this.drainWaiters) w();
    this.drainWaiters.clear();
  }
}

/** For the CLI when the daemon is down: depth and age straight from the table. */
export function readOutboxStats(db: Db): { depth: number; bytes: number; oldestCreatedAt: number | undefined } {
  const r = db.prepare('SELECT count(*) AS n, coalesce(sum(length(payload)), 0) AS b, (SELECT created_at FROM outbox ORDER BY seq LIMIT 1) AS t FROM outbox').get() as {
    n: number;
    b: number;
    t: number | null;
  };
  return { depth: r.n, bytes: r.b, oldestCreatedAt: r.t ?? undefined };
}
