/**
 * plc-bridge/connection.ts DeviceConnection with a fake driver and a fake clock: deadlines,
 * late answers, socket replacement after maxTimeouts, skipping, backoff, write priority and
 * write-timeout, socket loss, stop(). Time only moves when the test advances it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.js';
import { silentLogger } from '../../lib/log.js';
import type { DeviceConfig } from '../../plc-bridge/config.js';
import type { Driver } from '../../plc-bridge/driver.js';
import { PlcError } from '../../plc-bridge/errors.js';
import { DeviceConnection, type LinkState } from '../../plc-bridge/connection.js';
import { fakeClock } from '../helpers/fake-clock.js';


type Mode = 'answer' | 'silent' | 'exception' | 'reset';

interface Call {
  op: string;
  args: unknown[];
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** The far end: how connects and requests of every driver it made behave. */
class FakePlc {
  connect: 'ok' | 'refuse' | 'hang' = 'ok';
  mode: Mode = 'answer';
  readonly drivers: FakeDriver[] = [];
  readonly calls: Call[] = [];
  factory = (): Driver => {
    const d = new FakeDriver(this);
    this.drivers.push(d);
    return d;
  };
  get current(): FakeDriver {
    return this.drivers[this.drivers.length - 1]!;
  }
}

class FakeDriver implements Driver {
  closed = false;
  private readonly closeListeners = new Set<(r: PlcError) => void>();
  private hung: ((e: unknown) => void) | undefined;
  constructor(private readonly plc: FakePlc) {}
  get isOpen(): boolean {
    return !this.closed;
  }
  connect(): Promise<void> {
    if (this.plc.connect === 'refuse') return Promise.reject(new PlcError('connection-refused', 'ECONNREFUSED'));
    if (this.plc.connect === 'hang') return new Promise((_r, reject) => (this.hung = reject));
    return Promise.resolve();
  }
  async close(): Promise<void> {
    this.closed = true;
    this.hung?.(new PlcError('not-connected', 'closed'));
  }
  onClose(l: (r: PlcError) => void): () => void {
    this.closeListeners.add(l);
    return () => this.closeListeners.delete(l);
  }
  lose(reason = new PlcError('connection-reset', 'ECONNRESET')): void {
    this.closed = true;
    for (const l of this.closeListeners) l(reason);
  }
  private call(op: string, args: unknown[], answer: unknown): Promise<never> {
    return new Promise((resolve, reject) => {
      this.plc.calls.push({ op, args, resolve, reject });
      if (this.plc.mode === 'answer') resolve(answer as never);
      if (this.plc.mode === 'exception') reject(new PlcError('modbus-exception', 'illegal data address', { exceptionCode: 2 }));
      if (this.plc.mode === 'reset') this.lose();
    });
  }
  readRegisters(area: string, start: number, count: number): Promise<number[]> {
    return this.call('read', [area, start, count], Array.from({ length: count }, (_, i) => start + i));
  }
  readBits(area: string, start: number, count: number): Promise<boolean[]> {
    return this.call('read', [area, start, count], Array.from({ length: count }, () => true));
  }
  writeRegisters(start: number, values: number[]): Promise<void> {
    return this.call('write', [start, values], undefined);
  }
  writeCoils(start: number, values: boolean[]): Promise<void> {
    return this.call('write', [start, values], undefined);
  }
  maskWriteRegister(address: number, andMask: number, orMask: number): Promise<void> {
    return this.call('mask', [address, andMask, orMask], undefined);
  }
}

const BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 1 };

function device(over: Partial<DeviceConfig> = {}): DeviceConfig {
  return {
    name: 'plc1',
    host: '127.0.0.1',
    port: 502,
    unitId: 1,
    timeoutMs: 1000,
    connectTimeoutMs: 2000,
    addressing: 0,
    maxGap: 0,
    maxTimeouts: 3,
    skipAfterFailures: 100,
    skipMs: 30_000,
    groups: [],
    ...over,
  };
}

async function setup(over: Partial<DeviceConfig> = {}) {
  const clock = fakeClock();
  const plc = new FakePlc();
  const conn = new DeviceConnection({ device: device(over), logger: silentLogger(), clock, driver: plc.factory, random: () => 1, backoff: BACKOFF });
  const links: [LinkState, string | undefined][] = [];
  conn.onLink((s, r) => links.push([s, r]));
  conn.start();
  await clock.advance(0);
  return { clock, plc, conn, links };
}

/** Settles a promise into a value or its error code, without an unhandled rejection. */
function outcome<T>(p: Promise<T>): { done: boolean; value?: T; code?: string | undefined } {
  const o: { done: boolean; value?: T; code?: string | undefined } = { done: false };
  p.then(
    (v) => Object.assign(o, { done: true, value: v }),
    (e: unknown) => Object.assign(o, { done: true, code: e instanceof PlcError ? e.code : String(e) }),
  );
  return o;
}

test('connects on start and answers reads and writes', async () => {
  const { clock, plc, conn, links } = await setup();
  assert.equal(conn.link, 'up');
  assert.deepEqual(links, [['up', undefined]]);
  assert.deepEqual(await conn.read('holding', 10, 3), [10, 11, 12]);
  assert.deepEqual(await conn.read('coil', 0, 2), [true, true]);
  await conn.write({ kind: 'registers', start: 5, values: [1, 2] });
  await conn.write({ kind: 'mask', address: 7, andMask: 0xfffe, orMask: 1 });
  assert.deepEqual(plc.calls.map((c) => c.op), ['read', 'read', 'write', 'mask']);
  assert.equal(conn.stats().requests, 4);
  await conn.stop();
  assert.equal(clock.pending(), 0, 'stop() leaves no timer behind');
});

test('a request without an answer fails "timeout" at its deadline, and its late answer is not taken for the next', async () => {
  const { clock, plc, conn } = await setup();
  plc.mode = 'silent';
  const first = outcome(conn.read('holding', 0, 1));
  await clock.advance(999);
  assert.equal(first.done, false, 'not before the deadline');
  await clock.advance(1);
  assert.equal(first.code, 'timeout');
  const second = outcome(conn.read('holding', 100, 1));
  await clock.advance(10);
  assert.equal(plc.calls.length, 2, 'the next request went out on the same socket');
  plc.calls[0]!.resolve([666]); // the first request's late answer
  await clock.advance(10);
  assert.equal(second.done, false, 'the late answer did not complete the second request');
  plc.calls[1]!.resolve([100]);
  await clock.advance(0);
  assert.deepEqual(second.value, [100]);
  assert.equal(conn.stats().timeouts, 1);
  await conn.stop();
});

test('after maxTimeouts consecutive timeouts the socket is replaced after a backoff delay', async () => {
  const { clock, plc, conn, links } = await setup({ maxTimeouts: 3 });
  plc.mode = 'silent';
  for (let i = 0; i < 2; i++) {
    const r = outcome(conn.read('holding', 0, 1));
    await clock.advance(1000);
    assert.equal(r.code, 'timeout');
  }
  assert.equal(plc.drivers.length, 1);
  assert.equal(plc.current.closed, false, 'two timeouts keep the socket');
  const third = outcome(conn.read('holding', 0, 1));
  await clock.advance(1000);
  assert.equal(third.code, 'timeout');
  assert.equal(plc.drivers[0]!.closed, true, 'the third closes it');
  assert.equal(conn.link, 'down');
  assert.deepEqual(links.at(-1), ['down', 'timeout']);
  const meanwhile = outcome(conn.read('holding', 0, 1));
  await clock.advance(0);
  assert.equal(meanwhile.code, 'not-connected', 'while down requests fail at once');
  await clock.advance(backoffDelay(BACKOFF, 0, () => 1));
  assert.equal(plc.drivers.length, 2, 'a fresh driver (socket)');
  assert.equal(conn.link, 'up');
  plc.mode = 'answer';
  assert.deepEqual(await conn.read('holding', 1, 1), [1]);
  assert.equal(conn.stats().reconnects, 1);
  await conn.stop();
});

test('after skipAfterFailures failed requests the device is skipped for skipMs, then probed', async () => {
  const { clock, plc, conn } = await setup({ maxTimeouts: 100, skipAfterFailures: 2, skipMs: 5000 });
  plc.mode = 'silent';
  const queued: ReturnType<typeof outcome>[] = [];
  const a = outcome(conn.read('holding', 0, 1));
  queued.push(outcome(conn.read('holding', 1, 1)), outcome(conn.read('holding', 2, 1)));
  await clock.advance(1000);
  assert.equal(a.code, 'timeout');
  await clock.advance(1000);
  assert.equal(queued[0]!.code, 'timeout');
  assert.equal(queued[1]!.code, 'device-skipped', 'what was queued is rejected when the skip starts');
  const start = clock.now();
  assert.equal(conn.stats().skippedUntil, start + 5000);
  const calls = plc.calls.length;
  const skipped = outcome(conn.read('holding', 0, 1));
  await clock.advance(0);
  assert.equal(skipped.code, 'device-skipped', 'rejected at once, not after a deadline');
  assert.equal(plc.calls.length, calls, 'nothing was sent');
  await clock.advance(5000);
  const probe = outcome(conn.read('holding', 0, 1));
  await clock.advance(1000);
  assert.equal(probe.code, 'timeout', 'after the window one request is tried');
  const again = outcome(conn.read('holding', 0, 1));
  await clock.advance(0);
  assert.equal(again.code, 'device-skipped', 'one failed probe skips it again');
  plc.mode = 'answer';
  await clock.advance(5000 + 1000);
  assert.deepEqual(await conn.read('holding', 3, 1), [3], 'an answer clears it');
  assert.equal(conn.stats().skippedUntil, undefined);
  await conn.stop();
});

test('a modbus exception is an answer: it does not count as a failure', async () => {
  const { clock, plc, conn } = await setup({ skipAfterFailures: 1, maxTimeouts: 1 });
  plc.mode = 'exception';
  for (let i = 0; i < 3; i++) {
    const r = outcome(conn.read('holding', 0, 1));
    await clock.advance(0);
    assert.equal(r.code, 'modbus-exception');
  }
  assert.equal(conn.link, 'up');
  assert.equal(conn.stats().skippedUntil, undefined);
  await assert.rejects(conn.read('holding', 0, 1), (e: PlcError) => e.detail?.exceptionCode === 2);
  await conn.stop();
});

test('reconnects with capped exponential backoff and jitter while the PLC refuses, forever', async () => {
  const clock = fakeClock();
  const plc = new FakePlc();
  plc.connect = 'refuse';
  const rand = [0, 1, 0.5, 0.25, 1, 1, 1, 0];
  let i = 0;
  const random = (): number => rand[i++ % rand.length]!;
  const conn = new DeviceConnection({ device: device(), logger: silentLogger(), clock, driver: plc.factory, random, backoff: BACKOFF });
  conn.start();
  await clock.advance(0);
  assert.equal(plc.drivers.length, 1);
  for (let attempt = 0; attempt < 8; attempt++) {
    const delay = backoffDelay(BACKOFF, attempt, () => rand[attempt % rand.length]!);
    assert.ok(delay <= BACKOFF.maxMs && delay >= 50);
    await clock.advance(delay - 1);
    assert.equal(plc.drivers.length, attempt + 1, `attempt ${attempt}: not before ${delay} ms`);
    await clock.advance(1);
    assert.equal(plc.drivers.length, attempt + 2, `attempt ${attempt}: after ${delay} ms`);
  }
  assert.equal(conn.link, 'down');
  assert.match(conn.lastError ?? '', /ECONNREFUSED/);
  await assert.rejects(conn.read('holding', 0, 1), { code: 'not-connected' });
  plc.connect = 'ok';
  await clock.advance(BACKOFF.maxMs);
  assert.equal(conn.link, 'up', 'the PLC that comes back is found');
  await conn.stop();
});

test('a connect that hangs is abandoned at connectTimeoutMs and retried', async () => {
  const clock = fakeClock();
  const plc = new FakePlc();
  plc.connect = 'hang';
  const conn = new DeviceConnection({ device: device({ connectTimeoutMs: 2000 }), logger: silentLogger(), clock, driver: plc.factory, random: () => 1, backoff: BACKOFF });
  conn.start();
  await clock.advance(1999);
  assert.equal(plc.drivers[0]!.closed, false);
  await clock.advance(1);
  assert.equal(plc.drivers[0]!.closed, true);
  assert.match(conn.lastError ?? '', /connect not done within 2000 ms/);
  plc.connect = 'ok';
  await clock.advance(BACKOFF.initialMs);
  assert.equal(conn.link, 'up');
  assert.equal(plc.drivers.length, 2);
  await conn.stop();
});

test('writes jump ahead of queued reads and keep their own order', async () => {
  const { clock, plc, conn } = await setup();
  plc.mode = 'silent';
  const order: string[] = [];
  const track = (name: string, p: Promise<unknown>): void => void p.then(() => order.push(name), () => order.push(`${name}!`));
  track('r1', conn.read('holding', 1, 1));
  track('r2', conn.read('holding', 2, 1));
  track('r3', conn.read('holding', 3, 1));
  track('w1', conn.write({ kind: 'registers', start: 10, values: [1] }));
  track('w2', conn.write({ kind: 'coils', start: 11, values: [true] }));
  await clock.advance(0);
  for (let n = 0; n < 5; n++) {
    plc.calls[n]!.resolve(plc.calls[n]!.op === 'read' ? [0] : undefined);
    await clock.advance(0);
  }
  assert.deepEqual(order, ['r1', 'w1', 'w2', 'r2', 'r3']);
  await conn.stop();
});

test('a write is never retried: a lost answer or a lost socket rejects "write-timeout"', async () => {
  const { clock, plc, conn } = await setup({ maxTimeouts: 5 });
  plc.mode = 'silent';
  const w = outcome(conn.write({ kind: 'registers', start: 0, values: [1, 2, 3] }));
  await clock.advance(1000);
  assert.equal(w.code, 'write-timeout');
  await clock.advance(5000);
  assert.equal(plc.calls.filter((c) => c.op === 'write').length, 1, 'sent once');
  plc.mode = 'reset';
  const w2 = outcome(conn.write({ kind: 'coils', start: 0, values: [true] }));
  await clock.advance(0);
  assert.equal(w2.code, 'write-timeout', 'socket lost before the answer: outcome unknown');
  assert.equal(conn.link, 'down');
  await conn.stop();
});

test('a lost socket fails the request on the wire with "connection-reset", the queued ones at once, and reconnects', async () => {
  const { clock, plc, conn, links } = await setup();
  plc.mode = 'silent';
  const a = outcome(conn.read('holding', 0, 1));
  const b = outcome(conn.read('holding', 1, 1));
  await clock.advance(0);
  plc.current.lose();
  await clock.advance(0);
  assert.equal(a.code, 'connection-reset');
  assert.equal(b.code, 'not-connected');
  assert.deepEqual(links.at(-1), ['down', 'connection-reset']);
  plc.mode = 'answer';
  await clock.advance(BACKOFF.initialMs);
  assert.equal(conn.link, 'up');
  assert.deepEqual(await conn.read('input', 4, 1), [4]);
  await conn.stop();
});

test('stop() rejects what waits, closes the driver, clears every timer, and refuses later requests', async () => {
  const { clock, plc, conn, links } = await setup();
  plc.mode = 'silent';
  const a = outcome(conn.read('holding', 0, 1));
  const b = outcome(conn.write({ kind: 'registers', start: 0, values: [1] }));
  await clock.advance(0);
  await conn.stop();
  await clock.advance(0);
  assert.equal(a.code, 'not-connected');
  assert.equal(b.code, 'not-connected');
  assert.equal(plc.current.closed, true);
  assert.equal(clock.pending(), 0);
  assert.deepEqual(links.at(-1), ['down', 'stopped']);
  await assert.rejects(conn.read('holding', 0, 1), { code: 'not-connected' });
});
