/**
 * Fault injection: the DeviceConnection + Modbus driver against the simulated PLC (demo/plc-sim.ts)
 * in each fault mode: slow answers, exception codes, silence (a half-open peer), answers one
 * byte at a time, answers with a stale transaction id, a reset connection, a refused connection
 * and a PLC that comes back. The faulty device's requests fail with the right code within its
 * deadline and recover once the fault is gone; a second, healthy device is polled throughout on
 * its own connection and every one of its reads must succeed with the right values.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BackoffPolicy } from '../../lib/backoff.js';
import { silentLogger } from '../../lib/log.js';
import type { DeviceConfig } from '../../plc-bridge/config.js';
import { DeviceConnection, type LinkState } from '../../plc-bridge/connection.js';
import { PlcError } from '../../plc-bridge/errors.js';
import { PlcSim } from '../../demo/plc-sim.js';
import { waitFor } from '../helpers/util.js';

const FAST: BackoffPolicy = { initialMs: 50, maxMs: 400, factor: 2, jitter: 1 };
const SLACK_MS = 1500; // a loaded 2-core machine: deadlines are checked with generous slack
const A = [101, 102, 103, 104];
const B = [201, 202, 203, 204];

let healthySim: PlcSim;
let healthy: DeviceConnection;
let healthyLoop: Promise<void> | undefined;
let stopLoop = false;
const healthyResults = { ok: 0, failed: [] as string[] };
const cleanups: (() => Promise<void>)[] = [];

function device(name: string, port: number, over: Partial<DeviceConfig> = {}): DeviceConfig {
  return { name, host: '127.0.0.1', port, unitId: 1, timeoutMs: 600, connectTimeoutMs: 1000, addressing: 0, maxGap: 0, maxTimeouts: 3, skipAfterFailures: 100, skipMs: 1000, groups: [], ...over };
}

/** A fresh faulty PLC (registers 0.. = A, 100.. = B) and a connection to it, both cleaned up after. */
async function faulty(over: Partial<DeviceConfig> = {}): Promise<{ sim: PlcSim; conn: DeviceConnection; links: LinkState[] }> {
  const sim = new PlcSim({ port: 0, size: 1000 });
  const port = await sim.start();
  sim.regs.holding.set(A, 0);
  sim.regs.holding.set(B, 100);
  const conn = new DeviceConnection({ device: device('faulty', port, over), logger: silentLogger(), backoff: FAST });
  const links: LinkState[] = [];
  conn.onLink((s) => links.push(s));
  conn.start();
  cleanups.push(async () => {
    await conn.stop();
    await sim.stop();
  });
  await waitFor(() => conn.link === 'up', { timeoutMs: 10_000, what: 'faulty device link up' });
  return { sim, conn, links };
}

/** Runs a request and reports its error code (or 'ok') and how long it took. */
async function timed(p: Promise<unknown>): Promise<{ code: string; ms: number; value?: unknown }> {
  const t0 = performance.now();
  try {
    const value = await p;
    return { code: 'ok', ms: performance.now() - t0, value };
  } catch (err) {
    return { code: err instanceof PlcError ? err.code : String(err), ms: performance.now() - t0 };
  }
}

before(async () => {
  healthySim = new PlcSim({ port: 0 });
  const port = await healthySim.start();
  healthySim.regs.holding.set([7, 8, 9, 10, 11], 0);
  healthy = new DeviceConnection({ device: device('healthy', port, { timeoutMs: 3000 }), logger: silentLogger(), backoff: FAST });
  healthy.start();
  await waitFor(() => healthy.link === 'up', { timeoutMs: 10_000, what: 'healthy device link up' });
  healthyLoop = (async () => {
    while (!stopLoop) {
      try {
        const v = await healthy.read('holding', 0, 5);
        if (JSON.stringify(v) === '[7,8,9,10,11]') healthyResults.ok++;
        else healthyResults.failed.push(`wrong values ${JSON.stringify(v)}`);
      } catch (err) {
        healthyResults.failed.push(err instanceof PlcError ? err.code : String(err));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
});

after(async () => {
  stopLoop = true;
  await healthyLoop;
  for (const c of cleanups) await c();
  await healthy?.stop();
  await healthySim?.stop();
});

test('slow answers: within the deadline they succeed, beyond it "timeout", and the late answer is not taken', async () => {
  const { sim, conn } = await faulty({ timeoutMs: 600 });
  await sim.setFault({ delayMs: 150 });
  assert.deepEqual(await conn.read('holding', 0, 4), A);
  await sim.setFault({ delayMs: 900 });
  const slow = await timed(conn.read('holding', 0, 4));
  assert.equal(slow.code, 'timeout');
  assert.ok(slow.ms >= 550 && slow.ms < 600 + SLACK_MS, `timed out after ${slow.ms} ms`);
  await sim.setFault({});
  // The answer to the first read (A) arrives while this one is on the wire.
  const next = await timed(conn.read('holding', 100, 4));
  assert.equal(next.code, 'ok');
  assert.deepEqual(next.value, B);
  assert.equal(conn.link, 'up');
});

test('exception codes: "modbus-exception" with the code, the link stays up and nothing is skipped', async () => {
  const { sim, conn } = await faulty({ skipAfterFailures: 1 });
  await sim.setFault({ exception: { code: 4, count: 3 } });
  for (let i = 0; i < 2; i++) {
    await assert.rejects(conn.read('holding', 0, 4), (e: unknown) => e instanceof PlcError && e.code === 'modbus-exception' && e.detail?.exceptionCode === 4);
  }
  await assert.rejects(conn.write({ kind: 'registers', start: 0, values: [1] }), { code: 'modbus-exception' });
  assert.deepEqual(await conn.read('holding', 0, 4), A, 'the fourth request is answered');
  assert.equal(conn.link, 'up');
  assert.equal(conn.stats().skippedUntil, undefined);
  await assert.rejects(conn.read('holding', 999, 2), (e: unknown) => e instanceof PlcError && e.detail?.exceptionCode === 2);
});

test('silence (half-open): timeouts, a fresh socket after maxTimeouts, skipped for skipMs, back when it answers', async () => {
  const { sim, conn, links } = await faulty({ timeoutMs: 400, maxTimeouts: 2, skipAfterFailures: 4, skipMs: 1500 });
  await sim.setFault({ silent: true });
  const before = sim.stats().connections;
  for (let i = 0; i < 2; i++) {
    const r = await timed(conn.read('holding', 0, 4));
    assert.equal(r.code, 'timeout');
    assert.ok(r.ms < 400 + SLACK_MS, `timeout after ${r.ms} ms`);
  }
  await waitFor(() => sim.stats().connections > before && conn.link === 'up', { timeoutMs: 10_000, what: 'a fresh socket after 2 timeouts' });
  assert.deepEqual(links.slice(-2), ['down', 'up']);
  for (let i = 0; i < 2; i++) assert.equal((await timed(conn.read('holding', 0, 4))).code, 'timeout');
  const sent = sim.stats().requests;
  const skipped = await timed(conn.read('holding', 0, 4));
  assert.equal(skipped.code, 'device-skipped');
  assert.equal(sim.stats().requests, sent, 'a skipped request is not sent, so it does not wait for a deadline');
  assert.ok(conn.stats().skippedUntil !== undefined);
  await sim.setFault({});
  let last = '';
  await waitFor(
    async () => {
      const r = await timed(conn.read('holding', 100, 4));
      last = r.code;
      return r.code === 'ok' && JSON.stringify(r.value) === JSON.stringify(B);
    },
    { timeoutMs: 15_000, intervalMs: 100, what: `the device answering again (last: ${last})` },
  );
  assert.ok(conn.stats().timeouts >= 4);
});

test('answers written one byte at a time are put together', async () => {
  const { sim, conn } = await faulty({ timeoutMs: 3000 });
  await sim.setFault({ dribbleMs: 3 });
  assert.deepEqual(await conn.read('holding', 0, 4), A);
  await conn.write({ kind: 'registers', start: 10, values: [5, 6] });
  assert.deepEqual(await conn.read('holding', 10, 2), [5, 6]);
  assert.deepEqual(await conn.read('coil', 0, 3), [false, false, false]);
});

test('an answer with a stale transaction id is never taken for the current request', async () => {
  const { sim, conn } = await faulty({ timeoutMs: 500, maxTimeouts: 10 });
  await sim.setFault({ staleTid: 'then-right' });
  for (let i = 0; i < 3; i++) assert.deepEqual(await conn.read('holding', 0, 4), A, 'the right answer after the stale one');
  await sim.setFault({ staleTid: 'only' });
  const r = await timed(conn.read('holding', 100, 4));
  assert.equal(r.code, 'timeout', `only a stale answer: ${JSON.stringify(r.value)}`);
  await sim.setFault({});
  assert.deepEqual(await conn.read('holding', 100, 4), B);
});

test('a reset connection: "connection-reset" (a write: "write-timeout"), then a new connection', async () => {
  const { sim, conn, links } = await faulty();
  await sim.setFault({ reset: 1 });
  assert.equal((await timed(conn.read('holding', 0, 4))).code, 'connection-reset');
  await waitFor(() => conn.link === 'up', { timeoutMs: 10_000, what: 'reconnected after the reset' });
  assert.deepEqual(await conn.read('holding', 0, 4), A);
  await sim.setFault({ reset: 1 });
  assert.equal((await timed(conn.write({ kind: 'registers', start: 0, values: [9] }))).code, 'write-timeout');
  assert.equal(sim.regs.holding[0], A[0], 'the reset request was not executed');
  await waitFor(() => conn.link === 'up', { timeoutMs: 10_000, what: 'reconnected after the second reset' });
  assert.deepEqual(links.filter((l) => l === 'down').length, 2);
  assert.ok(conn.stats().reconnects >= 2);
});

test('a refused connection: link down, requests fail at once, and the PLC that comes back is used again', async () => {
  const { sim, conn } = await faulty();
  const port = sim.port;
  await sim.setFault({ refuse: true });
  await waitFor(() => conn.link === 'down', { timeoutMs: 10_000, what: 'link down' });
  await waitFor(() => /ECONNREFUSED/.test(conn.lastError ?? ''), { timeoutMs: 10_000, what: 'a refused connect' });
  assert.equal((await timed(conn.read('holding', 0, 4))).code, 'not-connected', 'while down requests fail at once');
  const attempts = conn.stats().reconnects;
  await waitFor(() => conn.stats().reconnects >= attempts + 2, { timeoutMs: 10_000, what: 'reconnect attempts go on' });
  await sim.resume();
  assert.equal(sim.port, port, 'the PLC is back on the same port');
  await waitFor(() => conn.link === 'up', { timeoutMs: 10_000, what: 'link up after resume' });
  assert.deepEqual(await conn.read('holding', 0, 4), A);
});

test('the simulator as a child process: --devices 2 prints its ports and takes commands on stdin', async () => {
  const entry = fileURLToPath(new URL('../../demo/plc-sim.js', import.meta.url));
  const child = spawn(process.execPath, [entry, '--port', '0', '--devices', '2', '--size', '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise((r) => child.once('exit', r));
  const conns: DeviceConnection[] = [];
  try {
    await waitFor(() => lines.length >= 1, { timeoutMs: 10_000, what: 'the ports line' });
    const { ports } = JSON.parse(lines[0]!) as { ports: number[] };
    assert.equal(ports.length, 2);
    const send = async (cmd: object): Promise<Record<string, unknown>> => {
      const n = lines.length;
      child.stdin.write(`${JSON.stringify(cmd)}\n`);
      await waitFor(() => lines.length > n, { timeoutMs: 5000, what: `an answer to ${JSON.stringify(cmd)}` });
      return JSON.parse(lines[n]!) as Record<string, unknown>;
    };
    assert.deepEqual(await send({ device: 1, set: { area: 'holding', address: 5, values: [42, 43] } }), { ok: true });
    for (const p of ports) {
      const c = new DeviceConnection({ device: device(`child${p}`, p, { timeoutMs: 3000 }), logger: silentLogger(), backoff: FAST });
      conns.push(c);
      c.start();
    }
    await waitFor(() => conns.every((c) => c.link === 'up'), { timeoutMs: 10_000, what: 'both links up' });
    assert.deepEqual(await conns[1]!.read('holding', 5, 2), [42, 43]);
    assert.deepEqual(await conns[0]!.read('holding', 5, 2), [0, 0], 'each device has its own memory');
    assert.deepEqual(await send({ fault: { exception: { code: 2, count: 1 } } }), { ok: true });
    await assert.rejects(conns[0]!.read('holding', 0, 1), { code: 'modbus-exception' });
    await conns[0]!.write({ kind: 'coils', start: 3, values: [true, true] });
    assert.deepEqual(await send({ get: { area: 'coil', address: 2, count: 3 } }), { ok: true, values: [false, true, true] });
    assert.equal(((await send({ device: 1, stats: true })).stats as { requests: number }).requests, 1);
  } finally {
    for (const c of conns) await c.stop();
    child.kill('SIGTERM');
    await exited;
  }
});

test('the healthy device answered every request throughout', async () => {
  stopLoop = true;
  await healthyLoop;
  assert.deepEqual(healthyResults.failed, []);
  assert.ok(healthyResults.ok > 50, `only ${healthyResults.ok} reads`);
  assert.equal(healthy.stats().timeouts, 0);
  assert.equal(healthy.stats().reconnects, 0);
});
