/**
 * The liveness of the agent's own parts under the watchdog, each with a fake clock (time moves
 * only when the test advances it):
 *
 * - WMS link (agent/wms-link.ts): a broker that refuses for minutes is healthy; a reconnect loop
 *   that lost its retry (the link-stall fault) is hung after 2 x (reconnect.maxMs + connect
 *   timeout), and restart() brings it back; restarts leak no timer or listener and keep the
 *   retained status right.
 * - Health sampler (health/monitor.ts): a stuck sample is hung after 3 intervals + the margin;
 *   restart() does not wait for it forever, and the stuck sample finishing late does not start
 *   a second chain of samples.
 * - Update runner (agent/router.ts): a cancellable operation without progress for stallMs is hung,
 *   aborted and failed with `stalled`; one past its point of no return is never touched; one that
 *   ignores the abort is failed after stallGraceMs and its late outcome dropped.
 * - confirmHangs (agent/recovery-wiring.ts): a hang counts once it has lasted, not right after a
 *   stall of the agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { z } from 'zod';
import { silentLogger } from '../../lib/log.js';
import { faultOnce } from '../../lib/fault.js';
import { validateConfig } from '../../core/config.js';
import { WmsLink } from '../../agent/wms-link.js';
import { topicsFor } from '../../agent/topics.js';
import { Outbox } from '../../agent/outbox.js';
import { Router } from '../../agent/router.js';
import { confirmHangs } from '../../agent/recovery-wiring.js';
import type { OperationContext, OperationHandler, OperationOutcome } from '../../core/ports.js';
import { HealthMonitor, HUNG_MARGIN_MS } from '../../health/monitor.js';
import type { HealthHistory } from '../../health/history.js';
import type { AlertEngine } from '../../health/alerts.js';
import type { Sample } from '../../health/sampler.js';
import { tempDir } from '../helpers/util.js';
import { fakeClock, type FakeClock } from '../helpers/fake-clock.js';
import { routerHarness, type Status } from '../helpers/router.js';

// ---------------------------------------------------------------- WMS link

class FakeClient extends EventEmitter {
  ended = false;
  constructor(private readonly sent: { topic: string; payload: string; retain: boolean }[]) {
    super();
  }
  publish(topic: string, payload: string | Buffer, opts?: { retain?: boolean }, cb?: (err?: Error) => void): this {
    this.sent.push({ topic, payload: String(payload), retain: opts?.retain === true });
    cb?.();
    return this;
  }
  subscribe(filter: string, _opts: unknown, cb?: (err: Error | null, granted: { topic: string; qos: number }[]) => void): this {
    cb?.(null, [{ topic: filter, qos: 1 }]);
    return this;
  }
  end(_force?: boolean, _opts?: unknown, cb?: () => void): this {
    this.ended = true;
    cb?.();
    return this;
  }
}

function linkSetup(mode: { broker: 'up' | 'refusing' }, fault?: string): { link: WmsLink; clock: FakeClock; clients: FakeClient[]; sent: { topic: string; payload: string; retain: boolean }[] } {
  const clock = fakeClock();
  const clients: FakeClient[] = [];
  const sent: { topic: string; payload: string; retain: boolean }[] = [];
  const config = validateConfig({ gatewayId: 'gw', mqtt: { url: 'mqtt://127.0.0.1:1', connectTimeoutMs: 1000, reconnect: { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 } } });
  const outbox = { attach: () => undefined, detach: () => undefined } as unknown as Outbox;
  const link = new WmsLink({
    mqtt: config.mqtt,
    gatewayId: 'gw',
    topics: topicsFor('edge', 'gw'),
    version: '1.0.0',
    slot: 'A',
    outbox,
    logger: silentLogger(),
    clock,
    onCommand: () => undefined,
    connect: () => {
      const c = new FakeClient(sent);
      clients.push(c);
      // After the link has put its listeners on, like a real socket.
      setImmediate(() => {
        if (mode.broker === 'up') {
          c.emit('connect', { sessionPresent: false });
        } else {
          c.emit('error', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
          c.emit('close');
        }
      });
      return c as unknown as MqttClient;
    },
    stallFault: faultOnce(fault, 'link-stall'),
  });
  return { link, clock, clients, sent };
}

const statuses = (sent: { topic: string; payload: string; retain: boolean }[]): { state: string; since: string }[] =>
  sent.filter((m) => m.topic === 'edge/gw/status' && m.retain).map((m) => JSON.parse(m.payload) as { state: string; since: string });

test('wms-link: a broker that refuses for minutes is not a failure of the link (attempts keep coming)', async () => {
  const { link, clock, clients } = linkSetup({ broker: 'refusing' });
  await link.start();
  assert.equal(link.hungAfterMs(), 4000);
  for (let i = 0; i < 240; i++) {
    await clock.advance(500);
    assert.equal(link.liveness(), 'healthy', `after ${(i + 1) * 500} ms`);
  }
  assert.ok(clients.length >= 100, `${clients.length} attempts in 2 minutes`);
  assert.equal(link.isConnected(), false);
  await link.stop();
  assert.equal(clock.pending(), 0, 'stop() leaves no timer');
});

test('wms-link: a reconnect loop that lost its retry is hung after 2 x (maxMs + connect timeout); restart() brings it back', async () => {
  const mode = { broker: 'up' as 'up' | 'refusing' };
  const { link, clock, clients, sent } = linkSetup(mode, 'link-stall');
  await link.start();
  await clock.advance(10);
  assert.equal(link.isConnected(), true);
  const since = statuses(sent)[0]?.since;
  assert.equal(statuses(sent)[0]?.state, 'online');
  await clock.advance(60_000);
  assert.equal(link.liveness(), 'healthy', 'connected: healthy however long');

  clients[0]!.emit('close'); // the broker went away; the fault loses the retry
  await clock.advance(3900);
  assert.equal(link.liveness(), 'healthy', 'not before the deadline');
  assert.equal(clients.length, 1, 'no attempt was made');
  await clock.advance(200);
  assert.equal(link.liveness(), 'hung');

  await link.restart();
  await clock.advance(10);
  assert.equal(link.isConnected(), true);
  assert.equal(link.liveness(), 'healthy');
  assert.equal(clients.length, 2);
  const last = statuses(sent).at(-1);
  assert.equal(last?.state, 'online', 'the retained status says online again');
  assert.equal(last?.since, since, "a restart keeps the state's since");

  // The fault fires once: the next lost connection is retried as usual.
  mode.broker = 'refusing';
  clients[1]!.emit('close');
  await clock.advance(2000);
  assert.ok(clients.length >= 3, 'reconnect attempts after the restart');
  assert.equal(link.liveness(), 'healthy');
  await link.stop();
  assert.equal(clock.pending(), 0);
});

test('wms-link: a loop with neither a client nor a retry due is dead; a stopped link is not', async () => {
  const { link, clock, clients } = linkSetup({ broker: 'up' }, 'link-stall');
  assert.equal(link.liveness(), 'healthy', 'not started: nothing should run');
  await link.start();
  await clock.advance(10);
  clients[0]!.emit('close');
  // What a bug that drops the retry altogether would leave (the fault keeps it due, i.e. hung).
  Reflect.set(link, 'retryDue', false);
  assert.equal(link.liveness(), 'dead');
  await link.restart();
  await clock.advance(10);
  assert.equal(link.liveness(), 'healthy');
  await link.stop();
  assert.equal(link.liveness(), 'healthy');
});

test('wms-link: repeated restarts leak no timer or listener; each publishes offline then online', async () => {
  const { link, clock, clients, sent } = linkSetup({ broker: 'up' });
  await link.start();
  await clock.advance(10);
  const timers = clock.pending();
  for (let i = 0; i < 5; i++) {
    await link.restart();
    await clock.advance(10);
    assert.equal(link.isConnected(), true);
    assert.equal(clock.pending(), timers, `timers after restart ${i + 1}`);
  }
  assert.equal(clients.length, 6);
  assert.ok(clients.slice(0, 5).every((c) => c.ended), 'every replaced client was ended');
  assert.equal(clients[5]!.listenerCount('close'), clients[0]!.listenerCount('close'));
  assert.deepEqual(statuses(sent).map((s) => s.state), ['online', ...Array.from({ length: 5 }, () => ['offline', 'online']).flat()]);
  await link.start(); // already running: no second loop
  assert.equal(clock.pending(), timers);
  assert.equal(clients.length, 6);
  await link.stop();
  assert.equal(clock.pending(), 0);
  assert.equal(statuses(sent).at(-1)?.state, 'offline');
});

// ---------------------------------------------------------------- health sampler

function monitorSetup(): { m: HealthMonitor; clock: FakeClock; sampler: { samples: number; stuck: boolean; release: (() => void)[] } } {
  const clock = fakeClock();
  const sampler = {
    samples: 0,
    stuck: false,
    release: [] as (() => void)[],
    start: () => undefined,
    stop: () => undefined,
    sample(): Promise<Sample> {
      const s: Sample = { ts: clock.now(), metrics: { 'cpu.pct': 1 }, info: {} };
      if (this.stuck) return new Promise((r) => this.release.push(() => r(s)));
      this.samples++;
      return Promise.resolve(s);
    },
  };
  const m = new HealthMonitor({
    sampler,
    history: { record: () => undefined, saveAlerts: () => undefined, flush: () => undefined } as unknown as HealthHistory,
    engine: { evaluate: () => [], active: () => [] } as unknown as AlertEngine,
    clock,
    logger: silentLogger(),
    sampleIntervalMs: 1000,
    publishIntervalMs: 60_000,
    event: () => undefined,
    publish: () => undefined,
  });
  return { m, clock, sampler };
}

test('health-sampler: hung when no sample finished within 3 intervals + margin; restart() gives up on the stuck one', async () => {
  const { m, clock, sampler } = monitorSetup();
  assert.equal(m.hungAfterMs(), 3000 + HUNG_MARGIN_MS);
  await m.start();
  await clock.advance(20_000);
  assert.equal(m.liveness(), 'healthy');
  assert.ok(sampler.samples >= 20);

  sampler.stuck = true;
  await clock.advance(1000); // the next sample starts and never finishes
  const stuckAt = clock.now();
  await clock.advance(m.hungAfterMs() - 1500);
  assert.equal(m.liveness(), 'healthy', 'not before the deadline');
  await clock.advance(1000);
  assert.equal(m.liveness(), 'hung', `no sample finished since ${stuckAt - 1000}`);

  sampler.stuck = false;
  const restarting = m.restart();
  await clock.advance(1000); // restart waits at most one interval for the stuck sample
  await restarting;
  await clock.advance(10);
  assert.equal(m.liveness(), 'healthy');
  const n = sampler.samples;
  // The stuck sample finishes late: it must not start a second chain of samples.
  for (const r of sampler.release.splice(0)) r();
  await clock.advance(10_000);
  const taken = sampler.samples - n;
  assert.ok(taken >= 9 && taken <= 11, `${taken} samples in 10 intervals: one chain`);
  assert.equal(m.liveness(), 'healthy');
  await m.stop();
  assert.equal(clock.pending(), 0, 'stop() leaves no timer');
  assert.equal(m.liveness(), 'healthy', 'stopped on purpose: not dead');
});

test('health-sampler: a stop() during a restart is not undone by it', async () => {
  const { m, clock, sampler } = monitorSetup();
  await m.start();
  await clock.advance(10);
  sampler.stuck = true;
  await clock.advance(1000);
  const restarting = m.restart();
  const stopping = m.stop();
  for (const r of sampler.release.splice(0)) r();
  await clock.advance(1000);
  await Promise.all([restarting, stopping]);
  await clock.advance(5000);
  assert.equal(clock.pending(), 0, 'nothing runs after stop()');
});

// ---------------------------------------------------------------- update runner

function routerSetup(): { router: Router; clock: FakeClock; statuses: Status[]; ctx: Map<string, OperationContext<{ mode: string }>>; finish: Map<string, (o: OperationOutcome) => void> } {
  const clock = fakeClock();
  const { router, statuses } = routerHarness(join(tempDir('stall-'), 'a.db'), {
    clock,
    limits: { maxPayloadBytes: 4096, maxPending: 5, maxConcurrent: 1, retentionDays: 30 },
    stopWaitMs: 10,
    stallMs: 60_000,
    stallGraceMs: 5000,
  });
  const ctx = new Map<string, OperationContext<{ mode: string }>>();
  const finish = new Map<string, (o: OperationOutcome) => void>();
  const handler: OperationHandler<{ mode: string }> = {
    op: 'slow',
    params: z.object({ mode: z.enum(['honour', 'ignore', 'committed']) }).strict(),
    execute: (c) =>
      new Promise((resolve, reject) => {
        ctx.set(c.id, c);
        finish.set(c.id, resolve);
        c.progress('download', 0);
        if (c.params.mode === 'committed') c.setCancellable(false);
        if (c.params.mode === 'honour') c.signal.addEventListener('abort', () => reject(c.signal.reason as Error));
      }),
  };
  router.register(handler);
  return { router, clock, statuses, ctx, finish };
}

const send = (r: Router, id: string, mode: string): void => r.handle('slow', Buffer.from(JSON.stringify({ id, params: { mode } })));
const of = (s: Status[], id: string): string[] => s.filter((x) => x.id === id).map((x) => x.status + (x.reason ? `:${x.reason.code}` : ''));

test('update-runner: no progress for stallMs while cancellable is hung; the restart aborts it and it fails `stalled`', async () => {
  const { router, clock, statuses, ctx } = routerSetup();
  await router.start();
  send(router, 'c1', 'honour');
  await clock.advance(50_000);
  ctx.get('c1')!.progress('download', 40);
  await clock.advance(50_000);
  assert.equal(router.liveness(), 'healthy', 'progress 50 s ago');
  await clock.advance(10_000);
  assert.equal(router.liveness(), 'hung');
  await router.abortStalled();
  await clock.advance(10);
  assert.deepEqual(of(statuses, 'c1').at(-1), 'failed:stalled');
  assert.match(statuses.filter((s) => s.id === 'c1').at(-1)?.reason?.message ?? '', /slow made no progress for 60 s \(last step: download\)/);
  assert.equal(router.liveness(), 'healthy');
  await router.stop();
});

test('update-runner: past its point of no return an operation is never hung nor aborted', async () => {
  const { router, clock, statuses, ctx, finish } = routerSetup();
  await router.start();
  send(router, 'c2', 'committed');
  await clock.advance(600_000);
  assert.equal(router.liveness(), 'healthy');
  await router.abortStalled();
  assert.equal(ctx.get('c2')!.signal.aborted, false);
  finish.get('c2')!({ status: 'successful' });
  await clock.advance(10);
  assert.deepEqual(of(statuses, 'c2'), ['accepted', 'executing', 'executing', 'successful']);
  await router.stop();
});

test('update-runner: one that ignores the abort is failed after stallGraceMs; its late outcome is dropped; the queue goes on', async () => {
  const { router, clock, statuses, ctx, finish } = routerSetup();
  await router.start();
  send(router, 'c3', 'ignore');
  send(router, 'c4', 'honour');
  await clock.advance(61_000);
  assert.equal(router.liveness(), 'hung');
  await router.abortStalled();
  assert.equal(ctx.get('c3')!.signal.aborted, true);
  assert.equal(router.liveness(), 'healthy', 'aborted: no longer counted');
  await clock.advance(4000);
  assert.equal(of(statuses, 'c3').at(-1), 'executing');
  assert.equal(ctx.has('c4'), false, 'c4 waits its turn');
  await clock.advance(2000);
  assert.equal(of(statuses, 'c3').at(-1), 'failed:stalled');
  assert.ok(ctx.has('c4'), 'c4 started');
  finish.get('c3')!({ status: 'successful' });
  await clock.advance(10);
  assert.equal(of(statuses, 'c3').filter((s) => !s.startsWith('accepted') && !s.startsWith('executing')).length, 1, 'exactly one terminal status');
  finish.get('c4')!({ status: 'successful' });
  await clock.advance(10);
  assert.equal(of(statuses, 'c4').at(-1), 'successful');
  await router.stop();
});

// ---------------------------------------------------------------- confirmHangs

test('confirmHangs: a hang counts once it has lasted; a stall of the agent starts the count over; dead at once', async () => {
  const clock = fakeClock();
  const part = { name: 'p', v: 'healthy' as 'healthy' | 'hung' | 'dead', restarts: 0 };
  const t = confirmHangs({ name: 'p', probe: () => part.v, restart: async () => void part.restarts++ }, clock, 2000);
  const probeEvery = async (ms: number, n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      await clock.advance(ms);
      out.push(t.probe());
    }
    return out;
  };
  part.v = 'hung';
  assert.deepEqual(await probeEvery(500, 5), ['healthy', 'healthy', 'healthy', 'healthy', 'hung']);
  part.v = 'healthy';
  assert.deepEqual(await probeEvery(500, 1), ['healthy']);
  part.v = 'hung';
  // The agent stalled for 30 s: the first look after it does not start from before it.
  await probeEvery(500, 2);
  await clock.advance(30_000);
  assert.equal(t.probe(), 'healthy');
  part.v = 'healthy'; // caught up
  assert.deepEqual(await probeEvery(500, 3), ['healthy', 'healthy', 'healthy']);
  part.v = 'dead';
  assert.equal(t.probe(), 'dead');
  await t.restart();
  assert.equal(part.restarts, 1);
});
