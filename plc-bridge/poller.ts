/**
 * One poller per device group. Cycles run on a wall-clock grid: cycle k starts at the first
 * multiple of the interval after the previous one (epoch-aligned), so two bridge instances poll
 * the same ticks and a handover can hand over "everything after tick T" with no gap and no
 * overlap (docs/plc-bridge.md, Handover).
 *
 * Invariants:
 * - at most one cycle of a group runs at a time; a tick that comes while the previous cycle still
 *   reads runs right after it (one tick owed at most: a hiccup of the event loop or a slow answer
 *   does not cost an interval); a further tick meanwhile is skipped and counted (`overruns`);
 * - a block that fails marks its tags failed with the error's code; nothing is made up (the
 *   reporter turns failures into `stale`/`bad`);
 * - stop() clears the timer; a cycle in flight finishes but its result is dropped.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { errorCode } from '../lib/errors.js';
import type { Area, GroupConfig } from './config.js';
import { extractBlock, planReads, type ReadBlock } from './plan.js';
import type { Value } from './codec.js';

/** What a poller needs of a device connection (plc-bridge/connection.ts). */
export interface BlockReader {
  read(area: Area, start: number, count: number): Promise<number[] | boolean[]>;
}

export interface CycleResult {
  group: string;
  /** The grid time of the cycle (ms since epoch). */
  tick: number;
  good: Map<string, { v: Value; ts: number }>;
  failed: Map<string, string>;
  /** Reads that answered / failed in this cycle. */
  blocksOk: number;
  blocksFailed: number;
  /** When the cycle's reads finished. */
  doneAt: number;
}

export interface PollerOptions {
  group: GroupConfig;
  maxGap: number;
  /** Offset of this group's grid within its interval (phases()). */
  phaseMs?: number;
  reader: BlockReader;
  clock: Clock;
  logger: Logger;
  onCycle(result: CycleResult): void;
}

/** The next grid time strictly after `now`: a multiple of the interval, shifted by `phaseMs`. */
export function nextTick(now: number, intervalMs: number, phaseMs = 0): number {
  return (Math.floor((now - phaseMs) / intervalMs) + 1) * intervalMs + phaseMs;
}

/**
 * Spreads the groups that share an interval evenly over it (in config order), so that 20
 * devices polled every second do not all read, decode and publish in the same millisecond: the
 * burst would delay every one of them. Deterministic, so two instances (a handover) share the grid.
 */
export function phases(keys: readonly { key: string; intervalMs: number }[]): Map<string, number> {
  const byInterval = new Map<number, string[]>();
  for (const k of keys) byInterval.set(k.intervalMs, [...(byInterval.get(k.intervalMs) ?? []), k.key]);
  const out = new Map<string, number>();
  for (const [interval, list] of byInterval) list.forEach((key, i) => out.set(key, Math.floor((i * interval) / list.length)));
  return out;
}

export class Poller {
  readonly blocks: readonly ReadBlock[];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private busy = false;
  private owed: number | undefined;
  /** The grid time of the last timer that fired. */
  private fired = 0;
  overruns = 0;
  cycles = 0;

  constructor(private readonly opts: PollerOptions) {
    this.blocks = planReads(opts.group.tags, { maxGap: opts.maxGap });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (!this.running) return;
    const now = this.opts.clock.now();
    const interval = this.opts.group.intervalMs;
    // The tick after the last one fired, even when the timer comes late; only when more than two
    // intervals behind (the process was stopped, the clock jumped) does it skip ahead.
    const phase = this.opts.phaseMs ?? 0;
    let tick = this.fired === 0 ? nextTick(now, interval, phase) : this.fired + interval;
    if (tick < now - 2 * interval) {
      this.overruns += Math.floor((now - tick) / interval);
      tick = nextTick(now, interval, phase);
    }
    this.timer = this.opts.clock.setTimeout(() => this.fire(tick), Math.max(0, tick - now));
  }

  private fire(tick: number): void {
    this.timer = undefined;
    this.fired = tick;
    if (!this.running) return;
    if (this.busy) {
      if (this.owed !== undefined) this.overruns++;
      this.owed = tick;
    } else {
      this.run(tick);
    }
    this.schedule();
  }

  private run(tick: number): void {
    this.busy = true;
    void this.cycle(tick).finally(() => {
      this.busy = false;
      const owed = this.owed;
      this.owed = undefined;
      if (owed !== undefined && this.running) this.run(owed);
    });
  }

  private async cycle(tick: number): Promise<void> {
    const good = new Map<string, { v: Value; ts: number }>();
    const failed = new Map<string, string>();
    let blocksOk = 0;
    let blocksFailed = 0;
    for (const block of this.blocks) {
      try {
        const data = await this.opts.reader.read(block.area, block.start, block.count);
        const ts = this.opts.clock.now();
        const out = extractBlock(block, data);
        for (const [name, v] of out.values) good.set(name, { v, ts });
        for (const [name, reason] of out.failed) failed.set(name, reason);
        blocksOk++;
      } catch (err) {
        blocksFailed++;
        const reason = errorCode(err) ?? 'invalid-response';
        for (const t of block.tags) if (!good.has(t.name)) failed.set(t.name, reason);
      }
    }
    this.cycles++;
    if (!this.running) return;
    try {
      this.opts.onCycle({ group: this.opts.group.name, tick, good, failed, blocksOk, blocksFailed, doneAt: this.opts.clock.now() });
    } catch (err) {
      this.opts.logger.error({ err, group: this.opts.group.name }, 'cycle handler failed');
    }
  }
}
