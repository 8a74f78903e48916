/**
 * Self-update end to end: a real mosquitto, the real boot guard installed into a temp install
 * root, the real agent running from ROOT/slots/<active>, signed bundles made from this build and
 * served over HTTP. The test plays the WMS: it sends `update`/`rollback`/`cancel` on
 * `edge/GW/cmd/...` and checks the statuses on `edge/GW/res/{id}`, the retained `edge/GW/status`
 * and ROOT/slots.json. Every command must reach exactly ONE terminal status, counted as distinct
 * terminal statuses over every message received (a status may be delivered again; two different
 * terminals are a failure). Conditions are polled with deadlines.
 */
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert, type CertAndKey } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { checkInvariants, loadSlots, type SlotName } from '../../ota/slots.js';
import { SLOT_MANIFEST_DIR } from '../../ota/manifest.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentStatus, commandIds, makeOtaRoot, makeRelease, patchFile, resOf, serveBundles, startGuard, statusesOf, stepsOf, terminalsOf, TERMINAL, until } from '../helpers/ota-root.js';
import type { BundleServer, GuardRun, OtaRoot, Res } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';

const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];
const HEALTH_GATE = { stableMs: 1000, timeoutMs: 8000 };

interface Gateway {
  id: string;
  r: OtaRoot;
  g: GuardRun;
  wms: MqttClient;
  got: Received[];
}

let broker: Broker;
let server: BundleServer;
let releaseV1: string;
let trustPath: string;
let work: string;
const running: Gateway[] = [];

before(async () => {
  broker = await startBroker();
  work = tempDir('ota-e2e');
  const ca = createCa({ commonName: 'e2e release CA' });
  const signer = issueCert(ca, { commonName: 'e2e release signer', kind: 'codeSigning' });
  const rogueCa = createCa({ commonName: 'someone else CA' });
  const rogue = issueCert(rogueCa, { commonName: 'someone else', kind: 'codeSigning' });
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  releaseV1 = join(work, 'rel-1.0.0');
  makeRelease(releaseV1, '1.0.0');
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  const bundle = async (name: string, version: string, by: CertAndKey, patch?: (dir: string) => void): Promise<void> => {
    const dir = join(work, `rel-${name}`);
    makeRelease(dir, version, releaseV1);
    patch?.(dir);
    await createBundle({ inDir: dir, version, compatible: ['wms-gateway'], keyPem: by.keyPem, certPem: by.certPem, out: join(bundles, name) });
  };
  await bundle('v1.1.0.tar', '1.1.0', signer);
  await bundle('v1.2.0-exits.tar', '1.2.0', signer, (d) => writeFileSync(join(d, 'dist', 'agent', 'cli', 'index.js'), 'process.exit(1);\n'));
  await bundle('v1.3.0-unhealthy.tar', '1.3.0', signer, (d) => patchFile(join(d, 'dist', 'agent', 'wms-link.js'), /isConnected\(\) \{\s*return this\.connected;/, 'isConnected() {\n        return false;'));
  await bundle('v1.1.0-rogue.tar', '1.1.0', rogue);
  await bundle('v0.9.0.tar', '0.9.0', signer);
  server = await serveBundles(bundles);
});

afterEach(async () => {
  for (const gw of running.splice(0)) {
    await gw.g.stop();
    await gw.wms.endAsync(true);
    rmSync(gw.r.root, { recursive: true, force: true }); // ROOT/node_modules is a symlink: only the link goes
  }
});

after(async () => {
  await server?.close();
  await broker?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function gateway(id: string): Promise<Gateway> {
  const config = {
    gatewayId: id,
    mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } },
    ota: { trustAnchors: trustPath, healthGate: HEALTH_GATE, download: { idleTimeoutMs: 10_000, retries: 2 } },
    // No exclusive operation waits behind the running one: a second update is `busy` (u4-busy).
    // The queue itself (waiting by priority) is tested in router.test.ts and maintenance-queue.
    commands: { maxQueued: 0 },
    shutdownTimeoutMs: 10_000,
  };
  const r = makeOtaRoot({ releaseDir: releaseV1, version: '1.0.0', config });
  const wms = await mqttClient(broker.url, { clientId: `wms-${id}` });
  const got = await collect(wms, `edge/${id}/#`);
  const gw: Gateway = { id, r, g: startGuard(r, GUARD_ARGS), wms, got };
  running.push(gw);
  // Subscribed to its commands once it answers one (a command sent before that would be lost).
  for (let n = 1; ; n++) {
    send(gw, 'ping', { id: `ready-${n}` });
    try {
      await until(gw.g, () => res(gw, `ready-${n}`).length > 0, `the agent to answer ready-${n}`, 1000);
      break;
    } catch (err) {
      if (n >= 30 || !gw.g.running()) throw err;
    }
  }
  await online(gw, '1.0.0', 'A');
  return gw;
}

function send(gw: Gateway, op: string, payload: Record<string, unknown>): void {
  gw.wms.publish(`edge/${gw.id}/cmd/${op}`, JSON.stringify(payload), { qos: 1 });
}

const res = (gw: Gateway, id: string): Res[] => resOf(gw.got, gw.id, id);
const terminals = (gw: Gateway, id: string): string[] => terminalsOf(gw.got, gw.id, id);
const steps = (gw: Gateway, id: string): string[] => stepsOf(gw.got, gw.id, id);
const statuses = (gw: Gateway): ReturnType<typeof statusesOf> => statusesOf(gw.got, gw.id);

function dump(gw: Gateway, id: string): string {
  return `statuses of ${id}:\n${res(gw, id).map((p) => JSON.stringify(p)).join('\n')}\n--- guard and agent output ---\n${gw.g.tail()}`;
}

async function terminal(gw: Gateway, id: string, timeoutMs = 60_000): Promise<Res> {
  await until(gw.g, () => terminals(gw, id).length > 0, `a terminal status for ${id}`, timeoutMs);
  return res(gw, id).find((p) => TERMINAL.includes(p.status))!;
}

/** Exactly one distinct terminal status for every command the WMS heard of. */
function assertOneTerminalEach(gw: Gateway): void {
  for (const id of commandIds(gw.got, gw.id)) assert.equal(terminals(gw, id).length, 1, `command ${id} has terminal statuses ${JSON.stringify(terminals(gw, id))}\n${dump(gw, id)}`);
}

async function online(gw: Gateway, version: string, slot: SlotName, timeoutMs = 30_000): Promise<void> {
  const last = (): ReturnType<typeof statuses>[number] | undefined => statuses(gw).at(-1);
  const ok = (): boolean => last()?.state === 'online' && last()?.version === version && last()?.slot === slot;
  await until(gw.g, ok, () => `status online ${version} slot ${slot}; the last statuses: ${JSON.stringify(statuses(gw).slice(-5))}`, timeoutMs);
}

function slots(gw: Gateway): ReturnType<typeof loadSlots> {
  const s = loadSlots(gw.r.root);
  assert.deepEqual(checkInvariants(s), [], `slots.json: ${JSON.stringify(s)}`);
  return s;
}

function slotGivenBack(gw: Gateway, slot: SlotName): void {
  const s = slots(gw);
  assert.equal(s.slots[slot].state, 'empty', JSON.stringify(s));
  const dir = join(gw.r.root, 'slots', slot);
  assert.ok(!existsSync(dir) || readdirSync(dir).length === 0, `slot ${slot} still holds ${existsSync(dir) ? readdirSync(dir).join(', ') : ''}`);
}

const agentNow = (gw: Gateway): ReturnType<typeof agentStatus> => agentStatus(gw.r);

/** Waits for progress `step` (at `percent` or more, when given). */
async function stepSeen(gw: Gateway, id: string, step: string, percent?: number, timeoutMs = 60_000): Promise<void> {
  const seen = (): boolean => res(gw, id).some((p) => p.progress?.step === step && (percent === undefined || (p.progress.percent ?? -1) >= percent));
  await until(gw.g, seen, `step ${step}${percent === undefined ? '' : ` at ${percent} %`} of ${id}`, timeoutMs);
}

test('1. v1.0.0 (slot A) updates to v1.1.0 (slot B), then rolls back to A', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-update');
  send(gw, 'update', { id: 'u1', params: { url: server.url('v1.1.0.tar') } });
  const t = await terminal(gw, 'u1', 90_000);
  assert.equal(t.status, 'successful', dump(gw, 'u1'));
  assert.deepEqual(t.result, { fromVersion: '1.0.0', toVersion: '1.1.0', slot: 'B', rolledBack: false });
  assert.equal(res(gw, 'u1')[0]?.status, 'accepted');
  assert.deepEqual(steps(gw, 'u1'), ['download', 'verify', 'install', 'activate', 'health-check', 'commit'], dump(gw, 'u1'));
  await online(gw, '1.1.0', 'B');
  assert.ok(statuses(gw).some((s) => s.state === 'updating' && s.version === '1.0.0'), 'updating while v1 installs');
  assert.ok(statuses(gw).some((s) => s.state === 'updating' && s.version === '1.1.0'), 'updating while v2 is on trial');
  let s = slots(gw);
  assert.deepEqual([s.active, s.slots.B.state, s.slots.B.version, s.slots.A.state], ['B', 'committed', '1.1.0', 'committed']);
  // The slot keeps its signed manifest, for diag's check of the running release's files.
  const kept = join(gw.r.root, 'slots', 'B', SLOT_MANIFEST_DIR);
  assert.deepEqual(readdirSync(kept).sort(), ['manifest.json', 'manifest.sig', 'signer.pem']);
  assert.equal(JSON.parse(readFileSync(join(kept, 'manifest.json'), 'utf8')).version, '1.1.0');
  // The outcome is on ~/events too, for the WMS's event log.
  const events = (): { code: string; command: string; result?: unknown }[] =>
    gw.got.filter((m) => m.topic === `edge/${gw.id}/events`).map((m) => m.payload as { code: string; command: string; result?: unknown });
  await until(gw.g, () => events().some((e) => e.code === 'update-successful' && e.command === 'u1'), 'the update-successful event');
  assert.deepEqual(events().find((e) => e.code === 'update-successful')?.result, t.result);
  assert.equal((await agentNow(gw)).version, '1.1.0');

  send(gw, 'rollback', { id: 'rb1', params: {} });
  const rb = await terminal(gw, 'rb1');
  assert.equal(rb.status, 'successful', dump(gw, 'rb1'));
  assert.deepEqual(rb.result, { fromVersion: '1.1.0', toVersion: '1.0.0', slot: 'A', rolledBack: true });
  await online(gw, '1.0.0', 'A');
  s = slots(gw);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'committed']);
  assertOneTerminalEach(gw);
});

test('2. a release that exits at start is rolled back by the guard after 3 trial starts', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-exits');
  send(gw, 'update', { id: 'u2', params: { url: server.url('v1.2.0-exits.tar') } });
  const t = await terminal(gw, 'u2', 90_000);
  assert.equal(t.status, 'failed', dump(gw, 'u2'));
  assert.equal(t.reason?.code, 'rolled-back');
  assert.deepEqual(t.result, { fromVersion: '1.0.0', toVersion: '1.2.0', slot: 'A', rolledBack: true });
  assert.equal(gw.g.logged('spawned').filter((l) => l.slot === 'B').length, 3, gw.g.tail());
  assert.deepEqual(gw.g.logged('rolled-back').map((l) => [l.from, l.slot, l.reason]), [['B', 'A', 'trial-starts-exceeded']]);
  const s = slots(gw);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'bad']);
  await online(gw, '1.0.0', 'A');
  assert.equal((await agentNow(gw)).version, '1.0.0');
  assertOneTerminalEach(gw);
});

test('3. a release that never becomes healthy fails its health gate and rolls itself back', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-unhealthy');
  send(gw, 'update', { id: 'u3', params: { url: server.url('v1.3.0-unhealthy.tar') } });
  const t = await terminal(gw, 'u3', 90_000);
  assert.equal(t.status, 'failed', dump(gw, 'u3'));
  assert.equal(t.reason?.code, 'rolled-back');
  assert.match(t.reason?.message ?? '', /health gate/);
  assert.deepEqual(t.result, { fromVersion: '1.0.0', toVersion: '1.3.0', slot: 'A', rolledBack: true });
  const s = slots(gw);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'bad']);
  assert.match(s.slots.B.reason ?? '', /health gate failed/);
  // The release judged itself (fail-trial), once, well before the guard's trial timeout would have.
  assert.ok(s.history?.some((h) => h.event === 'fail-trial' && h.slot === 'B'), JSON.stringify(s.history));
  assert.equal(gw.g.logged('spawned').filter((l) => l.slot === 'B').length, 1, gw.g.tail());
  // The gate gave up at its timeout (ota.healthGate.timeoutMs), not later (the guard's trial timeout).
  const logAt = (msg: string): number => Date.parse(String(gw.g.lines.find((l): l is Record<string, unknown> => typeof l === 'object' && l.msg === msg && l.pid === bPid)?.time));
  const bPid = gw.g.logged('spawned').find((l) => l.slot === 'B')?.childPid;
  const gateMs = logAt('health gate failed: rolling back') - logAt('running on trial: health gate started');
  assert.ok(gateMs >= HEALTH_GATE.timeoutMs && gateMs < HEALTH_GATE.timeoutMs + 5000, `the gate failed after ${gateMs} ms\n${gw.g.tail()}`);
  await online(gw, '1.0.0', 'A');
  assert.ok(!statuses(gw).some((x) => x.state === 'online' && x.version === '1.3.0'), `the failed release announced itself online: ${JSON.stringify(statuses(gw))}`);
  assertOneTerminalEach(gw);
});

test('4. refusals activate nothing: untrusted signer, downgrade, cancel, bad params, busy', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-refuse');
  const before = slots(gw);

  send(gw, 'update', { id: 'u4-rogue', params: { url: server.url('v1.1.0-rogue.tar') } });
  let t = await terminal(gw, 'u4-rogue');
  assert.deepEqual([t.status, t.reason?.code], ['failed', 'signer-untrusted'], dump(gw, 'u4-rogue'));
  let s = slots(gw);
  assert.deepEqual([s.active, s.slots.A.state], ['A', 'committed']);
  assert.deepEqual(s.slots.B, before.slots.B, 'the inactive slot is as before');

  send(gw, 'update', { id: 'u4-down', params: { url: server.url('v0.9.0.tar') } });
  t = await terminal(gw, 'u4-down');
  assert.deepEqual([t.status, t.reason?.code], ['failed', 'downgrade'], dump(gw, 'u4-down'));
  s = slots(gw);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'empty']);

  send(gw, 'update', { id: 'u4-params', params: { sha256: 'ab'.repeat(32) } });
  t = await terminal(gw, 'u4-params');
  assert.deepEqual([t.status, t.reason?.code], ['rejected', 'invalid-params'], dump(gw, 'u4-params'));

  send(gw, 'update', { id: 'u4-slow', params: { url: server.url('v1.1.0.tar', true) } });
  await stepSeen(gw, 'u4-slow', 'install', 10); // files are being written into slot B
  assert.equal(slots(gw).slots.B.state, 'installing');
  send(gw, 'update', { id: 'u4-busy', params: { url: server.url('v1.1.0.tar') } });
  t = await terminal(gw, 'u4-busy');
  assert.deepEqual([t.status, t.reason?.code], ['rejected', 'busy'], dump(gw, 'u4-busy'));
  send(gw, 'cancel', { id: 'c4', params: { target: 'u4-slow' } });
  assert.equal((await terminal(gw, 'c4')).status, 'successful', dump(gw, 'c4'));
  t = await terminal(gw, 'u4-slow');
  assert.deepEqual([t.status, t.reason?.code], ['cancelled', 'cancelled'], dump(gw, 'u4-slow'));
  assert.match(t.reason?.message ?? '', /\bc4\b/, 'the reason names the cancel command (docs/errors.md)');
  assert.ok(!steps(gw, 'u4-slow').includes('activate'));
  slotGivenBack(gw, 'B');
  assert.equal(slots(gw).active, 'A');
  await online(gw, '1.0.0', 'A');
  assert.equal((await agentNow(gw)).slot, 'A');
  assertOneTerminalEach(gw);
});

test('5a. kill -9 of the agent during the download: restarted, the install goes on and the update succeeds', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-kill-dl');
  send(gw, 'update', { id: 'u5a', params: { url: server.url('v1.1.0.tar', true) } });
  await stepSeen(gw, 'u5a', 'install', 10);
  const victim = await agentNow(gw);
  assert.equal(victim.slot, 'A');
  process.kill(victim.pid, 'SIGKILL');
  const t = await terminal(gw, 'u5a', 120_000);
  assert.equal(t.status, 'successful', dump(gw, 'u5a'));
  assert.deepEqual(t.result, { fromVersion: '1.0.0', toVersion: '1.1.0', slot: 'B', rolledBack: false });
  await online(gw, '1.1.0', 'B');
  assert.notEqual((await agentNow(gw)).pid, victim.pid);
  assert.ok(gw.g.logged('child-exit').some((l) => l.slot === 'A' && l.signal === 'SIGKILL'), 'the guard saw its agent die and restarted it');
  const s = slots(gw);
  assert.deepEqual([s.active, s.slots.B.state, s.slots.A.state], ['B', 'committed', 'committed']);
  assertOneTerminalEach(gw);
});

test('5b. kill -9 of the new agent on trial before its commit: one terminal, a committed release runs', { timeout: 180_000 }, async () => {
  const gw = await gateway('gw-e2e-kill-trial');
  send(gw, 'update', { id: 'u5b', params: { url: server.url('v1.1.0.tar') } });
  await stepSeen(gw, 'u5b', 'health-check', undefined, 90_000);
  const victim = await agentNow(gw);
  assert.equal(victim.slot, 'B');
  process.kill(victim.pid, 'SIGKILL');
  const onTrial = loadSlots(gw.r.root).slots.B.state === 'trial'; // killed before its commit (nearly always)
  const t = await terminal(gw, 'u5b', 90_000);
  assert.ok(t.status === 'successful' || (t.status === 'failed' && t.reason?.code === 'rolled-back'), dump(gw, 'u5b'));
  const want = t.status === 'successful' ? { slot: 'B' as const, version: '1.1.0' } : { slot: 'A' as const, version: '1.0.0' };
  await online(gw, want.version, want.slot);
  const s = slots(gw);
  assert.deepEqual([s.active, s.slots[s.active].state], [want.slot, 'committed']);
  const now = await agentNow(gw);
  assert.deepEqual([now.slot, now.pid !== victim.pid], [want.slot, true]);
  if (onTrial) assert.ok(gw.g.logged('spawned').filter((l) => l.slot === 'B').length >= 2, 'the trial went on with another start');
  assertOneTerminalEach(gw);
});
