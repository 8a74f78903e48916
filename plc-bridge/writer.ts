/**
 * Writes from the WMS (`~/plc/{device}/set`): one queue per device, answered on `~/res/{id}`.
 *
 * Invariants:
 * - a set is validated whole against the tag map before anything is sent; a rejected set never
 *   touches the PLC (write-plan.ts);
 * - a device's queue (waiting and running) holds at most `maxQueued` sets; one beyond it is
 *   refused `busy` before its id is claimed (the id stays free), so a flood costs a lookup and
 *   an answer per set and nothing grows with it;
 * - its id is claimed in the store (an INSERT, atomic across the two processes of a handover)
 *   with its first status before the PLC is touched, so an id is executed at most once; a
 *   repeated id only gets its latest status again. The sets of one turn of the event loop are
 *   claimed in one transaction: one commit per burst, so a flood cannot hold the event loop (and
 *   the pollers) in fsyncs;
 * - every claimed id reaches exactly one terminal status; one left open by a process that
 *   stopped is closed `interrupted` when the next session starts (closeInterrupted);
 * - a write whose answer is lost is never retried: it fails with `write-timeout` (outcome
 *   unknown) and the WMS decides;
 * - bits inside a register go out as FC22 mask writes, never read-modify-write (write-plan.ts);
 * - after the writes the tags are read back and the values reported in `result`;
 * - every claimed set is recorded with who asked (`origin`: `wms:{id}` for the set topic, the
 *   control socket caller's word otherwise) and its requested values; its terminal status writes
 *   its row of the write log in the same transaction (store.ts), which the agent's audit trail
 *   reads (docs/plc-bridge.md "The write log").
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { errorCode, errorMessage } from '../lib/errors.js';
import type { DeviceConfig, ResolvedTag } from './config.js';
import { decodeBits, decodeRegisters, type Value } from './codec.js';
import { expectedReadBack, parseSet, planWrite, type SetRequest, type WriteOp } from './write-plan.js';

/** What the writer needs of a device connection (plc-bridge/connection.ts). */
export interface DeviceIo {
  read(area: ResolvedTag['area'], start: number, count: number): Promise<number[] | boolean[]>;
  write(op: WriteOp): Promise<void>;
}

/** What the writer needs of the store (plc-bridge/store.ts). */
export interface WriteLedger {
  claimWrites(items: readonly { id: string; device: string; lastMessage: string; terminal: boolean; origin?: string; request?: string }[]): ({ claimed: true } | { claimed: false; lastMessage?: string })[];
  lastWrite(id: string): { known: boolean; lastMessage?: string };
  recordWrite(id: string, lastMessage: string, terminal: boolean): void;
  closeUnfinishedWrites(close: (w: { id: string; device: string; lastMessage: string | undefined }) => string): { id: string; message: string }[];
}

/** A set that passed parsing, waiting for this turn's claim (Writer.flush). */
interface Incoming {
  deviceName: string;
  req: SetRequest;
  origin: string;
  /** Its first status: `accepted`, or a terminal rejection. */
  body: Record<string, unknown>;
  terminal: boolean;
  device?: DeviceConfig;
  ops?: WriteOp[];
  readBack?: ResolvedTag[];
}

/** Sets claimed in one transaction at most. */
const CLAIM_BATCH = 500;
/** Default bound of a device's write queue (waiting and running). */
export const MAX_QUEUED = 100;

function statusOf(message: string | undefined): string | undefined {
  if (message === undefined) return undefined;
  try {
    const s = (JSON.parse(message) as { status?: unknown }).status;
    return typeof s === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

export interface WriterOptions {
  devices: readonly DeviceConfig[];
  io: (device: string) => DeviceIo | undefined;
  ledger: WriteLedger;
  /** Publishes a status on `~/res/{id}` (retained, QoS 1, durable). */
  publish(id: string, body: Record<string, unknown>): void;
  clock: Clock;
  logger: Logger;
  maxSetBytes: number;
  /** Sets waiting per device beyond which a new one is rejected `busy`. */
  maxQueued?: number;
}

type Status = 'accepted' | 'executing' | 'successful' | 'failed' | 'rejected';

const TERMINAL: ReadonlySet<unknown> = new Set(['successful', 'failed', 'rejected']);

export class Writer {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly depth = new Map<string, number>();
  private readonly byName: Map<string, DeviceConfig>;
  private readonly maxQueued: number;
  private batch: Incoming[] = [];
  /** Per device: accepted sets in `batch`, not yet claimed (they count against the bound). */
  private readonly batched = new Map<string, number>();
  private flushScheduled: NodeJS.Immediate | undefined;
  /** Callers waiting for a set's terminal status (the control socket's `write`), by id. */
  private readonly waiters = new Map<string, ((body: Record<string, unknown>) => void)[]>();
  counters = { received: 0, rejected: 0, busy: 0, successful: 0, failed: 0, duplicates: 0 };

  constructor(private readonly opts: WriterOptions) {
    this.byName = new Map(opts.devices.map((d) => [d.name, d]));
    this.maxQueued = opts.maxQueued ?? MAX_QUEUED;
  }

  /** Every set received has been claimed and every one in flight has finished (for a handover or a stop). */
  async drain(): Promise<void> {
    this.flush();
    await Promise.all([...this.queues.values()]);
  }

  /**
   * Resolves with the set's first terminal status published from now on (a duplicate id's stored
   * one included), or undefined after `timeoutMs`. Call it before handle().
   */
  terminal(id: string, timeoutMs: number): Promise<Record<string, unknown> | undefined> {
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      const done = (body: Record<string, unknown> | undefined): void => {
        this.opts.clock.clearTimeout(timer);
        const rest = (this.waiters.get(id) ?? []).filter((w) => w !== done);
        if (rest.length > 0) this.waiters.set(id, rest);
        else this.waiters.delete(id);
        resolve(body);
      };
      const timer = this.opts.clock.setTimeout(() => done(undefined), timeoutMs);
      list.push(done);
      this.waiters.set(id, list);
    });
  }

  /**
   * A message on `~/plc/{device}/set` (origin `wms:{id}`), or a write from the control socket
   * with its caller's origin. Never throws, and never touches the store's write lock itself: see flush().
   */
  handle(deviceName: string, payload: Buffer, origin?: string): void {
    this.counters.received++;
    const parsed = parseSet(payload, this.opts.maxSetBytes);
    if (!parsed.ok) {
      if (parsed.id === undefined) {
        this.opts.logger.warn({ device: deviceName, code: parsed.code }, 'set without a usable id dropped');
        return;
      }
      this.reject(parsed.id, parsed.code, parsed.message);
      return;
    }
    const req = parsed.req;
    const who = origin ?? `wms:${req.id}`;
    const device = this.byName.get(deviceName);
    let item: Incoming;
    if (!device) {
      item = { deviceName, req, origin: who, body: this.rejectedBody(req.id, 'unknown-device', `no device named ${deviceName}`), terminal: true };
    } else {
      // The queue bound is checked first, before the set is planned and before its id is
      // claimed: a flood beyond it costs a lookup and an answer per set, no commit, and the WMS
      // may send the id again later.
      const waiting = (this.depth.get(deviceName) ?? 0) + (this.batched.get(deviceName) ?? 0);
      if (waiting >= this.maxQueued) return this.refuseBusy(req.id, deviceName, waiting);
      const plan = planWrite(device, req, this.opts.clock.now());
      if (!plan.ok) item = { deviceName, req, origin: who, body: this.rejectedBody(req.id, plan.code, plan.message, plan.tag), terminal: true };
      else item = { deviceName, req, origin: who, body: this.body(req.id, 'accepted', {}), terminal: false, device, ops: plan.ops, readBack: plan.readBack };
      this.batched.set(deviceName, (this.batched.get(deviceName) ?? 0) + 1);
    }
    this.batch.push(item);
    if (this.batch.length >= CLAIM_BATCH) this.flush();
    else this.flushScheduled ??= setImmediate(() => this.flush());
  }

  /**
   * Claims the sets that arrived in this turn of the event loop, each with its first status, in
   * one transaction (one commit for a burst), then answers them and queues the accepted ones.
   */
  flush(): void {
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.batched.clear();
    let claims: ReturnType<WriteLedger['claimWrites']>;
    try {
      claims = this.opts.ledger.claimWrites(
        batch.map((b) => ({ id: b.req.id, device: b.deviceName, lastMessage: JSON.stringify(b.body), terminal: b.terminal, origin: b.origin, request: JSON.stringify(b.req.tags) })),
      );
    } catch (err) {
      this.opts.logger.error({ err, sets: batch.length }, 'cannot claim the set ids in the store; not executing them');
      return;
    }
    batch.forEach((b, i) => {
      const claim = claims[i];
      if (!claim?.claimed) {
        this.counters.duplicates++;
        if (claim?.lastMessage) this.publish(b.req.id, JSON.parse(claim.lastMessage) as Record<string, unknown>);
        return;
      }
      if (b.terminal) this.counters.rejected++;
      this.publish(b.req.id, b.body);
      if (b.terminal || !b.device || !b.ops || !b.readBack) return;
      this.enqueue(b.device, b.req, b.ops, b.readBack);
    });
  }

  /**
   * At the start of a new session (no other instance alive): every write a previous process
   * claimed but did not finish gets its terminal status, `failed` `interrupted`. Its outcome is
   * unknown (it may have reached the PLC), so it is not retried. Returns how many.
   */
  closeInterrupted(): number {
    const closed = this.opts.ledger.closeUnfinishedWrites((w) => {
      const was = statusOf(w.lastMessage);
      const message =
        was === 'executing'
          ? 'the bridge stopped while this set was being written: its outcome is unknown; not retried'
          : 'the bridge stopped before this set was written; not retried';
      return JSON.stringify(this.body(w.id, 'failed', { reason: { code: 'interrupted', message }, result: { was: was ?? 'claimed' } }));
    });
    for (const c of closed) {
      this.counters.failed++;
      this.publish(c.id, JSON.parse(c.message) as Record<string, unknown>);
    }
    if (closed.length > 0) this.opts.logger.warn({ writes: closed.length, ids: closed.slice(0, 20).map((c) => c.id) }, 'writes left unfinished by a previous process closed as interrupted');
    return closed.length;
  }

  /** Publishes a status on `~/res/{id}`; a terminal one also answers whoever waits for it (terminal()). */
  private publish(id: string, body: Record<string, unknown>): void {
    this.opts.publish(id, body);
    if (!TERMINAL.has(body.status)) return;
    for (const w of this.waiters.get(id) ?? []) w(body);
  }

  private refuseBusy(id: string, deviceName: string, waiting: number): void {
    let known: ReturnType<WriteLedger['lastWrite']>;
    try {
      known = this.opts.ledger.lastWrite(id);
    } catch (err) {
      this.opts.logger.error({ err, id }, 'cannot look the set id up in the store');
      return;
    }
    if (known.known) {
      // An id seen before only gets its latest status again, busy or not.
      this.counters.duplicates++;
      if (known.lastMessage) this.publish(id, JSON.parse(known.lastMessage) as Record<string, unknown>);
      return;
    }
    this.counters.busy++;
    this.reject(id, 'busy', `${waiting} sets are waiting for ${deviceName}`);
  }

  private enqueue(device: DeviceConfig, req: SetRequest, ops: WriteOp[], readBack: ResolvedTag[]): void {
    const deviceName = device.name;
    this.depth.set(deviceName, (this.depth.get(deviceName) ?? 0) + 1);
    const prev = this.queues.get(deviceName) ?? Promise.resolve();
    const next = prev.then(() => this.execute(device, req, ops, readBack)).finally(() => {
      this.depth.set(deviceName, (this.depth.get(deviceName) ?? 1) - 1);
      if (this.queues.get(deviceName) === next) this.queues.delete(deviceName);
    });
    this.queues.set(deviceName, next);
  }

  private async execute(device: DeviceConfig, req: SetRequest, ops: WriteOp[], readBack: ResolvedTag[]): Promise<void> {
    const io = this.opts.io(device.name);
    if (!io) return this.finish(req.id, 'failed', { reason: { code: 'not-connected', message: `${device.name} has no connection` } });
    if (req.expiresAt !== undefined && Date.parse(req.expiresAt) < this.opts.clock.now()) {
      return this.finish(req.id, 'failed', { reason: { code: 'expired', message: `expired at ${req.expiresAt} while waiting` } });
    }
    this.status(req.id, 'executing', { progress: { step: 'write' } });
    for (const [i, op] of ops.entries()) {
      try {
        await io.write(op);
      } catch (err) {
        const code = errorCode(err) ?? 'write-failed';
        return this.finish(req.id, 'failed', {
          reason: { code, message: `${errorMessage(err)} (request ${i + 1} of ${ops.length}; not retried)` },
          result: { written: i },
        });
      }
    }
    const values: Record<string, Value | null> = {};
    let mismatch: string | undefined;
    for (const tag of readBack) {
      try {
        const data = await io.read(tag.area, tag.start, tag.count);
        const v = tag.area === 'coil' || tag.area === 'discrete' ? decodeBits(tag, data as boolean[]) : decodeRegisters(tag, data as number[]);
        values[tag.name] = v;
        if (mismatch === undefined && !sameValue(tag, req.tags[tag.name], v)) mismatch = tag.name;
      } catch (err) {
        values[tag.name] = null;
        mismatch ??= `${tag.name} (${errorCode(err) ?? 'read failed'})`;
      }
    }
    if (mismatch !== undefined) {
      return this.finish(req.id, 'failed', { reason: { code: 'readback-mismatch', message: `read-back differs for ${mismatch}` }, result: { readBack: values } });
    }
    return this.finish(req.id, 'successful', { result: { readBack: values } });
  }

  /** A rejection that is not recorded: the id stays unclaimed (unparsable sets, `busy`). */
  private reject(id: string, code: string, message: string): void {
    this.counters.rejected++;
    this.publish(id, this.rejectedBody(id, code, message));
  }

  private rejectedBody(id: string, code: string, message: string, tag?: string): Record<string, unknown> {
    return this.body(id, 'rejected', { reason: { code, message, ...(tag ? { tag } : {}) } });
  }

  private finish(id: string, status: 'successful' | 'failed', extra: Record<string, unknown>): void {
    if (status === 'successful') this.counters.successful++;
    else this.counters.failed++;
    this.status(id, status, extra, true);
  }

  private status(id: string, status: Status, extra: Record<string, unknown>, terminal = false): void {
    const body = this.body(id, status, extra);
    this.record(id, body, terminal);
    this.publish(id, body);
  }

  private record(id: string, body: Record<string, unknown>, terminal: boolean): void {
    try {
      this.opts.ledger.recordWrite(id, JSON.stringify(body), terminal);
    } catch (err) {
      this.opts.logger.error({ err, id }, 'cannot record the set status in the store');
    }
  }

  private body(id: string, status: Status, extra: Record<string, unknown>): Record<string, unknown> {
    return { id, op: 'set', status, ts: new Date(this.opts.clock.now()).toISOString(), ...extra };
  }
}

/** Whether a read-back value is what was written, at the register's resolution (write-plan.ts). */
export function sameValue(tag: ResolvedTag, wanted: unknown, got: Value): boolean {
  let expected: Value;
  try {
    expected = expectedReadBack(tag, wanted);
  } catch {
    return false;
  }
  if (typeof expected === 'number' && typeof got === 'number') return Math.abs(expected - got) <= Math.abs(expected) * 1e-12;
  return expected === got;
}
