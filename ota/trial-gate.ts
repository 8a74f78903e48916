/**
 * The health gate of a new release on trial: when this process runs from the active slot and
 * that slot is `trial`, it must be healthy (broker connected, components running) without a
 * break for `stableMs`; then it commits itself. If it is not within `timeoutMs`, it marks itself
 * bad, makes the committed slot active again and asks to be restarted, so the boot guard starts
 * the old release. A release that crashes or hangs before it gets here is the boot guard's to
 * roll back (trial start count, trial timeout).
 *
 * INVARIANT: the outcome is written to slots.json (commit or failTrial, atomic) before it is
 * announced, so the update command's final status, whichever process reports it, follows the
 * file and not a memory.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { commit, failTrial, loadSlots, saveSlots, type SlotName } from './slots.js';

/** `stopped`: the agent stops before the gate decided; the next start decides (still on trial). */
export type GateOutcome = 'committed' | 'failed' | 'not-trial' | 'stopped';

export interface TrialGateOptions {
  root: string;
  runningSlot: SlotName;
  stableMs: number;
  timeoutMs: number;
  /** Sampled every pollMs; `why` names what is unhealthy. */
  healthy(): { ok: boolean; why?: string };
  /** Called after a failed gate was persisted: restart so the guard boots the committed slot. */
  restart(): void;
  clock: Clock;
  logger: Logger;
  pollMs?: number;
  /** Fault injection for the crash tests (see ota/updater.ts FAULT_POINTS). */
  fault?: (point: 'gate:before-commit' | 'gate:committed' | 'gate:failed') => void;
}

export class TrialGate {
  readonly name = 'trial-gate';
  private timer: NodeJS.Timeout | undefined;
  private settle: (o: GateOutcome) => void = () => undefined;
  readonly outcome: Promise<GateOutcome>;
  private lastWhy = 'not sampled yet';

  constructor(private readonly opts: TrialGateOptions) {
    this.outcome = new Promise((r) => (this.settle = r));
  }

  /** Whether this process is a release on trial (the gate has work to do). */
  isTrial(): boolean {
    try {
      const s = loadSlots(this.opts.root);
      return s.active === this.opts.runningSlot && s.slots[s.active].state === 'trial';
    } catch {
      return false;
    }
  }

  async start(): Promise<void> {
    if (!this.isTrial()) {
      this.settle('not-trial');
      return;
    }
    const { clock, stableMs, timeoutMs } = this.opts;
    const startedAt = clock.now();
    let stableSince: number | undefined;
    this.opts.logger.info({ stableMs, timeoutMs }, 'running on trial: health gate started');
    this.timer = clock.setInterval(() => {
      const h = this.opts.healthy();
      const now = clock.now();
      if (h.ok) {
        stableSince ??= now;
        if (now - stableSince >= stableMs) return this.finish('committed');
      } else {
        stableSince = undefined;
        this.lastWhy = h.why ?? 'unhealthy';
      }
      if (now - startedAt >= timeoutMs) this.finish('failed');
    }, this.opts.pollMs ?? 500);
  }

  async stop(): Promise<void> {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
    // Whoever waits for the outcome must not hold up the shutdown (a settled promise ignores this).
    this.settle('stopped');
  }

  private finish(o: 'committed' | 'failed'): void {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
    const s = loadSlots(this.opts.root);
    if (s.active !== this.opts.runningSlot || s.slots[s.active].state !== 'trial') {
      this.settle('not-trial');
      return;
    }
    if (o === 'committed') {
      this.opts.fault?.('gate:before-commit');
      saveSlots(this.opts.root, commit(s));
      this.opts.fault?.('gate:committed');
      this.opts.logger.info({ slot: s.active, version: s.slots[s.active].version }, 'health gate passed: release committed');
      this.settle('committed');
      return;
    }
    const reason = `health gate failed: ${this.lastWhy} (not healthy for ${this.opts.stableMs} ms within ${this.opts.timeoutMs} ms)`;
    saveSlots(this.opts.root, failTrial(s, reason));
    this.opts.fault?.('gate:failed');
    this.opts.logger.error({ slot: s.active, reason }, 'health gate failed: rolling back');
    this.settle('failed');
    this.opts.restart();
  }
}
