import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Router } from '../../agent/router.js';
import type { OperationHandler, OperationOutcome } from '../../core/ports.js';
import { routerHarness, type RouterHarness, type Status } from '../helpers/router.js';
import { StoreGate } from '../../agent/store-gate.js';
import { CommandStore } from '../../agent/command-store.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';
import { openDatabase } from '../../lib/sqlite.js';
import { AUDIT_MIGRATIONS, AuditLog } from '../../core/audit.js';
import { commandAudit } from '../../agent/audit-wiring.js';


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
  router.flushIntake(); // intake is group-committed on the next turn; now instead
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
  first.router.flushIntake();
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
  second.router.flushIntake();
  second.outbox.flush();
  assert.equal(of(second.statuses, 'a1').at(-1), 'failed:interrupted', 'the id is still known after the restart');
});

test('a status after a terminal one is refused, for every operation: late progress of a finished handler is neither stored nor published', async () => {
  const { router, statuses, outbox, db } = setup();
  const late: (() => void)[] = [];
  // Each handler keeps its context and reports progress after it has returned (or thrown).
  router.register({ op: 'done-ok', params: z.object({}), execute: async (ctx) => (late.push(() => ctx.progress('late', 50)), { status: 'successful' }) });
  router.register({ op: 'done-failed', params: z.object({}), execute: async (ctx) => (late.push(() => ctx.progress('late')), { status: 'failed', reason: { code: 'x', message: 'x' } }) });
  router.register({
    op: 'done-throws',
    params: z.object({}),
    execute: async (ctx) => {
      late.push(() => ctx.progress('late'));
      throw new Error('kaboom');
    },
  });
  router.register({
    op: 'done-cancelled',
    params: z.object({}),
    execute: (ctx) =>
      new Promise((resolve) => {
        late.push(() => ctx.progress('late'));
        ctx.signal.addEventListener('abort', () => resolve({ status: 'cancelled' }));
      }),
  });
  await router.start();
  send(router, 'done-ok', { id: 'o1' });
  send(router, 'done-failed', { id: 'f1' });
  await settle();
  send(router, 'done-throws', { id: 't1' });
  send(router, 'done-cancelled', { id: 'c1' });
  await settle();
  send(router, 'cancel', { id: 'k1', params: { target: 'c1' } });
  await settle();
  const terminal = { o1: 'successful', f1: 'failed:x', t1: 'failed:internal', c1: 'cancelled' } as const;
  for (const [id, want] of Object.entries(terminal)) assert.equal(of(statuses, id).at(-1), want, `${id} finished`);
  // Now every handler reports progress late, twice (the second is past the rate limit's interval too).
  for (const f of late) f();
  await new Promise((r) => setTimeout(r, 600));
  for (const f of late) f();
  await settle();
  outbox.flush();
  await settle();
  const row = db.prepare<[string], { status: string; last_message: string }>('SELECT status, last_message FROM commands WHERE id = ?');
  for (const [id, want] of Object.entries(terminal)) {
    assert.equal(of(statuses, id).at(-1), want, `${id}: nothing published after its terminal status`);
    assert.equal(of(statuses, id).filter((s) => s.startsWith('executing')).length, of(statuses, id).indexOf(want) - 1, `${id}: no executing after the terminal one`);
    const r = row.get(id)!;
    assert.equal(r.status, want.split(':')[0], `${id}: the stored status is still the terminal one`);
    assert.equal((JSON.parse(r.last_message) as Status).status, want.split(':')[0], `${id}: the stored message (retained, re-sent on a duplicate) is the terminal one`);
  }
  // A duplicate is answered with the terminal status.
  send(router, 'done-failed', { id: 'f1' });
  await settle();
  outbox.flush();
  assert.equal(of(statuses, 'f1').at(-1), 'failed:x');
});

test('a store that cannot commit: no PUBACK, nothing published, counters match the table; all of it goes through once it can', async () => {
  const { router, statuses, outbox, db } = setup();
  const gate = new StoreGate({ logger: silentLogger(), clock: systemClock, probe: () => new CommandStore(db).probeWrite(), retryMs: 60_000 });
  // The harness's router has no gate: one with a gate on the same store and outbox.
  await router.stop();
  const r = new Router({ db, store: new CommandStore(db), outbox, gate, logger: silentLogger(), clock: systemClock, resultTopic: (id) => `r/${id}`, limits: { maxPayloadBytes: 4096, maxPending: 10, maxConcurrent: 2, retentionDays: 30 } });
  routers.push(r);
  let runs = 0;
  r.register({ op: 'work', params: z.object({}), execute: async () => (runs++, { status: 'successful' }) });
  await r.start();
  const pages = (db.pragma('page_count', { simple: true }) as number) + 0;
  db.pragma(`max_page_count = ${pages}`); // SQLITE_FULL as soon as the file must grow
  const acks: Record<string, boolean> = {};
  const fill = 'x'.repeat(3000);
  for (let i = 0; i < 8; i++) r.handle('work', Buffer.from(JSON.stringify({ id: `w${i}`, params: {}, pad: fill })), (ok) => (acks[`w${i}`] = ok));
  outbox.enqueue({ topic: 'e', payload: JSON.stringify({ id: 'event', status: 'event', pad: fill.repeat(4) }), kind: 'event' });
  await settle();
  assert.equal(gate.ok(), false, 'the gate knows');
  assert.equal(gate.current()?.code, 'storage-full');
  assert.deepEqual(Object.values(acks), Array(8).fill(false), 'not one acknowledged');
  assert.deepEqual(statuses.filter((s) => s.id.startsWith('w')), [], 'nothing published');
  assert.equal(runs, 0, 'nothing ran');
  const rows = (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
  assert.equal(outbox.stats().depth, rows, 'the outbox counts what its table holds');
  assert.equal(outbox.stats().uncommitted, 1, 'the event waits in memory');
  assert.equal(r.counters.unacknowledged, 8);

  db.pragma('max_page_count = 1073741823');
  assert.equal(gate.retry(), true, 'it commits again');
  // The broker delivers the unacknowledged messages again.
  for (let i = 0; i < 8; i++) r.handle('work', Buffer.from(JSON.stringify({ id: `w${i}`, params: {} })), (ok) => (acks[`w${i}`] = ok));
  await settle();
  await settle();
  outbox.flush();
  assert.deepEqual(Object.values(acks), Array(8).fill(true));
  assert.equal(runs, 8);
  for (let i = 0; i < 8; i++) assert.deepEqual(of(statuses, `w${i}`), ['accepted', 'executing', 'successful']);
  assert.equal(outbox.stats().uncommitted, 0);
  gate.stop();
});

test('secret params: the handler gets them, the store never holds them; a queued one cut short by a restart fails interrupted', async () => {
  const first = setup();
  const seen: unknown[] = [];
  const releases: ((o: OperationOutcome) => void)[] = [];
  const secretOp = (onRun: (p: unknown) => Promise<OperationOutcome>): OperationHandler<{ key: string; n: number }> => ({
    op: 'secret',
    params: z.object({ key: z.string(), n: z.number() }),
    redactParams: (p) => ({ ...p, key: '[redacted]' }),
    execute: (ctx) => onRun(ctx.params),
  });
  first.router.register(secretOp((p) => (seen.push(p), new Promise((r) => releases.push(r)))));
  await first.router.start();
  for (let i = 0; i < 3; i++) send(first.router, 'secret', { id: `s${i}`, params: { key: `SECRET-${i}`, n: i } });
  // Under load the intake's commit and fsync can take longer than one settle.
  for (let i = 0; i < 100 && seen.length < 2; i++) await settle();
  assert.deepEqual(seen, [{ key: 'SECRET-0', n: 0 }, { key: 'SECRET-1', n: 1 }], 'the running handlers got the real params');
  releases[0]!({ status: 'successful' });
  for (let i = 0; i < 100 && seen.length < 3; i++) await settle();
  assert.deepEqual(seen.at(-1), { key: 'SECRET-2', n: 2 }, 'so did the queued one when it started');
  const stored = first.db.prepare('SELECT id, params FROM commands ORDER BY id').all() as { id: string; params: string }[];
  assert.deepEqual(stored.map((r) => JSON.parse(r.params) as unknown), [0, 1, 2].map((n) => ({ key: '[redacted]', n })));
  send(first.router, 'secret', { id: 's3', params: { key: 'SECRET-3', n: 3 } });
  await settle();
  first.outbox.close();
  first.db.close(); // dies with s1, s2 running and s3 waiting

  const second = setup(first.path);
  let ran = 0;
  second.router.register(secretOp(async () => (ran++, { status: 'successful' })));
  await second.router.start();
  await settle();
  second.outbox.flush();
  for (const id of ['s1', 's2', 's3']) assert.equal(of(second.statuses, id).at(-1), 'failed:interrupted', id);
  assert.equal(ran, 0, 'never run without its secrets');
  const text = JSON.stringify(second.db.prepare('SELECT * FROM commands').all()) + JSON.stringify(second.db.prepare('SELECT payload FROM outbox').all().map((r) => String((r as { payload: Buffer }).payload)));
  assert.ok(!text.includes('SECRET-'), 'no secret in the store');
});

test('every terminal status is recorded in the audit trail in its own commit: rejected, successful, failed, cancelled, each with its target', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'router-')), 'a.db');
  const db0 = openDatabase(path, { migrations: [AUDIT_MIGRATIONS] });
  db0.close();
  const trail: { log?: AuditLog } = {};
  const h = routerHarness(path, {
    limits: { maxPayloadBytes: 4096, maxPending: 10, maxConcurrent: 4, retentionDays: 30 },
    stopWaitMs: 50,
    audit: (id, op, status, reason, params) => trail.log!.append(commandAudit(id, op, status, reason, params)),
  });
  routers.push(h.router);
  const auditDb = new AuditLog(h.db, systemClock);
  trail.log = auditDb;
  const g = gated('restart');
  h.router.register(g.handler);
  await h.router.start();
  send(h.router, 'nope', { id: 'u1' });
  send(h.router, 'restart', { id: 'r1', params: { component: 'plc-bridge' } });
  await settle();
  g.release({ status: 'failed', reason: { code: 'restart-failed', message: 'no' } });
  await settle();
  send(h.router, 'restart', { id: 'r2', params: { component: 'agent' } });
  await settle();
  send(h.router, 'cancel', { id: 'k1', params: { target: 'r2' } });
  await settle();
  const rows = auditDb.list().map((e) => `${e.actor} ${e.action} ${e.target ?? '-'} ${e.outcome}`);
  assert.deepEqual(rows, ['wms:u1 nope - rejected/unknown-op', 'wms:r1 restart plc-bridge failed/restart-failed', 'wms:k1 cancel r2 successful', 'wms:r2 restart agent cancelled']);
  assert.equal(auditDb.verify().ok, true);
  await h.router.stop();
});

test('exclusive operations wait in one queue, highest priority then oldest first; a full queue is busy; non-exclusive ones run beside', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'router-')), 'a.db');
  const h = routerHarness(path, { limits: { maxPayloadBytes: 4096, maxPending: 20, maxConcurrent: 4, retentionDays: 30, maxQueued: 2 }, stopWaitMs: 50 });
  routers.push(h.router);
  const started: string[] = [];
  const releases = new Map<string, (o: OperationOutcome) => void>();
  // Exclusive per command: `ro: true` (a read-only procedure) runs beside the others.
  h.router.register({
    op: 'job',
    params: z.object({ ro: z.boolean().default(false) }),
    exclusive: (p) => !p.ro,
    execute: (ctx) => new Promise((r) => (started.push(ctx.id), releases.set(ctx.id, r))),
  });
  await h.router.start();
  send(h.router, 'job', { id: 'x1' });
  await settle();
  send(h.router, 'job', { id: 'x2', priority: 'low' });
  send(h.router, 'job', { id: 'x3', priority: 'high' });
  send(h.router, 'job', { id: 'x4' });
  send(h.router, 'job', { id: 'r1', params: { ro: true } });
  await settle();
  h.outbox.flush();
  assert.deepEqual(started, ['x1', 'r1'], 'the read-only one runs beside the exclusive one');
  assert.deepEqual(of(h.statuses, 'x4'), ['rejected:busy'], 'two wait already: the queue is full');
  assert.match(h.statuses.find((s) => s.id === 'x4')!.reason!.message, /queue holds 2/);
  assert.deepEqual(h.router.queue().map((q) => [q.id, q.state, q.priority, q.position ?? null]), [
    ['x1', 'running', 'normal', null],
    ['r1', 'running', 'normal', null],
    ['x3', 'waiting', 'high', 1],
    ['x2', 'waiting', 'low', 2],
  ]);
  releases.get('x1')!({ status: 'successful' });
  await settle();
  assert.deepEqual(started, ['x1', 'r1', 'x3'], 'high before low, though low came first');
  releases.get('x3')!({ status: 'successful' });
  await settle();
  assert.deepEqual(started, ['x1', 'r1', 'x3', 'x2']);
  releases.get('x2')!({ status: 'successful' });
  releases.get('r1')!({ status: 'successful' });
  await settle();
});

test('the queue order survives a restart: waiting exclusive commands start by their persisted priority', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'router-')), 'a.db');
  const limits = { maxPayloadBytes: 4096, maxPending: 20, maxConcurrent: 4, retentionDays: 30, maxQueued: 5 };
  const first = routerHarness(path, { limits, stopWaitMs: 50 });
  const startedA: string[] = [];
  first.router.register({ op: 'job', params: z.object({}), exclusive: true, execute: (ctx) => new Promise(() => startedA.push(ctx.id)) });
  await first.router.start();
  send(first.router, 'job', { id: 'a' });
  await settle();
  send(first.router, 'job', { id: 'b', priority: 'low' });
  send(first.router, 'job', { id: 'c' });
  send(first.router, 'job', { id: 'd', priority: 'high' });
  await settle();
  assert.deepEqual(startedA, ['a']);
  await first.router.stop();
  first.db.close();
  const second = routerHarness(path, { limits, stopWaitMs: 50 });
  routers.push(second.router);
  const startedB: string[] = [];
  const releases: ((o: OperationOutcome) => void)[] = [];
  // `a` was running: without resume it fails `interrupted`; the waiting ones start in order.
  second.router.register({ op: 'job', params: z.object({}), exclusive: true, execute: (ctx) => new Promise((r) => (startedB.push(ctx.id), releases.push(r))) });
  await second.router.start();
  for (let i = 0; i < 3; i++) {
    await settle();
    releases.shift()?.({ status: 'successful' });
  }
  await settle();
  assert.deepEqual(startedB, ['d', 'c', 'b']);
  second.outbox.flush();
  assert.equal(of(second.statuses, 'a').at(-1), 'failed:interrupted');
});

test('admit() rejects with the operation\'s own code; submit() keeps the origin in the store, the queue and the audit actor', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'router-')), 'a.db');
  const db = openDatabase(path + '.audit', { migrations: [AUDIT_MIGRATIONS] });
  const log = new AuditLog(db, systemClock);
  const h = routerHarness(path, {
    limits: { maxPayloadBytes: 4096, maxPending: 20, maxConcurrent: 4, retentionDays: 30 },
    stopWaitMs: 50,
    audit: (id, op, status, reason, params, origin) => log.append(commandAudit(id, op, status, reason, params, origin)),
  });
  routers.push(h.router);
  const seen: string[] = [];
  h.router.onStatus((m) => seen.push(`${m.id}:${m.status}`));
  h.router.register({
    op: 'proc',
    params: z.object({ name: z.string() }),
    admit: (p) => (p.name === 'ghost' ? { code: 'unknown-procedure', message: 'no procedure "ghost"' } : undefined),
    execute: async (ctx) => ({ status: 'successful', result: { trigger: ctx.origin.trigger, actor: ctx.origin.actor } }),
  });
  await h.router.start();
  send(h.router, 'proc', { id: 'g1', params: { name: 'ghost' } });
  const id = h.router.submit('proc', { name: 'real' }, { origin: { trigger: 'schedule', actor: 'schedule:nightly' }, priority: 'low' });
  assert.match(id, /^schedule-\d+-[0-9a-f]+$/);
  await settle();
  h.outbox.flush();
  assert.deepEqual(of(h.statuses, 'g1'), ['rejected:unknown-procedure']);
  assert.deepEqual(h.statuses.find((s) => s.id === id && s.status === 'successful')?.result, { trigger: 'schedule', actor: 'schedule:nightly' });
  const rec = new CommandStore(h.db).get(id)!;
  assert.deepEqual([rec.priority, rec.origin], ['low', { trigger: 'schedule', actor: 'schedule:nightly' }]);
  assert.deepEqual(log.list({}).map((e) => [e.actor, e.action, e.outcome]), [
    ['wms:g1', 'proc', 'rejected/unknown-procedure'],
    ['schedule:nightly', 'proc', 'successful'],
  ]);
  assert.ok(seen.includes('g1:rejected') && seen.includes(`${id}:accepted`) && seen.includes(`${id}:successful`), seen.join(' '));
});
