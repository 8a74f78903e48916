/**
 * Replay of the bridge's store (store.ts) on the MQTT link's current connection (mqtt-link.ts),
 * with `historical: true` on data. The link owns the connection and says which client replay may
 * use right now; this file owns the pacing and the acknowledgements.
 *
 * INVARIANTS
 * - Oldest id first, at most replayPerSec per second (a token bucket topped up every
 *   REPLAY_TICK_MS, holding at most two ticks' worth) and REPLAY_INFLIGHT in flight, always at
 *   QoS 1, so that a row leaves the store (ack) only once the broker has it or refused it.
 * - start() (a new connection) begins again from the lowest row still present: the same order.
 * - A publish callback from an earlier connection generation changes nothing: its row is still in
 *   the store, and the next connection sends it again.
 * - The pacing timer runs only while there is a connection to replay on and rows or answers are
 *   outstanding; stop() clears it. Acknowledgements are batched per turn of the event loop;
 *   flushAcks() writes them now.
 */
import type { MqttClient } from 'mqtt';
import type { Clock } from '../lib/clock.js';
import type { ForwardStore, Stored } from './store.js';

const REPLAY_INFLIGHT = 64;
const REPLAY_READ = 256;
const REPLAY_TICK_MS = 100;
/** Acknowledged ids written to the store in one go at most. */
const ACK_BATCH = 256;

/** A PUBACK with a reason code (MQTT 5): the broker has the message and refuses it; resending is useless. */
export function isRefusal(err: Error): boolean {
  return typeof (err as { code?: unknown }).code === 'number';
}

function withHistorical(payload: string): string {
  try {
    const body: unknown = JSON.parse(payload);
    if (body && typeof body === 'object' && !Array.isArray(body)) return JSON.stringify({ ...body, historical: true });
  } catch {
    /* not ours to fix: sent as stored */
  }
  return payload;
}

export interface ReplayOptions {
  store: Pick<ForwardStore, 'peek' | 'ack'>;
  clock: Clock;
  replayPerSec: number;
  /** The client replay may publish on now (connected, announcing, not stopping or swapping), else undefined. */
  client(): MqttClient | undefined;
  /** The link's connection generation: it changes whenever a connection comes or goes. */
  generation(): number;
  /** A replayed row the broker acknowledged (err undefined) or refused (err with a reason code); already acked. */
  settled(row: Stored, err: Error | undefined): void;
}

export class Replay {
  private timer: NodeJS.Timeout | undefined;
  private cursor = 0;
  private pending = 0;
  private buffer: Stored[] = [];
  private tokens = 0;
  private last = 0;
  private acks: number[] = [];
  private ackScheduled: NodeJS.Immediate | undefined;

  constructor(private readonly opts: ReplayOptions) {}

  /** Replayed rows awaiting the broker's answer on the current connection. */
  get inflight(): number {
    return this.pending;
  }

  /** A new connection: from the lowest row still in the store, with one token to start on. */
  start(): void {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
    this.cursor = 0;
    this.pending = 0;
    this.buffer = [];
    this.tokens = 1;
    this.last = this.opts.clock.now();
    this.kick();
  }

  /** Makes sure the pacing timer runs while there is a client to replay on; it stops itself when the store is empty. */
  kick(): void {
    if (this.timer || !this.opts.client()) return;
    this.last = this.opts.clock.now();
    this.timer = this.opts.clock.setInterval(() => this.tick(), REPLAY_TICK_MS);
    this.tick();
  }

  /** Pauses: the timer and the rows read ahead go; start() or kick() resumes. */
  stop(): void {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
    this.buffer = [];
  }

  flushAcks(): void {
    if (this.ackScheduled) {
      clearImmediate(this.ackScheduled);
      this.ackScheduled = undefined;
    }
    if (this.acks.length === 0) return;
    const ids = this.acks;
    this.acks = [];
    this.opts.store.ack(ids);
  }

  private tick(): void {
    const now = this.opts.clock.now();
    const rate = Math.max(0.1, this.opts.replayPerSec);
    const burst = Math.max(1, (rate * REPLAY_TICK_MS * 2) / 1000);
    this.tokens = Math.min(burst, this.tokens + ((now - this.last) * rate) / 1000);
    this.last = now;
    this.pump();
  }

  private pump(): void {
    const client = this.opts.client();
    const gen = this.opts.generation();
    while (client && this.opts.client() === client && this.tokens >= 1 && this.pending < REPLAY_INFLIGHT) {
      if (this.buffer.length === 0) this.buffer = this.opts.store.peek(REPLAY_READ, this.cursor);
      const row = this.buffer.shift();
      if (!row) {
        if (this.pending === 0) this.stop();
        return;
      }
      this.tokens--;
      this.pending++;
      this.cursor = row.id;
      const payload = row.kind === 'data' ? withHistorical(row.payload) : row.payload;
      client.publish(row.topic, payload, { qos: 1, retain: row.retain }, (err) => {
        if (gen !== this.opts.generation()) return; // still in the store; the next connection resends it
        this.pending--;
        if (err && !isRefusal(err)) return; // the connection is going
        this.ack(row.id);
        this.opts.settled(row, err);
        this.pump();
      });
    }
  }

  private ack(id: number): void {
    this.acks.push(id);
    if (this.acks.length >= ACK_BATCH) this.flushAcks();
    else this.ackScheduled ??= setImmediate(() => this.flushAcks());
  }
}
