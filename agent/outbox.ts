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
 *   loop (or at once when the buffer is large); `enqueueNow()` commits the buffer and its own row
 *   in the caller's transaction, for statuses that must be durable before the action they guard.
 */
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { Db, MigrationSet } from '../lib/sqlite.js';

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
}

export class Outbox {
  private nextSeq = 1;
  private count = 0;
  private bytes = 0;
  private dropped = 0;
  private sent = 0;
  private acked = 0;
  private pending: { seq: number; msg: OutboxMessage; payload: Buffer; at: number }[] = [];
  /** Acknowledged rows waiting for their delete: [seq, payload bytes]. */
  private acks: [number, number][] = [];
  private flushScheduled: NodeJS.Immediate | undefined;
  private ackScheduled: NodeJS.Immediate | undefined;
  private sender: OutboxSender | undefined;
  private generation = 0;
  private cursor = 0;
  private inflight = 0;
  private buffer: Row[] = [];
  private bufferExhausted = false;
  private readonly drainWaiters = new Set<() => void>();

  private readonly stmts;

  constructor(
    private readonly opts: { db: Db; logger: Logger; clock: Clock; limits: OutboxLimits },
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
  }

  /** Buffers a message; committed on the next turn of the event loop. Returns its seq. */
  enqueue(msg: OutboxMessage): number {
    const seq = this.nextSeq++;
    const payload = typeof msg.payload === 'string' ? Buffer.from(msg.payload, 'utf8') : msg.payload;
    this.pending.push({ seq, msg, payload, at: this.opts.clock.now() });
    if (this.pending.length >= FLUSH_AT) this.flush();
    else this.flushScheduled ??= setImmediate(() => this.flush());
    return seq;
  }

  /** Commits the buffer and this message now (inside the caller's transaction, if any). */
  enqueueNow(msg: OutboxMessage): number {
    const seq = this.enqueue(msg);
    this.flush();
    return seq;
  }

  /** Commits buffered messages and enforces the bounds; then sends what the window allows. */
  flush(): void {
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const db = this.opts.db;
    db.transaction(() => {
      for (const p of batch) {
        this.stmts.insert.run(p.seq, p.msg.topic, p.payload, p.msg.kind, p.msg.retain ? 1 : 0, p.at);
        this.count++;
        this.bytes += p.payload.length;
      }
      this.enforceBounds();
    })();
    this.bufferExhausted = false;
    this.pump();
  }

  private enforceBounds(): void {
    const { maxMessages, maxBytes } = this.opts.limits;
    for (const kind of ['telemetry', 'event'] as const) {
      while (this.count > maxMessages || this.bytes > maxBytes) {
        const over = Math.max(this.count - maxMessages, 1);
        const victims = this.stmts.oldestOfKind.all(kind, Math.min(over, 1000));
        if (victims.length === 0) break;
        for (const v of victims) {
          this.stmts.del.run(v.seq);
          this.count--;
          this.bytes -= v.b;
          this.dropped++;
          if (this.count <= maxMessages && this.bytes <= maxBytes) break;
        }
      }
    }
    if (this.count > maxMessages || this.bytes > maxBytes) {
      this.opts.logger.warn({ depth: this.count, bytes: this.bytes }, 'outbox over its bounds with command statuses only; keeping them');
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
        if (this.acks.length >= 256) this.flushAcks();
        else this.ackScheduled ??= setImmediate(() => this.flushAcks());
        this.pump();
      });
    }
  }

  private flushAcks(): void {
    if (this.ackScheduled) {
      clearImmediate(this.ackScheduled);
      this.ackScheduled = undefined;
    }
    if (this.acks.length === 0) return;
    const acks = this.acks;
    this.acks = [];
    this.opts.db.transaction(() => {
      for (const [seq, b] of acks) {
        // A row evicted by the bounds while in flight is already gone and already counted.
        if (this.stmts.del.run(seq).changes === 0) continue;
        this.count--;
        this.bytes -= b;
      }
    })();
    if (this.count === 0) this.notifyDrained();
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
      depth: this.count + this.pending.length,
      bytes: this.bytes,
      inflight: this.inflight,
      dropped: this.dropped,
      sent: this.sent,
      acked: this.acked,
      oldestCreatedAt: oldest,
      connected: !!this.sender,
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
