/**
 * One process of simulated gateways (bench/fleet/sim.ts), forked by the fleet bench so that its
 * CPU and memory are its own (not the driver's) and a fleet can span processes. Requests come over
 * the IPC channel as `{seq, op, arg}` and are answered `{seq, value}` or `{seq, error}`. The child
 * leaves when the channel closes: a bench that dies takes its simulated fleet with it.
 */
import { startSimFleet, type SimFleet } from './sim.js';
import type { BackoffPolicy } from '../../lib/backoff.js';

export interface SimChildStart {
  url: string;
  ids: string[];
  backoff: BackoffPolicy;
  firstJitter: boolean;
  /** Gateways that fail an update with probability `badRate`; the others never do. */
  bad: string[];
  badRate: number;
  unhealthy: string[];
  delayMs: [number, number];
  /** Share of the gateways (every k-th) on MQTT 5; the others on 3.1.1. */
  v5Every: number;
  resultExpirySec: number;
  forgetMs?: number;
}

export type SimChildOp = 'start' | 'jitter' | 'connected' | 'commanded' | 'attempts' | 'stop';

let fleet: SimFleet | undefined;
const attempts: number[] = [];

async function handle(op: SimChildOp, arg: unknown): Promise<unknown> {
  switch (op) {
    case 'start': {
      const a = arg as SimChildStart;
      const bad = new Set(a.bad);
      const unhealthy = new Set(a.unhealthy);
      const index = new Map(a.ids.map((id, i) => [id, i]));
      fleet = await startSimFleet({
        url: a.url,
        ids: a.ids,
        backoff: a.backoff,
        firstJitter: a.firstJitter,
        failRate: (id) => (bad.has(id) ? a.badRate : 0),
        unhealthy: (id) => unhealthy.has(id),
        delayMs: a.delayMs,
        protocol: (id) => (a.v5Every > 0 && (index.get(id) ?? 0) % a.v5Every === 0 ? 5 : 4),
        resultExpirySec: a.resultExpirySec,
        ...(a.forgetMs === undefined ? {} : { forgetMs: a.forgetMs }),
        // Epoch ms, comparable with the bench's clock and the broker's log.
        onAttempt: (at) => attempts.push(performance.timeOrigin + at),
      });
      return true;
    }
    case 'jitter':
      fleet?.setFirstJitter(arg === true);
      return true;
    case 'connected':
      return fleet?.connected() ?? 0;
    case 'commanded':
      return [...(fleet?.commanded() ?? [])];
    case 'attempts':
      // Taken: each storm asks for its own.
      return attempts.splice(0);
    case 'stop':
      await fleet?.stop();
      return true;
  }
}

process.on('message', (m: { seq: number; op: SimChildOp; arg?: unknown }) => {
  handle(m.op, m.arg).then(
    (value) => process.send?.({ seq: m.seq, value }),
    (err: unknown) => process.send?.({ seq: m.seq, error: String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
