/**
 * The update pipeline (download -> bundle reader -> slot) must stop as a whole when any part of
 * it fails, and a download that trickles must fail. Black-box: hostile and trickled bundles
 * served by a real local HTTP server that records every request, the real Updater and `update`
 * operation on a real install root, run through the real router on a real store. Besides the
 * published statuses, the handler's own calls are recorded: nothing may be reported after the
 * operation has returned its outcome, whatever the router does with it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Updater } from '../../ota/updater.js';
import { TrialGate } from '../../ota/trial-gate.js';
import { initSlots, loadSlots } from '../../ota/slots.js';
import { updateOperation } from '../../agent/ops/update.js';
import type { OperationHandler } from '../../core/ports.js';
import type { UpdateParams } from '../../ota/updater.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';
import { routerHarness, type RouterHarness, type Status } from '../helpers/router.js';
import { tempDir, waitFor } from '../helpers/util.js';
import { handTar, headMembers, listPayload, makePki, manifestJson, stage, type HandMember, type Pki } from '../fixtures/bundle-kit.js';

let work: string;
let pki: Pki;
let trustPath: string;
const bundles = new Map<string, Buffer>();
/** Every request the server got: path, Range header, and when (ms, process clock). */
const requests: { path: string; range: string | undefined; at: number }[] = [];
let server: Server;
let base = '';

/** A payload whose big file comes last, so the download is far from done when a bad member fails. */
function payload(dir: string): { files: Record<string, Buffer>; order: string[] } {
  const files: Record<string, Buffer> = {
    'app/main.js': Buffer.from('console.log("edge-agent");\n'),
    'app/lib/util.js': Buffer.from('export const x = 1;\n'.repeat(50)),
    'app/big.bin': randomBytes(12 * 1024 * 1024),
  };
  for (const [rel, data] of Object.entries(files)) {
    mkdirSync(join(dir, 'payload', ...rel.split('/').slice(0, -1)), { recursive: true });
    writeFileSync(join(dir, 'payload', rel), data);
  }
  return { files, order: ['app/main.js', 'app/lib/util.js', 'app/big.bin'] };
}

/** Hostile variants of the signed bundle: one bad member early, then the rest (12 MiB). */
const HOSTILE: { name: string; code: string; members(files: Record<string, Buffer>): HandMember[] }[] = [
  {
    name: 'a member whose content differs from the manifest',
    code: 'hash-mismatch',
    members: (f) => [{ path: 'payload/app/main.js', data: Buffer.from('console.log("evil!!!!!!");\n') }, { path: 'payload/app/lib/util.js', data: f['app/lib/util.js']! }, { path: 'payload/app/big.bin', data: f['app/big.bin']! }],
  },
  {
    name: 'a member the manifest does not list',
    code: 'unlisted-member',
    members: (f) => [{ path: 'payload/app/extra.js', data: Buffer.from('evil()') }, { path: 'payload/app/main.js', data: f['app/main.js']! }, { path: 'payload/app/big.bin', data: f['app/big.bin']! }],
  },
  {
    name: 'a member whose size differs from the manifest',
    code: 'size-mismatch',
    members: (f) => [{ path: 'payload/app/main.js', data: Buffer.from('console.log("edge-agent"); evil();\n') }, { path: 'payload/app/big.bin', data: f['app/big.bin']! }],
  },
  {
    name: 'a member outside payload/',
    code: 'unsafe-path',
    members: (f) => [{ path: 'payload/../evil', data: Buffer.from('x') }, { path: 'payload/app/big.bin', data: f['app/big.bin']! }],
  },
];

before(async () => {
  work = tempDir('update-pipeline');
  pki = makePki(join(work, 'pki'));
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, pki.ca.certPem);
  const stageDir = join(work, 'stage');
  const { files, order } = payload(stageDir);
  stage(stageDir, manifestJson(listPayload(join(stageDir, 'payload'))), pki.signers.rsa);
  const heads = headMembers(stageDir);
  for (const h of HOSTILE) bundles.set(h.code, handTar([...heads, ...h.members(files)]));
  bundles.set('good', handTar([...heads, ...order.map((rel) => ({ path: `payload/${rel}`, data: files[rel]! }))]));
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ path, range: req.headers.range, at: performance.now() });
    const trickle = path.startsWith('/trickle/');
    const body = bundles.get(path.replace(/^\/(trickle\/)?/, ''));
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m && !trickle ? Number(m[1]) : 0;
    if (start > 0) res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, etag: '"b"' });
    else res.writeHead(200, { 'content-length': body.length, etag: '"b"' });
    if (!trickle) {
      res.end(body.subarray(start));
      return;
    }
    // One byte every 20 ms: never silent long enough for the idle timeout.
    let at = 0;
    const timer = setInterval(() => {
      if (at >= body.length) return clearInterval(timer);
      res.write(body.subarray(at, at + 1));
      at++;
    }, 20);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Call {
  kind: 'progress' | 'settled';
  step?: string;
  at: number;
}

interface Rig {
  root: string;
  h: RouterHarness;
  /** The handler's own progress calls and the moment it returned its outcome, in order. */
  calls: Call[];
  stop(): Promise<void>;
}

/** An install root (slot A committed) and the `update` operation on a real router. */
function rig(name: string, download: { minBytesPerSecond?: number; stallWindowMs?: number } = {}): Rig {
  const root = join(work, name);
  mkdirSync(root, { recursive: true });
  initSlots(root, { version: '1.0.0' });
  const updater = new Updater({
    root,
    runningSlot: 'A',
    runningVersion: '1.0.0',
    deviceClass: 'wms-gateway',
    trustPath,
    maxBundleBytes: 64 * 1024 * 1024,
    download: { idleTimeoutMs: 5000, retries: 5, ...download },
    backup: () => undefined,
    logger: silentLogger(),
  });
  const gate = new TrialGate({ root, runningSlot: 'A', stableMs: 1000, timeoutMs: 5000, healthy: () => ({ ok: true }), restart: () => undefined, clock: systemClock, logger: silentLogger() });
  const real = updateOperation({ updater: async () => updater, gate, root, runningSlot: 'A', runningVersion: '1.0.0', underGuard: true, restart: () => undefined, setUpdating: () => undefined });
  const calls: Call[] = [];
  // The real handler, its context's progress and its return recorded on the way through.
  const recorded: OperationHandler<UpdateParams> = {
    ...real,
    execute: async (ctx) => {
      const seen = { ...ctx, params: ctx.params, signal: ctx.signal, progress: (step: string, percent?: number) => {
        calls.push({ kind: 'progress', step, at: performance.now() });
        ctx.progress(step, percent);
      } };
      try {
        return await real.execute(seen);
      } finally {
        calls.push({ kind: 'settled', at: performance.now() });
      }
    },
  };
  const h = routerHarness(join(root, 'agent.db'), { limits: { maxPayloadBytes: 65_536, maxPending: 10, maxConcurrent: 2, retentionDays: 30 }, stopWaitMs: 5000 });
  h.router.register(recorded);
  return { root, h, calls, stop: async () => {
    await h.router.stop();
    h.outbox.close();
    h.db.close();
  } };
}

const TERMINAL = ['successful', 'failed', 'cancelled', 'rejected'];
const of = (h: RouterHarness, id: string): Status[] => h.statuses.filter((s) => s.id === id);

async function terminalOf(h: RouterHarness, id: string, timeoutMs = 60_000): Promise<Status> {
  await waitFor(() => of(h, id).some((s) => TERMINAL.includes(s.status)), { what: `a terminal status for ${id}`, timeoutMs, intervalMs: 20 });
  return of(h, id).find((s) => TERMINAL.includes(s.status))!;
}

function send(h: RouterHarness, id: string, params: Record<string, unknown>): void {
  h.router.handle('update', Buffer.from(JSON.stringify({ id, params })));
}

/** Proving an absence takes waiting: longer than the download's first retry backoff (<= 1 s). */
const quiet = (): Promise<void> => new Promise((r) => setTimeout(r, 2500));

function slotGivenBack(root: string): void {
  const s = loadSlots(root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'empty'], JSON.stringify(s));
  const dir = join(root, 'slots', 'B');
  assert.ok(!existsSync(dir) || readdirSync(dir).length === 0, `slot B still holds ${existsSync(dir) ? readdirSync(dir).join(', ') : ''}`);
}

test('a hostile bundle stops the whole pipeline: no request, no progress after the failure, failed stays the last word', { timeout: 120_000 }, async () => {
  const r = rig('hostile');
  await r.h.router.start();
  try {
    for (const h of HOSTILE) {
      const id = `u-${h.code}`;
      const from = requests.length;
      r.calls.length = 0;
      send(r.h, id, { url: `${base}/${h.code}` });
      const t = await terminalOf(r.h, id);
      assert.deepEqual([t.status, t.reason?.code], ['failed', h.code], `${h.name}: ${JSON.stringify(of(r.h, id))}`);
      const settledAt = r.calls.find((c) => c.kind === 'settled')!.at;
      await quiet();
      const mine = requests.slice(from);
      // The head probe (a bounded Range: ota/head-probe.ts), then the one download.
      assert.deepEqual(mine.map((q) => q.range), ['bytes=0-65535', undefined], `${h.name}: the download went on after the reader failed: ${JSON.stringify(mine)}`);
      const late = r.calls.filter((c) => c.kind === 'progress' && c.at > settledAt);
      assert.deepEqual(late, [], `${h.name}: progress reported after the operation returned`);
      const statuses = of(r.h, id);
      assert.ok(TERMINAL.includes(statuses.at(-1)!.status), `${h.name}: a status after the terminal one: ${JSON.stringify(statuses.slice(-3))}`);
      assert.equal(r.h.router.current().length, 0, 'nothing runs any more');
      slotGivenBack(r.root);
    }
    // The pipeline is free again: a good bundle installs (and activates) after them.
    send(r.h, 'u-good', { url: `${base}/good` });
    await waitFor(() => loadSlots(r.root).active === 'B', { what: 'slot B activated', timeoutMs: 60_000, intervalMs: 20 });
    assert.deepEqual(readFileSync(join(r.root, 'slots', 'B', 'app', 'main.js'), 'utf8'), 'console.log("edge-agent");\n');
  } finally {
    await r.stop();
  }
});

test('a trickling server fails the update with download-stalled; the slot is free for the next update', { timeout: 120_000 }, async () => {
  const r = rig('trickle', { minBytesPerSecond: 2000, stallWindowMs: 1000 });
  await r.h.router.start();
  try {
    send(r.h, 'u-trickle', { url: `${base}/trickle/good` });
    // While it trickles, another update is busy (the slot is held)...
    await waitFor(() => of(r.h, 'u-trickle').some((s) => s.status === 'executing'), { what: 'u-trickle executing', timeoutMs: 10_000, intervalMs: 20 });
    send(r.h, 'u-busy', { url: `${base}/good` });
    const busy = await terminalOf(r.h, 'u-busy');
    assert.deepEqual([busy.status, busy.reason?.code], ['rejected', 'busy']);
    // ...until the throughput bound ends it.
    const t = await terminalOf(r.h, 'u-trickle', 30_000);
    assert.deepEqual([t.status, t.reason?.code], ['failed', 'download-stalled'], JSON.stringify(of(r.h, 'u-trickle')));
    assert.match(t.reason?.message ?? '', /minBytesPerSecond/);
    const settledAt = r.calls.find((c) => c.kind === 'settled')!.at;
    const served = requests.filter((q) => q.path === '/trickle/good');
    await quiet();
    assert.equal(requests.filter((q) => q.path === '/trickle/good').length, served.length, 'the download was resumed after it stalled');
    assert.deepEqual(r.calls.filter((c) => c.kind === 'progress' && c.at > settledAt), [], 'progress after the operation returned');
    slotGivenBack(r.root);
    // The update slot is free: the next update is accepted and runs.
    send(r.h, 'u-next', { url: `${base}/good` });
    await waitFor(() => loadSlots(r.root).active === 'B', { what: 'slot B activated by u-next', timeoutMs: 60_000, intervalMs: 20 });
    assert.ok(of(r.h, 'u-next').some((s) => s.status === 'accepted'));
  } finally {
    await r.stop();
  }
});
