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
 * - stop() clears the timer; a cycle in flight finishes but its result is dropped;
 * - a cycle's outcomes are arrays indexed by the tag's position in group.tags (the reporter's
 *   index space, report.ts CycleInput), with one read time per block: a cycle of 1,000 tags
 *   makes a few arrays, not an object per tag (a standby keeps dozens of cycles per group).
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
  /** Per tag (position in group.tags): the value read good, else undefined. */
  values: (Value | undefined)[];
  /** Per tag: the reason code of a failed read, else undefined. */
  failed: (string | undefined)[];
  /** Per tag: its block (an index into readAt); the same array for every cycle of a poller. */
  blockOf: Uint32Array;
  /** Per block: when its read answered (ms since epoch); NaN when it failed. */
  readAt: Float64Array;
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
  /** Per block: the positions of its tags in group.tags, in block.tags order. */
  private readonly positions: readonly Uint32Array[];
  private readonly blockOf: Uint32Array;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private busy = false;
  private owed: number | undefined;
  /** The grid time of the last timer that fired. */
  private fired = 0;
  overruns = 0;
  cycles = 0;

  constructor(private readonly opts: PollerOptions) {
    const tags = opts.group.tags;
    this.blocks = planReads(tags, { maxGap: opts.maxGap });
    // planReads puts the configured tag objects themselves in its blocks.
    const position = new Map(tags.map((t, i) => [t, i] as const));
    this.positions = this.blocks.map((b) => Uint32Array.from(b.tags, (t) => position.get(t) ?? 0));
    this.blockOf = new Uint32Array(tags.length);
    this.positions.forEach((ps, b) => ps.forEach((i) => (this.blockOf[i] = b)));
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
    const n = this.opts.group.tags.length;
    const values = new Array<Value | undefined>(n).fill(undefined);
    const failed = new Array<string | undefined>(n).fill(undefined);
    const readAt = new Float64Array(this.blocks.length).fill(Number.NaN);
    let blocksOk = 0;
    let blocksFailed = 0;
    for (const [b, block] of this.blocks.entries()) {
      const positions = this.positions[b] ?? new Uint32Array(0);
      try {
        const data = await this.opts.reader.read(block.area, block.start, block.count);
        readAt[b] = this.opts.clock.now();
        const out = extractBlock(block, data);
        block.tags.forEach((t, j) => {
          const i = positions[j] ?? 0;
          const v = out.values.get(t.name);
          if (v !== undefined) values[i] = v;
          else failed[i] = out.failed.get(t.name);
        });
        blocksOk++;
      } catch (err) {
        blocksFailed++;
        const reason = errorCode(err) ?? 'invalid-response';
        for (const i of positions) if (values[i] === undefined) failed[i] = reason;
      }
    }
    this.cycles++;
    if (!this.running) return;
    try {
      this.opts.onCycle({ group: this.opts.group.name, tick, values, failed, blockOf: this.blockOf, readAt, blocksOk, blocksFailed, doneAt: this.opts.clock.now() });
    } catch (err) {
      this.opts.logger.error({ err, group: this.opts.group.name }, 'cycle handler failed');
    }
  }
}
