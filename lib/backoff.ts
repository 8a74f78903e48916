/**
 * Capped exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
 * And Jitter"): delay = random(base/2 .. min(cap, base * factor^attempt)). Pure: the random
 * source is injected so tests can pin it.
 */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** 0 = no jitter, 1 = delay drawn from [0.5 * d, d]. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 1 };

export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.initialMs * Math.pow(policy.factor, Math.max(0, attempt)));
  const low = exp * (1 - policy.jitter / 2);
  return Math.round(low + (exp - low) * random());
}

/** Stateful helper: attempt counter with reset after success. */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const d = backoffDelay(this.policy, this.attempt, this.random);
    this.attempt++;
    return d;
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
