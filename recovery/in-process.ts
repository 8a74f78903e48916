/**
 * A part of the agent itself (the WMS link, the update runner, the health sampler) under the
 * watchdog: it reports its own liveness (`healthy`, `hung` or `dead`: its loop stopped ticking,
 * or it stopped) and restarts itself in place. Whoever owns the part implements InProcessTarget;
 * the supervisor only sees a Handle. A hung agent as a whole is the systemd watchdog's to restart
 * (lib/loops.ts, agent/main.ts), not this one's.
 */
import type { AdoptResult, ExitInfo, Handle } from './process.js';
import type { ProbeResult } from './probes.js';

export interface InProcessTarget {
  readonly name: string;
  probe(): 'healthy' | 'hung' | 'dead';
  restart(): Promise<void>;
}

export class InProcessHandle implements Handle {
  readonly kind = 'in-process' as const;
  private starts = 0;

  constructor(private readonly target: InProcessTarget) {}

  /** The first start is the composition root's; later ones are restarts. */
  async start(): Promise<void> {
    if (this.starts++ > 0) await this.target.restart();
  }

  async adopt(): Promise<AdoptResult> {
    this.starts = Math.max(this.starts, 1);
    return 'adopted';
  }

  async alive(): Promise<boolean> {
    return this.target.probe() !== 'dead';
  }

  /** Nothing to kill inside our own process: restart() replaces the part. */
  async kill(): Promise<void> {}

  pid(): number | undefined {
    return process.pid;
  }

  onExit(): void {}

  async lastExit(): Promise<ExitInfo | undefined> {
    return undefined;
  }

  async lastLog(): Promise<string[]> {
    return [];
  }

  maintain(): void {}

  result(): ProbeResult {
    const p = this.target.probe();
    return p === 'healthy' ? { ok: true } : { ok: false, hung: p === 'hung', detail: `${this.target.name} reports itself ${p}` };
  }
}
