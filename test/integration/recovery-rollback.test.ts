/**
 * Escalation up to a release rollback, with the real boot guard: release 1.3.0 passes its health
 * gate and commits, then its PLC bridge starts crashing (each of its processes exits after a few
 * seconds). The watchdog restarts it, then (the crash loop began after the activation) rolls the
 * release back: the agent runs 1.0.0 from slot A again, hands the bridge back to 1.0.0's code,
 * and the bridge stays up. Every step is an event on ~/events.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { loadSlots } from '../../ota/slots.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { makeOtaRoot, makeRelease, resOf, serveBundles, startGuard, TERMINAL, until, type BundleServer, type GuardRun, type OtaRoot } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';
import { bridgePing, writeBridgeConfig } from '../helpers/bridge.js';

const GW = 'gw-rollback';
const ROOT = `edge/${GW}`;
const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '60000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

let broker: Broker;
let server: BundleServer;
let sim: SimProcess;
let wms: MqttClient;
let r: OtaRoot;
let g: GuardRun | undefined;
let socket = '';
let got: Received[] = [];

before(async () => {
  broker = await startBroker();
  sim = await startSimProcess(['--churn', '1']);
  const work = tempDir('recovery-rollback');
  const ca = createCa({ commonName: 'rollback CA' });
  const signer = issueCert(ca, { commonName: 'rollback signer', kind: 'codeSigning' });
  const trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const v1 = join(work, 'rel-1.0.0');
  makeRelease(v1, '1.0.0');
  const bad = join(work, 'rel-1.3.0');
  makeRelease(bad, '1.3.0', v1);
  // Only the bridge process loads plc-bridge/main.js: each one of this release dies after 5 s,
  // long after the handover and the health gate.
  appendFileSync(join(bad, 'dist', 'plc-bridge', 'main.js'), '\nsetTimeout(() => process.exit(3), 5000).unref();\n');
  mkdirSync(join(work, 'bundles'));
  await createBundle({ inDir: bad, version: '1.3.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(work, 'bundles', 'v1.3.0.tar') });
  server = await serveBundles(join(work, 'bundles'));
  const bridgeConfig = writeBridgeConfig(join(work, 'bridge'), {
    gatewayId: GW,
    mqtt: { url: broker.url },
    handover: { timeoutMs: 10_000 },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 500, groups: [{ name: 'fast', intervalMs: 100, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  socket = join(work, 'bridge', 'data', 'plc-bridge.sock');
  r = makeOtaRoot({
    releaseDir: v1,
    version: '1.0.0',
    config: {
      gatewayId: GW,
      mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } },
      ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 25_000 }, download: { idleTimeoutMs: 10_000, retries: 2 } },
      plcBridge: { config: bridgeConfig, launch: 'auto' },
      recovery: { backoff: { initialMs: 100, maxMs: 500 }, escalation: { restoreConfigAfter: 1, rollbackAfter: 2, slowRetryAfter: 10 }, plcBridge: { intervalMs: 500, deadlineMs: 2000 } },
    },
  });
  wms = await mqttClient(broker.url, { clientId: 'wms-rollback' });
  got = await collect(wms, `${ROOT}/#`);
  g = startGuard(r, GUARD_ARGS);
  await until(g, async () => (await bridgePing(socket))?.role === 'active', 'the agent to start the bridge', 30_000);
});

after(async () => {
  await g?.stop();
  const p = socket ? await bridgePing(socket) : undefined;
  if (p) process.kill(p.pid, 'SIGKILL');
  await wms?.endAsync();
  await server?.close();
  await sim?.stop();
  await broker?.stop();
});

test('a crash loop that begins after an activation escalates to a rollback of the release', { timeout: 240_000 }, async () => {
  await until(g!, () => got.some((m) => m.topic === `${ROOT}/status` && (m.payload as { state: string }).state === 'online'), 'the agent online', 30_000);
  wms.publish(`${ROOT}/cmd/update`, JSON.stringify({ id: 'rb-u3', params: { url: server.url('v1.3.0.tar') } }), { qos: 1 });
  await until(g!, () => resOf(got, GW, 'rb-u3').some((p) => TERMINAL.includes(p.status)), 'the update to commit', 120_000);
  assert.equal(resOf(got, GW, 'rb-u3').find((p) => TERMINAL.includes(p.status))?.status, 'successful', 'the release passed its gate before its bridge began to crash');

  const online = (version: string, slot: string): boolean =>
    got.some((m) => m.topic === `${ROOT}/status` && (m.payload as { state: string; version: string; slot: string }).state === 'online' && (m.payload as { version: string }).version === version && (m.payload as { slot: string }).slot === slot);
  await until(g!, () => online('1.3.0', 'B'), '1.3.0 online in slot B', 30_000);
  const sinceUpdate = got.length;
  await until(g!, () => online('1.0.0', 'A') && got.slice(sinceUpdate).some((m) => m.topic === `${ROOT}/status` && (m.payload as { version: string }).version === '1.0.0'), 'the rollback to 1.0.0 in slot A', 120_000);
  const s = loadSlots(r.root);
  assert.equal(s.active, 'A');

  const events = got.filter((m) => m.topic === `${ROOT}/events`).map((m) => m.payload as { code: string; component?: string; action?: string; message: string });
  const bridgeEvents = events.filter((e) => e.component === 'plc-bridge').map((e) => `${e.code}:${e.action ?? ''}`);
  assert.ok(bridgeEvents.some((e) => /rollback/.test(e)), `a rollback escalation event: ${JSON.stringify(bridgeEvents)}`);

  // The 1.0.0 agent hands the bridge back to its own code, which stays up.
  await until(g!, async () => (await bridgePing(socket))?.cli?.includes(`${sep}slots${sep}A${sep}`) === true, 'the bridge back on slot A code', 60_000);
  const p = await bridgePing(socket);
  await new Promise((res) => setTimeout(res, 7000));
  assert.equal((await bridgePing(socket))?.pid, p?.pid, 'the 1.0.0 bridge keeps running');
});
