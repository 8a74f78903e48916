/**
 * A Clock for unit tests: timers (and intervals) run only inside advance(), in time order, with
 * promises and setImmediate callbacks settled between them.
 */
import type { Clock } from '../../lib/clock.js';

interface FakeTimer {
  id: number;
  at: number;
  every: number | undefined;
  fn: () => void;
  unref(): FakeTimer;
}

export type FakeClock = Clock & { advance(ms: number): Promise<void>; pending(): number };

/** Timers run only inside advance(); promises and setImmediate callbacks settle between them. */
export function fakeClock(start = 1_000_000): FakeClock {
  let t = start;
  let nextId = 1;
  let timers: FakeTimer[] = [];
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  const add = (fn: () => void, ms: number, every: number | undefined): NodeJS.Timeout => {
    const timer: FakeTimer = { id: nextId++, at: t + Math.max(0, ms), every, fn, unref: () => timer };
    timers.push(timer);
    return timer as unknown as NodeJS.Timeout;
  };
  const clear = (h: NodeJS.Timeout | undefined): void => {
    timers = timers.filter((x) => x !== (h as unknown as FakeTimer));
  };
  return {
    now: () => t,
    setTimeout: (fn, ms) => add(fn, ms, undefined),
    setInterval: (fn, ms) => add(fn, ms, Math.max(1, ms)),
    clearTimeout: clear,
    clearInterval: clear,
    pending: () => timers.length,
    advance: async (ms) => {
      const end = t + ms;
      await flush();
      for (;;) {
        timers.sort((a, b) => a.at - b.at || a.id - b.id);
        const due = timers[0];
        if (!due || due.at > end) break;
        t = due.at;
        if (due.every !== undefined) due.at += due.every;
        else timers.shift();
        due.fn();
        await flush();
      }
      t = end;
      await flush();
    },
  };
}
