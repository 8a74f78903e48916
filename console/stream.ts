/**
 * The console's live stream: named events, numbered `{epoch}-{n}`, kept in a bounded ring so a
 * browser that reconnects with `Last-Event-ID` gets what it missed
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#the-last-event-id-header).
 *
 * Invariants: the ring holds at most `capacity` events and `maxBytes` of data; PLC values are
 * delivered but not kept (one event of 2,000 tags is about 100 kB, every second); numbers only
 * grow within an epoch; a new process has a new epoch, so an id from before a restart (or one
 * that fell out of the ring, or one from before an event not kept or a `skip`) never resumes:
 * that browser gets a full snapshot instead (and its PLC page fetches every value again), and
 * misses nothing either way.
 */
import { randomBytes } from 'node:crypto';

export type StreamEventName = 'snapshot' | 'status' | 'component' | 'alert' | 'operation' | 'plc' | 'health' | 'log';

export interface StreamEvent {
  id: string;
  name: StreamEventName;
  data: string;
}

export type Listener = (e: StreamEvent) => void;

export class EventRing {
  readonly epoch = randomBytes(4).toString('hex');
  private n = 0;
  /** The latest number of an event delivered but not kept: an id before it cannot be replayed. */
  private unkept = 0;
  private readonly ring: StreamEvent[] = [];
  private bytes = 0;
  private readonly listeners = new Set<Listener>();

  constructor(
    private readonly capacity = 5000,
    private readonly maxBytes = 1024 * 1024,
  ) {}

  /**
   * A change nobody is listening to, not kept: the number moves on and the ring is emptied, so
   * any id from before it gets a snapshot (which holds the change) instead of a replay without it.
   */
  skip(): void {
    this.unkept = ++this.n;
  }

  /**
   * `keep` false: delivered to the listeners now but not kept for a replay (PLC values: a
   * browser that missed some gets a snapshot and fetches every value again, which is less than
   * replaying them, and nothing holds 100 kB a second long enough to age into the old heap).
   */
  publish(name: StreamEventName, payload: unknown, keep = true): StreamEvent {
    const e = { id: `${this.epoch}-${++this.n}`, name, data: JSON.stringify(payload) };
    if (!keep) {
      this.unkept = this.n;
      this.deliver(e);
      return e;
    }
    this.ring.push(e);
    this.bytes += e.data.length;
    let drop = 0;
    while (drop < this.ring.length - 1 && (this.ring.length - drop > this.capacity || this.bytes > this.maxBytes)) this.bytes -= this.ring[drop++]!.data.length;
    if (drop > 0) this.ring.splice(0, drop);
    this.deliver(e);
    return e;
  }

  private deliver(e: StreamEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        this.listeners.delete(l);
      }
    }
  }

  /** The current number, for a snapshot's id. */
  lastId(): string {
    return `${this.epoch}-${this.n}`;
  }

  /** The events after `lastId`, or undefined when they cannot be replayed (other epoch, fell out). */
  since(lastId: string | undefined): StreamEvent[] | undefined {
    if (lastId === undefined) return undefined;
    const m = /^([0-9a-f]{8})-(\d+)$/.exec(lastId);
    if (!m || m[1] !== this.epoch) return undefined;
    const after = Number(m[2]);
    if (after > this.n || after < this.unkept) return undefined;
    const first = this.ring[0];
    const firstN = first ? Number(first.id.split('-')[1]) : this.n + 1;
    if (after + 1 < firstN) return undefined;
    return this.ring.filter((e) => Number(e.id.split('-')[1]) > after);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}

/** One event in the text/event-stream format; `data` is JSON, so it holds no newline. */
export function formatEvent(e: StreamEvent): string {
  return `${eventHead(e)}${e.data}\n\n`;
}

/** What comes before an event's data: `eventHead(e) + e.data + "\n\n"` is formatEvent(e). */
export function eventHead(e: StreamEvent): string {
  return `id: ${e.id}\nevent: ${e.name}\ndata: `;
}
