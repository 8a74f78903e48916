/**
 * Whether the state store can commit, for the components that write it on the command path (the
 * router, the outbox). A failed commit (disk full, I/O error) opens a fault; from then on
 * `retry()` runs every `retryMs`: each writer's own retry (an outbox buffer to commit, terminal
 * statuses held in memory), then a small real write. When all of them commit, the fault is over
 * and `onRecovered` listeners run (the WMS link reconnects, so the broker delivers again the
 * commands that were not acknowledged while the store could not commit).
 *
 * INVARIANTS
 * - Nothing here writes on its own while the store is healthy.
 * - A listener that throws is logged, never fatal.
 */
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import { registerCodes } from '../lib/errors.js';

/** The alert's code while the store cannot commit (in `status` alerts and on `~/events`). */
export const STORE_CODES = registerCodes('store', ['storage-full', 'storage-error'] as const);
export type StoreFaultCode = (typeof STORE_CODES)[number];

export interface StoreFault {
  code: StoreFaultCode;
  message: string;
  since: string;
  /** Commits that failed since the fault opened. */
  failures: number;
}

export function storeFaultCode(err: unknown): StoreFaultCode {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_FULL' || (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'storage-full' : 'storage-error';
}

export class StoreGate {
  private fault: StoreFault | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly retries = new Set<() => boolean>();
  private readonly faultListeners = new Set<(f: StoreFault) => void>();
  private readonly recoveredListeners = new Set<(f: StoreFault) => void>();

  constructor(private readonly opts: { logger: Logger; clock: Clock; probe: () => void; retryMs?: number }) {}

  /** A writer's retry: true when what it held is committed now (or it held nothing). */
  addRetry(fn: () => boolean): void {
    this.retries.add(fn);
  }

  onFault(fn: (f: StoreFault) => void): void {
    this.faultListeners.add(fn);
  }

  onRecovered(fn: (f: StoreFault) => void): void {
    this.recoveredListeners.add(fn);
  }

  ok(): boolean {
    return this.fault === undefined;
  }

  current(): StoreFault | undefined {
    return this.fault ? { ...this.fault } : undefined;
  }

  /** A commit failed with `err`. */
  failed(err: unknown, what: string): void {
    const message = err instanceof Error ? err.message : String(err);
    if (this.fault) {
      this.fault.failures++;
      return;
    }
    this.fault = { code: storeFaultCode(err), message, since: new Date(this.opts.clock.now()).toISOString(), failures: 1 };
    this.opts.logger.error({ err, code: this.fault.code, what }, 'the state store cannot commit: commands are not acknowledged, statuses wait in memory');
    for (const l of this.faultListeners) this.call(l, this.fault);
    this.schedule();
  }

  /** One round of retries now (also what the timer runs); true when the store commits again. */
  retry(): boolean {
    if (!this.fault) return true;
    let allOk = true;
    for (const r of this.retries) {
      try {
        if (!r()) allOk = false;
      } catch {
        allOk = false;
      }
    }
    if (allOk) {
      try {
        this.opts.probe();
      } catch {
        allOk = false;
      }
    }
    if (!allOk || !this.fault) return false;
    const was = this.fault;
    this.fault = undefined;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.opts.logger.warn({ code: was.code, since: was.since, failures: was.failures }, 'the state store commits again');
    for (const l of this.recoveredListeners) this.call(l, was);
    return true;
  }

  /** No more retries (the store is being closed). */
  stop(): void {
    this.stopped = true;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      if (!this.retry() && this.fault) this.schedule();
    }, this.opts.retryMs ?? 2000);
    this.timer.unref?.();
  }

  private call(l: (f: StoreFault) => void, f: StoreFault): void {
    try {
      l(f);
    } catch (err) {
      this.opts.logger.error({ err }, 'store gate listener failed');
    }
  }
}
