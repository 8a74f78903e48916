/**
 * A memory budget for one process (the agent, the PLC bridge): samples its own RSS and V8 heap
 * every `checkIntervalMs` and, before either reaches its budget, calls `onExceeded` once so the
 * owner can restart cleanly (state flushed, sockets closed) instead of being OOM-killed mid-write
 * by the kernel or by systemd's MemoryMax.
 *
 * "Before": the trigger is `margin` below the budget (default 10 %), and it must hold for
 * `samples` consecutive samples (default 2), so a short spike (an update's bundle check, a burst
 * of garbage the next GC frees) does not restart a healthy process.
 *
 * INVARIANT: onExceeded is called at most once per start(); a failing callback is logged, never
 * thrown into the timer.
 */
import type { Clock } from './clock.js';
import type { Logger } from './log.js';

export interface MemoryBudgetLimits {
  /** 0: no RSS budget. */
  rssBytes: number;
  /** 0: no heap budget. */
  heapBytes: number;
}

export interface MemorySample {
  rss: number;
  heap: number;
}

export interface MemoryExceeded extends MemorySample {
  budget: MemoryBudgetLimits;
  /** Which budget was crossed (both when both were). */
  over: ('rss' | 'heap')[];
}

export interface MemoryBudgetOptions {
  budget: MemoryBudgetLimits;
  checkIntervalMs: number;
  onExceeded(info: MemoryExceeded): void;
  clock: Clock;
  logger: Logger;
  /** Fraction of the budget kept free: act at budget * (1 - margin). Default 0.1. */
  margin?: number;
  /** Consecutive samples over the threshold before acting. Default 2. */
  samples?: number;
  /** Injected for tests; default process.memoryUsage. */
  memoryUsage?: () => { rss: number; heapUsed: number };
}

/** Which budgets a sample crosses, once the margin is taken off; pure. */
export function overBudget(sample: MemorySample, budget: MemoryBudgetLimits, margin: number): ('rss' | 'heap')[] {
  const over: ('rss' | 'heap')[] = [];
  if (budget.rssBytes > 0 && sample.rss >= budget.rssBytes * (1 - margin)) over.push('rss');
  if (budget.heapBytes > 0 && sample.heap >= budget.heapBytes * (1 - margin)) over.push('heap');
  return over;
}

export class MemoryBudget {
  readonly name = 'memory-budget';
  private timer: NodeJS.Timeout | undefined;
  private streak = 0;
  private fired = false;
  private last: MemorySample | undefined;

  constructor(private readonly opts: MemoryBudgetOptions) {}

  async start(): Promise<void> {
    const { budget } = this.opts;
    this.streak = 0;
    this.fired = false;
    if (budget.rssBytes <= 0 && budget.heapBytes <= 0) return;
    this.timer = this.opts.clock.setInterval(() => this.check(), this.opts.checkIntervalMs);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The latest sample, for status and diagnostics. */
  lastSample(): MemorySample | undefined {
    return this.last;
  }

  /** One sample; the timer calls it, tests may too. */
  check(): void {
    if (this.fired) return;
    const usage = (this.opts.memoryUsage ?? (() => process.memoryUsage()))();
    const sample = { rss: usage.rss, heap: usage.heapUsed };
    this.last = sample;
    const over = overBudget(sample, this.opts.budget, this.opts.margin ?? 0.1);
    if (over.length === 0) {
      this.streak = 0;
      return;
    }
    this.streak++;
    if (this.streak < (this.opts.samples ?? 2)) return;
    this.fired = true;
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
    const info: MemoryExceeded = { ...sample, budget: this.opts.budget, over };
    this.opts.logger.warn({ rss: sample.rss, heap: sample.heap, budget: this.opts.budget, over }, 'memory budget about to be exceeded: restarting cleanly');
    try {
      this.opts.onExceeded(info);
    } catch (err) {
      this.opts.logger.error({ err }, 'memory budget handler failed');
    }
  }
}
