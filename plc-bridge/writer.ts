/**
 * Writes from the WMS (`~/plc/{device}/set`): one queue per device, answered on `~/res/{id}`.
 *
 * Invariants:
 * - a set is validated whole against the tag map before anything is sent; a rejected set never
 *   touches the PLC (write-plan.ts);
 * - its id is claimed in the store (one INSERT, atomic across the two processes of a handover)
 *   before the PLC is touched, so an id is executed at most once; a repeated id only gets its
 *   latest status again;
 * - a write whose answer is lost is never retried: it fails with `write-timeout` (outcome
 *   unknown) and the WMS decides;
 * - bits inside a register go out as FC22 mask writes, never read-modify-write (write-plan.ts);
 * - after the writes the tags are read back and the values reported in `result`.
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
  claimWrite(id: string, device: string): { claimed: true } | { claimed: false; lastMessage?: string };
  recordWrite(id: string, lastMessage: string, terminal: boolean): void;
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

export class Writer {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly depth = new Map<string, number>();
  private readonly byName: Map<string, DeviceConfig>;
  counters = { received: 0, rejected: 0, successful: 0, failed: 0, duplicates: 0 };

  constructor(private readonly opts: WriterOptions) {
    this.byName = new Map(opts.devices.map((d) => [d.name, d]));
  }

  /** Every set in flight has finished (for a handover or a stop). */
  async drain(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  /** A message on `~/plc/{device}/set`. Never throws. */
  handle(deviceName: string, payload: Buffer): void {
    this.counters.received++;
    const parsed = parseSet(payload, this.opts.maxSetBytes);
    if (!parsed.ok) {
      if (parsed.id === undefined) {
        this.opts.logger.warn({ device: deviceName, code: parsed.code }, 'set without a usable id dropped');
        return;
      }
      this.reject(parsed.id, parsed.code, parsed.message, false);
      return;
    }
    const req = parsed.req;
    let claim: ReturnType<WriteLedger['claimWrite']>;
    try {
      claim = this.opts.ledger.claimWrite(req.id, deviceName);
    } catch (err) {
      this.opts.logger.error({ err, id: req.id }, 'cannot claim the set id in the store; not executing it');
      return;
    }
    if (!claim.claimed) {
      this.counters.duplicates++;
      if (claim.lastMessage) this.opts.publish(req.id, JSON.parse(claim.lastMessage) as Record<string, unknown>);
      return;
    }
    const device = this.byName.get(deviceName);
    if (!device) return this.reject(req.id, 'unknown-device', `no device named ${deviceName}`);
    const plan = planWrite(device, req, this.opts.clock.now());
    if (!plan.ok) return this.reject(req.id, plan.code, plan.message, true, plan.tag);
    const queued = this.depth.get(deviceName) ?? 0;
    if (queued >= (this.opts.maxQueued ?? 100)) return this.reject(req.id, 'busy', `${queued} sets are waiting for ${deviceName}`);
    this.depth.set(deviceName, queued + 1);
    this.status(req.id, 'accepted', {});
    const prev = this.queues.get(deviceName) ?? Promise.resolve();
    const next = prev.then(() => this.execute(device, req, plan.ops, plan.readBack)).finally(() => {
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

  private reject(id: string, code: string, message: string, claimed = true, tag?: string): void {
    this.counters.rejected++;
    const body = this.body(id, 'rejected', { reason: { code, message, ...(tag ? { tag } : {}) } });
    if (claimed) this.record(id, body, true);
    this.opts.publish(id, body);
  }

  private finish(id: string, status: 'successful' | 'failed', extra: Record<string, unknown>): void {
    if (status === 'successful') this.counters.successful++;
    else this.counters.failed++;
    this.status(id, status, extra, true);
  }

  private status(id: string, status: Status, extra: Record<string, unknown>, terminal = false): void {
    const body = this.body(id, status, extra);
    this.record(id, body, terminal);
    this.opts.publish(id, body);
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
