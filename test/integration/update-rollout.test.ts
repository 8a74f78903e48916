/**
 * Rollout-aware updates (CONTRACT.md section 2: `notBefore`, `spreadSec`, `deadline`, `rolloutId`)
 * with a real Mosquitto, the real boot guard and the real agent in an A/B install root, and a
 * signed bundle served by a local HTTP server that counts its requests. The test plays the WMS.
 * One gateway runs through the cases in order; the successful updates come last (they change the
 * running version). The expired-URL case has a server of its own: presigned-style URLs
 * (`?token=`) it stops honouring, and a count of the bytes it sent for each.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentStatus, makeOtaRoot, makeRelease, resOf, serveBundles, startGuard, terminalsOf, TERMINAL, until, type BundleServer, type GuardRun, type OtaRoot, type Res } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';

const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];
const GW = 'gw-rollout';

type RolloutRes = Res & { ts?: string; rolloutId?: string; progress?: { step: string; percent?: number; startsAt?: string } };

let broker: Broker;
let server: BundleServer;
let work: string;
let r: OtaRoot;
let g: GuardRun;
let wms: MqttClient;
let got: Received[];
let bigPath: string;
let expiring: Expiring;

interface Expiring {
  server: Server;
  base: string;
  /** Tokens that answer 403 from now on. */
  revoked: Set<string>;
  /** Per token: the bytes sent and the Range headers asked. */
  sent: Map<string, number>;
  ranges: Map<string, (string | undefined)[]>;
  /** The first response of this token ends after this many bytes, and the token is revoked. */
  cutAfter: Map<string, number>;
}

/** Serves `file` at /bundle.tar?token=T with Range support; see Expiring. */
async function expiringServer(file: string): Promise<Expiring> {
  const size = statSync(file).size;
  const e: Expiring = { server: createServer(), base: '', revoked: new Set(), sent: new Map(), ranges: new Map(), cutAfter: new Map() };
  e.server.on('request', (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const token = u.searchParams.get('token') ?? '';
    e.ranges.set(token, [...(e.ranges.get(token) ?? []), req.headers.range]);
    if (u.pathname !== '/bundle.tar' || e.revoked.has(token)) return void res.writeHead(403).end();
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const cut = e.cutAfter.get(token);
    const end = cut !== undefined ? Math.min(size, start + cut) : size;
    if (m) res.writeHead(206, { 'content-length': size - start, 'content-range': `bytes ${start}-${size - 1}/${size}`, etag: '"big"' });
    else res.writeHead(200, { 'content-length': size, etag: '"big"' });
    const body = createReadStream(file, { start, end: end - 1 });
    body.on('data', (c: Buffer | string) => e.sent.set(token, (e.sent.get(token) ?? 0) + c.length));
    body.pipe(res, { end: cut === undefined });
    if (cut !== undefined) {
      body.on('end', () => {
        e.revoked.add(token);
        // Let what was written reach the socket, then break the connection mid-body.
        setTimeout(() => res.destroy(), 200);
      });
    }
  });
  await new Promise<void>((r) => e.server.listen(0, '127.0.0.1', r));
  e.base = `http://127.0.0.1:${(e.server.address() as AddressInfo).port}`;
  return e;
}

before(async () => {
  broker = await startBroker();
  work = tempDir('update-rollout');
  const ca = createCa({ commonName: 'rollout release CA' });
  const signer = issueCert(ca, { commonName: 'rollout release signer', kind: 'codeSigning' });
  const trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const v1 = join(work, 'rel-1.0.0');
  makeRelease(v1, '1.0.0');
  const v11 = join(work, 'rel-1.1.0');
  makeRelease(v11, '1.1.0', v1);
  mkdirSync(join(work, 'bundles'));
  await createBundle({ inDir: v11, version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(work, 'bundles', 'v1.1.0.tar') });
  // 1.2.0 with 12 MiB more in files of 1 MiB: the install keeps checkpoints between them.
  const v12 = join(work, 'rel-1.2.0');
  makeRelease(v12, '1.2.0', v1);
  mkdirSync(join(v12, 'pad'));
  for (let i = 0; i < 12; i++) writeFileSync(join(v12, 'pad', `p${String(i).padStart(2, '0')}.bin`), randomBytes(1024 * 1024));
  bigPath = join(work, 'v1.2.0-big.tar');
  await createBundle({ inDir: v12, version: '1.2.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: bigPath });
  expiring = await expiringServer(bigPath);
  server = await serveBundles(join(work, 'bundles'));
  r = makeOtaRoot({
    releaseDir: v1,
    version: '1.0.0',
    config: {
      gatewayId: GW,
      mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } },
      ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 8000 }, download: { idleTimeoutMs: 10_000, retries: 2 }, healthReportSec: 2 },
      shutdownTimeoutMs: 10_000,
    },
  });
  wms = await mqttClient(broker.url, { clientId: 'wms-rollout' });
  got = await collect(wms, `edge/${GW}/#`);
  g = startGuard(r, GUARD_ARGS);
  await ready();
});

after(async () => {
  await g?.stop();
  expiring?.server.closeAllConnections();
  await new Promise<void>((res) => (expiring ? expiring.server.close(() => res()) : res()));
  await wms?.endAsync(true);
  await server?.close();
  await broker?.stop();
  if (r) rmSync(r.root, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

let readyN = 0;
/** The agent answers commands (it is subscribed). */
async function ready(): Promise<void> {
  for (let n = 1; ; n++) {
    const id = `ready-${++readyN}`;
    send('ping', { id });
    try {
      await until(g, () => res(id).length > 0, `the agent to answer ${id}`, 1000);
      return;
    } catch (err) {
      if (n >= 30 || !g.running()) throw err;
    }
  }
}

function send(op: string, payload: Record<string, unknown>): void {
  wms.publish(`edge/${GW}/cmd/${op}`, JSON.stringify(payload), { qos: 1 });
}

const res = (id: string): RolloutRes[] => resOf(got, GW, id);
const dump = (id: string): string => res(id).map((p) => JSON.stringify(p)).join('\n');
const iso = (ms: number): string => new Date(ms).toISOString();
const waiting = (id: string): RolloutRes[] => res(id).filter((p) => p.status === 'executing' && p.progress?.step === 'waiting');
const bundleRequests = (): number => server.requests.filter((p) => p.endsWith('v1.1.0.tar')).length;

async function terminal(id: string, timeoutMs = 60_000): Promise<RolloutRes> {
  await until(g, () => terminalsOf(got, GW, id).length > 0, () => `a terminal status for ${id}\n${dump(id)}`, timeoutMs);
  return res(id).find((p) => TERMINAL.includes(p.status))!;
}

function everyStatusCarries(id: string, rolloutId: string): void {
  const all = res(id);
  assert.ok(all.length > 0);
  for (const p of all) assert.equal(p.rolloutId, rolloutId, `a status of ${id} without rolloutId ${rolloutId}:\n${dump(id)}`);
}

test('an update whose deadline has passed on arrival is rejected deadline-passed, with its rolloutId', async () => {
  send('update', { id: 'late-1', params: { url: server.url('v1.1.0.tar'), deadline: iso(Date.now() - 60_000), rolloutId: 'ro-late' } });
  const t = await terminal('late-1');
  assert.equal(t.status, 'rejected', dump('late-1'));
  assert.equal(t.reason?.code, 'deadline-passed');
  everyStatusCarries('late-1', 'ro-late');
  assert.equal(bundleRequests(), 0);
});

test('a spread update waits at its chosen moment, keeps it across a kill -9, and a cancel ends the wait', async () => {
  const notBefore = Date.now() + 1000;
  send('update', { id: 'spread-1', params: { url: server.url('v1.1.0.tar'), notBefore: iso(notBefore), spreadSec: 3600, rolloutId: 'ro-spread' } });
  await until(g, () => waiting('spread-1').length > 0, () => `spread-1 waiting\n${dump('spread-1')}`);
  const startsAt = Date.parse(waiting('spread-1')[0]!.progress!.startsAt!);
  assert.ok(startsAt >= notBefore && startsAt <= notBefore + 3600_000, `startsAt ${iso(startsAt)} outside [notBefore, notBefore + 1 h]`);
  const before = await agentStatus(r);
  assert.equal(before.version, '1.0.0');
  const killedAt = Date.now();
  process.kill(before.pid, 'SIGKILL');
  // The guard starts the agent again; the resumed update shows the same moment again.
  const again = (): RolloutRes[] => waiting('spread-1').filter((p) => Date.parse(p.ts ?? '') > killedAt);
  await until(g, () => again().length > 0, () => `spread-1 waiting again after the restart\n${dump('spread-1')}`);
  assert.notEqual((await agentStatus(r)).pid, before.pid);
  assert.deepEqual([...new Set(waiting('spread-1').map((p) => p.progress!.startsAt))], [iso(startsAt)]);
  send('cancel', { id: 'cancel-spread-1', params: { target: 'spread-1' } });
  const t = await terminal('spread-1');
  assert.equal(t.status, 'cancelled', dump('spread-1'));
  assert.equal((await terminal('cancel-spread-1')).status, 'successful');
  everyStatusCarries('spread-1', 'ro-spread');
  assert.equal(bundleRequests(), 0, 'nothing was downloaded while it waited');
  const status = got.filter((m) => m.topic === `edge/${GW}/status`).map((m) => (m.payload as { state: string }).state);
  assert.ok(!status.includes('updating'), `the gateway said updating while it only waited: ${status.join(', ')}`);
});

test('a deadline that passes while the agent is down ends the waiting update failed deadline-passed', async () => {
  const notBefore = Date.now() + 1500;
  const deadline = notBefore + 1000;
  send('update', { id: 'deadline-1', params: { url: server.url('v1.1.0.tar'), notBefore: iso(notBefore), deadline: iso(deadline), rolloutId: 'ro-deadline' } });
  await until(g, () => waiting('deadline-1').length > 0, () => `deadline-1 waiting\n${dump('deadline-1')}`);
  assert.equal(waiting('deadline-1')[0]!.progress!.startsAt, iso(notBefore));
  // Down before its moment (guard and agent killed), back after its deadline.
  const pid = (await agentStatus(r)).pid;
  process.kill(g.proc.pid!, 'SIGKILL');
  process.kill(pid, 'SIGKILL');
  await g.stop();
  await waitFor(() => Date.now() > deadline + 200, { what: 'the deadline to pass', timeoutMs: 10_000, intervalMs: 50 });
  g = startGuard(r, GUARD_ARGS);
  const t = await terminal('deadline-1');
  assert.equal(t.status, 'failed', dump('deadline-1'));
  assert.equal(t.reason?.code, 'deadline-passed');
  everyStatusCarries('deadline-1', 'ro-deadline');
  assert.equal(bundleRequests(), 0);
  await ready();
});

test('notBefore: the download starts no earlier, and every status and the update event carry the rolloutId', async () => {
  const notBefore = Date.now() + 2000;
  send('update', { id: 'nb-1', params: { url: server.url('v1.1.0.tar'), notBefore: iso(notBefore), rolloutId: 'ro-nb' } });
  await until(g, () => waiting('nb-1').length > 0, () => `nb-1 waiting\n${dump('nb-1')}`);
  assert.equal(waiting('nb-1')[0]!.progress!.startsAt, iso(notBefore));
  assert.equal(bundleRequests(), 0);
  const t = await terminal('nb-1', 90_000);
  assert.equal(t.status, 'successful', dump('nb-1'));
  const first = server.times[server.requests.findIndex((p) => p.endsWith('v1.1.0.tar'))];
  assert.ok(first !== undefined && first >= notBefore, `the bundle was requested at ${first === undefined ? 'never' : iso(first)}, before notBefore ${iso(notBefore)}`);
  everyStatusCarries('nb-1', 'ro-nb');
  const events = (): { type: string; command?: string; rolloutId?: string }[] => got.filter((m) => m.topic === `edge/${GW}/events`).map((m) => m.payload as { type: string; command?: string; rolloutId?: string });
  const ev = (): ReturnType<typeof events>[number] | undefined => events().find((e) => e.type === 'update' && e.command === 'nb-1');
  await until(g, () => ev() !== undefined, () => `the update event of nb-1: ${JSON.stringify(events())}`);
  assert.equal(ev()?.rolloutId, 'ro-nb');
  assert.equal((await agentStatus(r)).version, '1.1.0');
  // healthReportSec after the commit: the release's health since, for the rollout engine.
  type Health = { type: string; command?: string; rolloutId?: string; version?: string; restarts?: number; incidents?: number; alerts?: unknown[]; healthy?: boolean };
  const health = (): Health | undefined => got.map((m) => m.payload as Health).find((e) => e.type === 'update-health' && e.command === 'nb-1');
  await until(g, () => health() !== undefined, () => `the update-health event of nb-1: ${JSON.stringify(events().slice(-5))}`);
  const h = health()!;
  assert.deepEqual([h.rolloutId, h.version, h.restarts, h.incidents, h.alerts, h.healthy], ['ro-nb', '1.1.0', 0, 0, [], true], JSON.stringify(h));
});

test('a URL that expires mid-download fails url-expired; the same update with a fresh URL resumes where the checkpoint was', async () => {
  const size = statSync(bigPath).size;
  expiring.cutAfter.set('a', 9 * 1024 * 1024);
  send('update', { id: 'exp-1', params: { url: `${expiring.base}/bundle.tar?token=a`, rolloutId: 'ro-exp' } });
  const t1 = await terminal('exp-1', 90_000);
  assert.equal(t1.status, 'failed', dump('exp-1'));
  assert.equal(t1.reason?.code, 'url-expired', dump('exp-1'));
  // The retry after the break asked for the rest with the old token and was refused: no more.
  // (Before the download the agent reads the bundle's head with a closed Range, ota/head-probe.ts:
  // those requests are not part of the download.)
  const download = (token: string): (string | undefined)[] => (expiring.ranges.get(token) ?? []).filter((r) => !/^bytes=0-\d+$/.test(r ?? ''));
  assert.equal(download('a').length, 2, JSON.stringify([...expiring.ranges]));
  send('update', { id: 'exp-2', params: { url: `${expiring.base}/bundle.tar?token=b`, rolloutId: 'ro-exp' } });
  const t2 = await terminal('exp-2', 120_000);
  assert.equal(t2.status, 'successful', dump('exp-2'));
  const rangeB = download('b')[0];
  assert.match(rangeB ?? '', /^bytes=[1-9]\d*-$/, `the fresh URL was asked from the start: ${String(rangeB)}`);
  const sentB = expiring.sent.get('b') ?? 0;
  assert.ok(sentB < size - 4 * 1024 * 1024, `the resend downloaded ${sentB} of ${size} bytes: it did not resume from a checkpoint`);
  assert.equal((await agentStatus(r)).version, '1.2.0');
});
