/**
 * The bridge's data path: pollers -> report by exception -> `~/plc/{device}/{group}`.
 *
 * Roles (docs/plc-bridge.md, Handover):
 * - `active`: publishes every cycle's report with the next `seq` of its group topic;
 * - `standby`: polls on the same grid but publishes nothing; it keeps each group's latest cycle
 *   so that on takeover it can publish the ticks the old instance did not;
 * - `retiring`: gave its counters to a successor; publishes nothing more.
 *
 * Invariants:
 * - `seq` of a group topic increases by exactly one per published message, across a handover;
 * - a tick is published by exactly one instance: the old one up to `lastTick`, the new one after;
 * - the reporter's state only advances for published cycles, so the first message after a
 *   takeover reports every tag.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { BridgeConfig, DeviceConfig } from './config.js';
import { GroupReporter } from './report.js';
import { Poller, phases, type BlockReader, type CycleResult } from './poller.js';

/** Cycles a standby keeps per group: a takeover later than this many intervals leaves a gap. */
const PENDING_KEPT = 50;

export type Role = 'standby' | 'active' | 'retiring';

/** What the data path needs of the MQTT link (plc-bridge/mqtt-link.ts). */
export interface DataSink {
  publishData(device: string, group: string, body: Record<string, unknown>): void;
}

/** The counters a retiring instance hands to its successor. */
export interface HandoverState {
  seq: Record<string, number>;
  lastTick: Record<string, number>;
}

interface GroupState {
  device: DeviceConfig;
  group: string;
  poller: Poller;
  reporter: GroupReporter;
  seq: number;
  lastTick: number;
  /** Standby only: the latest cycles, not yet published (a few, in case the takeover is late). */
  pending: CycleResult[];
  cycles: number;
  goodCycles: number;
}

export interface BridgeOptions {
  config: BridgeConfig;
  readers: ReadonlyMap<string, BlockReader>;
  sink: DataSink;
  clock: Clock;
  logger: Logger;
  role: Role;
  /** Called after each cycle (the liveness tick). */
  onTick?: () => void;
}

export class Bridge {
  private readonly groups = new Map<string, GroupState>();
  private readonly lastReadAt = new Map<string, number>();
  role: Role;
  published = 0;

  constructor(private readonly opts: BridgeOptions) {
    this.role = opts.role;
    const phase = phases(opts.config.devices.flatMap((d) => d.groups.map((g) => ({ key: `${d.name}/${g.name}`, intervalMs: g.intervalMs }))));
    for (const device of opts.config.devices) {
      const reader = opts.readers.get(device.name);
      if (!reader) throw new Error(`no reader for device ${device.name}`);
      for (const group of device.groups) {
        const key = `${device.name}/${group.name}`;
        const poller = new Poller({
          group,
          maxGap: device.maxGap,
          phaseMs: phase.get(key) ?? 0,
          reader,
          clock: opts.clock,
          logger: opts.logger,
          onCycle: (r) => this.onCycle(key, r),
        });
        this.groups.set(key, {
          device,
          group: group.name,
          poller,
          reporter: new GroupReporter(group.tags, { staleAfterMs: group.staleAfterMs, fullEveryMs: opts.config.fullEveryMs }),
          seq: 0,
          lastTick: 0,
          pending: [],
          cycles: 0,
          goodCycles: 0,
        });
      }
    }
  }

  start(): void {
    for (const g of this.groups.values()) g.poller.start();
  }

  stop(): void {
    for (const g of this.groups.values()) g.poller.stop();
  }

  /** Standby is ready to take over once every group has polled, with good reads where the device answers. */
  ready(linkUp: (device: string) => boolean): boolean {
    for (const g of this.groups.values()) {
      if (g.cycles === 0) return false;
      if (linkUp(g.device.name) && g.goodCycles === 0) return false;
    }
    return true;
  }

  /** The old instance: stop publishing and hand over the counters. */
  retire(): HandoverState {
    this.role = 'retiring';
    const seq: Record<string, number> = {};
    const lastTick: Record<string, number> = {};
    for (const [key, g] of this.groups) {
      seq[key] = g.seq;
      lastTick[key] = g.lastTick;
    }
    return { seq, lastTick };
  }

  /** Back to active when a successor failed before confirming. */
  resume(): void {
    if (this.role === 'retiring') this.role = 'active';
  }

  /** The new instance: continue the old one's counters and publish what it has after them. */
  takeOver(state: HandoverState): void {
    for (const [key, g] of this.groups) {
      g.seq = state.seq[key] ?? 0;
      g.lastTick = state.lastTick[key] ?? 0;
    }
    this.role = 'active';
    for (const [key, g] of this.groups) {
      const pending = g.pending;
      g.pending = [];
      for (const p of pending) if (p.tick > g.lastTick) this.publish(key, g, p);
    }
  }

  devices(): Record<string, { lastReadAt: string | undefined; lastGoodAgeMs: number | undefined }> {
    const now = this.opts.clock.now();
    const out: Record<string, { lastReadAt: string | undefined; lastGoodAgeMs: number | undefined }> = {};
    for (const d of this.opts.config.devices) {
      const at = this.lastReadAt.get(d.name);
      out[d.name] = { lastReadAt: at === undefined ? undefined : new Date(at).toISOString(), lastGoodAgeMs: at === undefined ? undefined : now - at };
    }
    return out;
  }

  groupStats(): Record<string, { seq: number; lastTick: number; cycles: number; overruns: number }> {
    const out: Record<string, { seq: number; lastTick: number; cycles: number; overruns: number }> = {};
    for (const [key, g] of this.groups) out[key] = { seq: g.seq, lastTick: g.lastTick, cycles: g.cycles, overruns: g.poller.overruns };
    return out;
  }

  private onCycle(key: string, r: CycleResult): void {
    const g = this.groups.get(key);
    if (!g) return;
    g.cycles++;
    if (r.blocksOk > 0) {
      g.goodCycles++;
      this.lastReadAt.set(g.device.name, r.doneAt);
    }
    this.opts.onTick?.();
    if (this.role === 'active') this.publish(key, g, r);
    else if (this.role === 'standby') {
      g.pending.push(r);
      if (g.pending.length > PENDING_KEPT) g.pending.shift();
    }
  }

  private publish(key: string, g: GroupState, r: CycleResult): void {
    if (r.tick <= g.lastTick) return;
    g.lastTick = r.tick;
    const values = g.reporter.update({ now: r.doneAt, values: r.values, failed: r.failed, blockOf: r.blockOf, readAt: r.readAt });
    if (values === undefined) return;
    g.seq++;
    this.published++;
    try {
      this.opts.sink.publishData(g.device.name, g.group, { seq: g.seq, ts: new Date(r.tick).toISOString(), values });
    } catch (err) {
      this.opts.logger.error({ err, topic: key }, 'publishing a cycle failed');
    }
  }
}
