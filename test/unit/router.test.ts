import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Router } from '../../agent/router.js';
import type { OperationHandler, OperationOutcome } from '../../core/ports.js';
import { routerHarness, type RouterHarness, type Status } from '../helpers/router.js';


const routers: Router[] = [];
afterEach(async () => {
  await Promise.all(routers.splice(0).map((r) => r.stop()));
});

function setup(path = join(mkdtempSync(join(tmpdir(), 'router-')), 'a.db')): RouterHarness & { path: string } {
  const h = routerHarness(path, { limits: { maxPayloadBytes: 4096, maxPending: 3, maxConcurrent: 2, retentionDays: 30 }, stopWaitMs: 50 });
  routers.push(h.router);
  return { ...h, path };
}

const send = (r: Router, op: string, body: unknown): void => r.handle(op, Buffer.from(JSON.stringify(body)));
const of = (s: Status[], id: string): string[] => s.filter((x) => x.id === id).map((x) => x.status + (x.reason ? `:${x.reason.code}` : ''));
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

function gated(op: string, opts: { exclusive?: boolean } = {}): { handler: OperationHandler<Record<string, unknown>>; release: (o: OperationOutcome) => void; runs: number } {
  const state = { runs: 0, release: (_o: OperationOutcome): void => undefined };
  const handler: OperationHandler<Record<string, unknown>> = {
    op,
    params: z.object({}).passthrough(),
    exclusive: opts.exclusive ?? false,
    execute: (ctx) =>
      new Promise((resolve) => {
        state.runs++;
        ctx.progress('work', 10);
        state.release = resolve;
        ctx.signal.addEventListener('abort', () => resolve({ status: 'cancelled' }));
      }),
  };
  return {
    handler,
    release: (o) => state.release(o),
    get runs() {
      return state.runs;
    },
  };
}

test('lifecycle accepted -> executing -> successful, and a duplicate id is answered, not run again', async () => {
  const { router, statuses, outbox } = setup();
  const g = gated('work');
  router.register(g.handler);
  await router.start();
  send(router, 'work', { id: 'c1' });
  await settle();
  g.release({ status: 'successful', result: { n: 1 } });
  await settle();
  outbox.flush();
  assert.deepEqual(of(statuses, 'c1'), ['accepted', 'executing', 'executing', 'successful']);
  send(router, 'work', { id: 'c1' });
  outbox.flush();
  assert.equal(g.runs, 1);
  assert.deepEqual(of(statuses, 'c1').at(-1), 'successful');
  assert.equal(router.counters.duplicates, 1);
  await router.stop();
});

test('unknown op, invalid params, busy and exclusive are rejected with their codes', async () => {
  const { router, statuses } = setup();
  const ex = gated('ex', { exclusive: true });
  router.register(ex.handler);
  router.register({ op: 'typed', params: z.object({ n: z.number() }).strict(), execute: async () => ({ status: 'successful' }) });
  await router.start();
  send(router, 'nope', { id: 'u1' });
  send(router, 'typed', { id: 't1', params: { n: 'x' } });
  send(router, 'ex', { id: 'x1' });
  send(router, 'ex', { id: 'x2' });
  await settle();
  assert.deepEqual(of(statuses, 'u1'), ['rejected:unknown-op']);
  assert.deepEqual(of(statuses, 't1'), ['rejected:invalid-params']);
  assert.deepEqual(of(statuses, 'x2'), ['rejected:busy']);
  ex.release({ status: 'successful' });
  await router.stop();
});

test('maxConcurrent run at once, the rest wait in order, maxPending bounds the total', async () => {
  const { router, statuses } = setup();
  const releases: ((o: OperationOutcome) => void)[] = [];
  router.register({ op: 'slow', params: z.object({}), execute: () => new Promise((r) => releases.push(r)) });
  await router.start();
  for (let i = 0; i < 5; i++) send(router, 'slow', { id: `s${i}` });
  await settle();
  assert.equal(releases.length, 2, 'two run at once');
  assert.deepEqual(of(statuses, 's2'), ['accepted'], 's2 waits its turn');
  assert.deepEqual(of(statuses, 's3'), ['rejected:busy']);
  assert.deepEqual(of(statuses, 's4'), ['rejected:busy']);
  assert.deepEqual(router.current().map((c) => [c.id, c.step]), [['s0', undefined], ['s1', undefined], ['s2', 'queued']]);
  releases[0]!({ status: 'successful' });
  await settle();
  assert.equal(releases.length, 3, 's2 started when s0 finished');
  assert.deepEqual(of(statuses, 's2'), ['accepted', 'executing']);
  releases[1]!({ status: 'successful' });
  releases[2]!({ status: 'successful' });
  await settle();
  assert.equal(of(statuses, 's2').at(-1), 'successful');
});

test('a queued command can be cancelled before it starts; queued commands survive a restart', async () => {
  const first = setup();
  const releases: ((o: OperationOutcome) => void)[] = [];
  first.router.register({ op: 'slow', params: z.object({}), execute: () => new Promise((r) => releases.push(r)) });
  await first.router.start();
  for (let i = 0; i < 3; i++) send(first.router, 'slow', { id: `q${i}` });
  await settle();
  send(first.router, 'cancel', { id: 'kq', params: { target: 'q2' } });
  first.outbox.flush();
  assert.equal(of(first.statuses, 'q2').at(-1), 'cancelled:cancelled');
  assert.deepEqual(of(first.statuses, 'kq'), ['accepted', 'successful']);
  send(first.router, 'slow', { id: 'q3' });
  await settle();
  assert.deepEqual(of(first.statuses, 'q3'), ['accepted']);
  first.outbox.close();
  first.db.close(); // dies with q0, q1 executing and q3 waiting

  const second = setup(first.path);
  let ran = 0;
  second.router.register({ op: 'slow', params: z.object({}), execute: async () => (ran++, { status: 'successful' }) });
  await second.router.start();
  await settle();
  second.outbox.flush();
  assert.equal(of(second.statuses, 'q0').at(-1), 'failed:interrupted');
  assert.equal(of(second.statuses, 'q3').at(-1), 'successful', 'a command that never started runs after the restart');
  assert.equal(ran, 1);
});

test('cancel stops a cancellable operation; a non-cancellable one says so', async () => {
  const { router, statuses } = setup();
  const g = gated('long');
  router.register(g.handler);
  router.register({
    op: 'pointless',
    params: z.object({}),
    execute: (ctx) => {
      ctx.setCancellable(false);
      return new Promise((r) => setTimeout(() => r({ status: 'successful' }), 50));
    },
  });
  await router.start();
  send(router, 'long', { id: 'l1' });
  send(router, 'pointless', { id: 'p1' });
  await settle();
  send(router, 'cancel', { id: 'k1', params: { target: 'l1' } });
  send(router, 'cancel', { id: 'k2', params: { target: 'p1' } });
  send(router, 'cancel', { id: 'k3', params: { target: 'ghost' } });
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(of(statuses, 'l1').at(-1), 'cancelled');
  assert.deepEqual(of(statuses, 'k1'), ['accepted', 'successful']);
  assert.deepEqual(of(statuses, 'k2'), ['accepted', 'failed:not-cancellable']);
  assert.deepEqual(of(statuses, 'k3'), ['accepted', 'failed:unknown-target']);
  assert.equal(of(statuses, 'p1').at(-1), 'successful');
});

test('a throwing handler fails its command with internal; the router keeps working', async () => {
  const { router, statuses } = setup();
  router.register({ op: 'boom', params: z.object({}), execute: () => Promise.reject(new Error('kaboom')) });
  router.register({ op: 'fine', params: z.object({}), execute: async () => ({ status: 'successful' }) });
  await router.start();
  send(router, 'boom', { id: 'b1' });
  send(router, 'fine', { id: 'f1' });
  await settle();
  assert.equal(of(statuses, 'b1').at(-1), 'failed:internal');
  assert.equal(of(statuses, 'f1').at(-1), 'successful');
});

test('after a restart, unfinished commands are resumed by their handler or failed as interrupted', async () => {
  const first = setup();
  const g = gated('long');
  const r2 = gated('resumable');
  first.router.register(g.handler);
  first.router.register(r2.handler);
  await first.router.start();
  send(first.router, 'long', { id: 'a1' });
  send(first.router, 'resumable', { id: 'a2' });
  await settle();
  first.outbox.close();
  first.db.close(); // the process "dies" here with both commands executing

  const second = setup(first.path);
  second.router.register(gated('long').handler);
  second.router.register({ op: 'resumable', params: z.object({}).passthrough(), execute: async () => ({ status: 'failed', reason: { code: 'x', message: 'x' } }), resume: async () => ({ status: 'successful', result: 'resumed' }) });
  await second.router.start();
  await settle();
  second.outbox.flush();
  assert.equal(of(second.statuses, 'a1').at(-1), 'failed:interrupted');
  assert.equal(of(second.statuses, 'a2').at(-1), 'successful');
  send(second.router, 'long', { id: 'a1' });
  second.outbox.flush();
  assert.equal(of(second.statuses, 'a1').at(-1), 'failed:interrupted', 'the id is still known after the restart');
});
