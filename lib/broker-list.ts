/**
 * Broker failover (`mqtt.urls`): the brokers a link may use, in order, and which one it tries
 * next. Pure, shared by the agent's WMS link and the PLC bridge's link so both move the same way.
 *
 * - An attempt that fails (never connected) moves on to the next broker, round-robin; the
 *   reconnect backoff is not reset by a move, so a fleet whose brokers are all down keeps its
 *   backoff and jitter.
 * - A connection that was up and is lost is retried on the same broker first (it is usually a
 *   restart or a network blip); when that attempt fails the next broker is tried.
 * - `mqtt.url` alone is a list of one; with `mqtt.urls` the list is `urls` (and `url` is ignored
 *   unless `urls` is empty).
 */
export class BrokerList {
  private at = 0;
  readonly urls: readonly string[];

  constructor(url: string, urls: readonly string[] | undefined) {
    this.urls = urls && urls.length > 0 ? [...urls] : [url];
  }

  current(): string {
    return this.urls[this.at]!;
  }

  index(): number {
    return this.at;
  }

  /** An attempt on the current broker failed: the next one is tried next. */
  failed(): void {
    this.at = (this.at + 1) % this.urls.length;
  }
}

/**
 * The delay of the first reconnect after a connection was lost: a random fraction of the
 * initial backoff, so a fleet that lost the same broker in the same second does not come back
 * in the same second (the later attempts use the backoff as usual).
 */
export function firstReconnectDelay(initialMs: number, random: () => number = Math.random): number {
  return Math.floor(initialMs * random());
}
