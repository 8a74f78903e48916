/**
 * The PLC bridge through agent updates, with the real boot guard and signed bundles:
 * - update 1.0.0 -> 1.1.0: the agent of 1.1.0 hands the bridge over to its own code (the bridge
 *   now runs from slot B), the update commits, and the WMS's data has no seq gap and no missed
 *   poll interval across the whole update;
 * - update to 1.2.0 whose bridge cannot start: the handover fails, the health gate waits for it
 *   and fails, the release is rolled back, and the 1.1.0 bridge kept running without a gap.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { makeOtaRoot, makeRelease, resOf, serveBundles, startGuard, TERMINAL, until, type BundleServer, type GuardRun, type OtaRoot } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';
import { bridgePing, writeBridgeConfig } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';

const GW = 'gw-plc-up';
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
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  sim = await startSimProcess(['--churn', '1']);
  const work = tempDir('plc-update');
  const ca = createCa({ commonName: 'plc update CA' });
  const signer = issueCert(ca, { commonName: 'plc update signer', kind: 'codeSigning' });
  const trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const v1 = join(work, 'rel-1.0.0');
  makeRelease(v1, '1.0.0');
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  makeRelease(join(work, 'rel-1.1.0'), '1.1.0', v1);
  await createBundle({ inDir: join(work, 'rel-1.1.0'), version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, 'v1.1.0.tar') });
  const broken = join(work, 'rel-1.2.0');
  makeRelease(broken, '1.2.0', v1);
  writeFileSync(join(broken, 'dist', 'plc-bridge', 'main.js'), "export async function runBridge() { process.stderr.write('this bridge is broken\\n'); return 1; }\n");
  await createBundle({ inDir: broken, version: '1.2.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, 'v1.2.0.tar') });
  server = await serveBundles(bundles);

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
    },
  });
  wms = await mqttClient(broker.url, { clientId: 'wms-plc-update' });
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

async function update(id: string, file: string): Promise<{ status: string; reason?: { code: string } }> {
  await until(g!, () => got.some((m) => m.topic === `${ROOT}/status` && (m.payload as { state: string }).state === 'online'), 'the agent online', 30_000);
  wms.publish(`${ROOT}/cmd/update`, JSON.stringify({ id, params: { url: server.url(file) } }), { qos: 1 });
  await until(g!, () => resOf(got, GW, id).some((p) => TERMINAL.includes(p.status)), `a terminal status for ${id}`, 120_000);
  return resOf(got, GW, id).find((p) => TERMINAL.includes(p.status))!;
}

test('an update hands the bridge over to the new release with no gap; a release whose bridge fails is rolled back', { timeout: 300_000 }, async () => {
  const first = await bridgePing(socket);
  assert.ok(first?.cli?.includes(`${sep}slots${sep}A${sep}`), `the bridge runs from slot A: ${first?.cli}`);

  const u1 = await update('plc-u1', 'v1.1.0.tar');
  assert.equal(u1.status, 'successful', JSON.stringify(u1));
  const second = await bridgePing(socket);
  assert.ok(second, 'a bridge answers after the update');
  assert.ok(second?.cli?.includes(`${sep}slots${sep}B${sep}`), `the bridge runs from slot B: ${JSON.stringify(second)}`);
  assert.equal(second.version, '1.1.0');
  assert.notEqual(second.pid, first!.pid);

  const u2 = await update('plc-u2', 'v1.2.0.tar');
  assert.equal(u2.status, 'failed', JSON.stringify(u2));
  assert.equal(u2.reason?.code, 'rolled-back');
  const third = await bridgePing(socket);
  assert.equal(third?.pid, second.pid, 'the 1.1.0 bridge kept the role');

  const fast = dataMessages(got, `${ROOT}/plc/plc0/fast`);
  const report = gapReport(fast, 100);
  assert.ok(fast.length > 100, `data messages: ${fast.length}`);
  assert.deepEqual(report.seqGaps, [], 'no seq gap through an update, a handover and a rollback');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
});
