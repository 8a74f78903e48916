/**
 * A typed event bus. A failing listener is logged, never fatal to the emitter
 * (zigbee2mqtt eventBus.ts does the same).
 */
import type { Logger } from './log.js';

type Listener<T> = (payload: T) => void | Promise<void>;

export class TypedBus<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly logger: Logger) {}

  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of set) {
      try {
        const r = (fn as Listener<Events[K]>)(payload);
        if (r && typeof r.then === 'function') {
          r.then(undefined, (err: unknown) => this.logger.error({ err, event: String(event) }, 'event listener failed'));
        }
      } catch (err) {
        this.logger.error({ err, event: String(event) }, 'event listener failed');
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
