/**
 * Liveness of the process's critical loops, for the systemd watchdog: each loop ticks, and the
 * process counts as healthy only while every loop ticked within its deadline and the event loop
 * is not lagging. A hung loop therefore stops WATCHDOG=1 and systemd restarts the process.
 */
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import type { Clock } from './clock.js';

export interface LoopHealth {
  ok: boolean;
  eventLoopLagMs: number;
  stale: { name: string; ageMs: number }[];
}

export class LoopMonitor {
  private readonly loops = new Map<string, { deadlineMs: number; last: number }>();
  private histogram: IntervalHistogram | undefined;
  private lastCheckAt: number | undefined;

  /**
   * `monotonic` (default performance.now) times the caller's own lateness in check(periodMs):
   * not the wall clock, which a time step would turn into a false stall.
   */
  constructor(private readonly opts: { clock: Clock; maxLagMs: number; monotonic?: () => number }) {}

  register(name: string, deadlineMs: number): void {
    this.loops.set(name, { deadlineMs, last: this.opts.clock.now() });
  }

  unregister(name: string): void {
    this.loops.delete(name);
  }

  tick(name: string): void {
    const l = this.loops.get(name);
    if (l) l.last = this.opts.clock.now();
  }

  start(): void {
    this.histogram = monitorEventLoopDelay({ resolution: 20 });
    this.histogram.enable();
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = undefined;
  }

  /**
   * The same verdict without resetting the lag histogram: for anyone but the systemd watchdog
   * ping, whose check() must see every delay since its previous ping.
   */
  peek(): LoopHealth {
    return this.evaluate(false);
  }

  /**
   * Lag is the worst delay seen since the previous call (the histogram is reset each time). A
   * caller on a fixed period (the systemd watchdog ping) passes it: its own callback running late
   * by more than the period counts as lag too. After a block the histogram's sampling timer and
   * the caller's timer are both due, in an order libuv chooses; without this, the first ping
   * after a stall could go out before the histogram had seen the stall.
   */
  check(periodMs?: number): LoopHealth {
    const mono = (this.opts.monotonic ?? performance.now.bind(performance))();
    const late = periodMs !== undefined && this.lastCheckAt !== undefined ? mono - this.lastCheckAt - periodMs : 0;
    this.lastCheckAt = mono;
    return this.evaluate(true, late);
  }

  private evaluate(reset: boolean, lateMs = 0): LoopHealth {
    const now = this.opts.clock.now();
    const stale = [...this.loops.entries()]
      .map(([name, l]) => ({ name, ageMs: now - l.last, deadlineMs: l.deadlineMs }))
      .filter((l) => l.ageMs > l.deadlineMs)
      .map(({ name, ageMs }) => ({ name, ageMs }));
    const lag = Math.max(this.histogram ? this.histogram.max / 1e6 : 0, lateMs);
    if (reset) this.histogram?.reset();
    return { ok: stale.length === 0 && lag <= this.opts.maxLagMs, eventLoopLagMs: Math.round(lag), stale };
  }
}
