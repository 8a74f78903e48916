/**
 * Crash injection through a whole update: the agent kills itself with SIGKILL (lib/fault.ts) at
 * each named point of ota/updater.ts and ota/trial-gate.ts, before and after every persisted
 * state change, once; the boot guard starts it again. After each, the gateway must run a
 * committed release, slots.json must hold its invariants, and the WMS must get exactly one
 * terminal status: the update goes on after the restart (a plain tar download resumes with
 * Range from the last checkpoint; a verified slot is activated) and ends `successful`, except
 * where the release itself fails its gate (`failed rolled-back`). The same again with delta
 * bundles of the same releases (CONTRACT.md section 4): the files unchanged since 1.0.0 are
 * copied from the running slot, also when the install resumes after a kill, and a kill while
 * they are being copied (install:base-half, delta only) resumes from the last checkpoint too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createBundle } from '../../ota/bundle-writer.js';
import { FAULT_POINTS, type FaultPoint } from '../../ota/updater.js';
import { checkInvariants, loadSlots } from '../../ota/slots.js';
import { SLOT_MANIFEST_DIR } from '../../ota/manifest.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { keepBundleHead, makeOtaRoot, makeRelease, patchFile, resOf, serveBundles, startGuard, statusesOf, terminalsOf, until, type BundleServer, type GuardRun, type OtaRoot } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';

const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

/** What each point must end in. `gate:failed` needs a release that fails its gate. */
const EXPECT: Record<FaultPoint, 'successful' | 'rolled-back'> = {
  'install:began': 'successful',
  'install:half': 'successful',
  'install:base-half': 'successful',
  'install:verified': 'successful',
  'activate:backed-up': 'successful',
  'activate:phase-saved': 'successful',
  'activate:switched': 'successful',
  'gate:before-commit': 'successful',
  'gate:committed': 'successful',
  'gate:failed': 'rolled-back',
};

let broker: Broker;
let server: BundleServer;
let work: string;
let releaseV1: string;
let trustPath: string;

before(async () => {
  broker = await startBroker();
  work = tempDir('ota-crash');
  const ca = createCa({ commonName: 'crash test CA' });
  const signer = issueCert(ca, { commonName: 'crash test signer', kind: 'codeSigning' });
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  releaseV1 = join(work, 'rel-1.0.0');
  makeRelease(releaseV1, '1.0.0');
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  // Slot A keeps the signed manifest of the bundle 1.0.0 came in: the deltas' base.
  const sign = { compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem };
  await createBundle({ ...sign, inDir: releaseV1, version: '1.0.0', out: join(bundles, 'base-1.0.0.tar') });
  await keepBundleHead(releaseV1, join(bundles, 'base-1.0.0.tar'));
  const deltaFrom = readFileSync(join(releaseV1, SLOT_MANIFEST_DIR, 'manifest.json'));
  const rel = join(work, 'rel-1.1.0');
  makeRelease(rel, '1.1.0', releaseV1);
  // Some bulk in many files, so that "half way through the install" lies past a checkpoint
  // (one every 4 MiB of bundle, at a member boundary).
  mkdirSync(join(rel, 'bulk'));
  for (let i = 0; i < 24; i++) writeFileSync(join(rel, 'bulk', `part-${i}.bin`), Buffer.alloc(512 * 1024, i));
  await createBundle({ inDir: rel, version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, 'good.tar') });
  await createBundle({ ...sign, inDir: rel, version: '1.1.0', out: join(bundles, 'delta-good.tar'), deltaFrom });
  // A release that never gets healthy, for gate:failed (as in ota-e2e test 3).
  const sick = join(work, 'rel-1.1.0-sick');
  makeRelease(sick, '1.1.0', releaseV1);
  patchFile(join(sick, 'dist', 'agent', 'wms-link.js'), /isConnected\(\) \{\s*return this\.connected;/, 'isConnected() {\n        return false;');
  await createBundle({ inDir: sick, version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, 'sick.tar') });
  await createBundle({ ...sign, inDir: sick, version: '1.1.0', out: join(bundles, 'delta-sick.tar'), deltaFrom });
  server = await serveBundles(bundles);
});

after(async () => {
  await server?.close();
  await broker?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

for (const kind of ['full', 'delta'] as const) {
  describe(kind === 'full' ? 'kill -9 at every step of an update' : 'kill -9 at every step of a delta update', () => {
    for (const point of FAULT_POINTS) {
      // A full bundle copies nothing from the running slot.
      if (kind === 'full' && point === 'install:base-half') continue;
      test(point, { timeout: 120_000 }, async () => {
        const id = `gw-crash-${kind === 'delta' ? 'delta-' : ''}${point.replace(/[^a-z]/g, '-')}`;
        const healthGate = point === 'gate:failed' ? { stableMs: 1000, timeoutMs: 3000 } : { stableMs: 1000, timeoutMs: 15_000 };
        const bundle = `${kind === 'delta' ? 'delta-' : ''}${point === 'gate:failed' ? 'sick.tar' : 'good.tar'}`;
        const r: OtaRoot = makeOtaRoot({
          releaseDir: releaseV1,
          version: '1.0.0',
          config: { gatewayId: id, mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } }, ota: { trustAnchors: trustPath, healthGate } },
        });
        const wms: MqttClient = await mqttClient(broker.url, { clientId: `wms-${id}` });
        const got: Received[] = await collect(wms, `edge/${id}/#`);
        const g: GuardRun = startGuard(r, GUARD_ARGS, { EDGE_AGENT_FAULT: point });
        try {
          await until(g, () => statusesOf(got, id).some((s) => s.state === 'online'), 'the agent online');
          // Subscribed once it answers: a command sent before its subscription would be lost.
          for (let n = 1; ; n++) {
            wms.publish(`edge/${id}/cmd/ping`, JSON.stringify({ id: `ready-${n}` }), { qos: 1 });
            const ok = await until(g, () => resOf(got, id, `ready-${n}`).length > 0, 'ready', 1000).then(() => true, () => false);
            if (ok) break;
            assert.ok(n < 30, 'the agent answers commands');
          }
          const rangesBefore = server.ranges.length;
          wms.publish(`edge/${id}/cmd/update`, JSON.stringify({ id: 'u', params: { url: server.url(bundle) } }), { qos: 1 });
          await until(g, () => terminalsOf(got, id, 'u').length > 0, `a terminal status for the update (crash at ${point})`, 90_000);
          assert.ok(existsSync(join(r.dataDir, `fault-${point.replace(/[^a-z0-9-]/gi, '_')}.done`)), `the crash at ${point} happened`);
          const t = resOf(got, id, 'u').find((p) => ['successful', 'failed', 'cancelled', 'rejected'].includes(p.status))!;
          const want = EXPECT[point];
          if (want === 'successful') assert.equal(t.status, 'successful', JSON.stringify(t));
          else assert.deepEqual([t.status, t.reason?.code], ['failed', want], JSON.stringify(t));

          // Settled: a committed release online, the invariants hold, one terminal status.
          const version = want === 'successful' ? '1.1.0' : '1.0.0';
          const slot = want === 'successful' ? 'B' : 'A';
          await until(g, () => statusesOf(got, id).at(-1)?.state === 'online' && statusesOf(got, id).at(-1)?.version === version, `online ${version}`);
          const s = loadSlots(r.root);
          assert.deepEqual(checkInvariants(s), [], JSON.stringify(s));
          assert.equal(s.active, slot);
          assert.equal(s.slots[slot].state, 'committed');
          if (point === 'install:half') {
            // Resumed where the checkpoint was, not downloaded again from the start.
            const mine = server.ranges.slice(rangesBefore);
            // Head probes first (bounded ranges: ota/head-probe.ts), then the whole bundle.
            const probes = mine.filter((x) => x !== undefined && /^bytes=\d+-\d+$/.test(x));
            assert.equal(probes[0], 'bytes=0-65535', `the head is probed first: ${JSON.stringify(mine)}`);
            const downloads = mine.filter((x) => !probes.includes(x as string));
            assert.equal(downloads[0], undefined, `the first download is for the whole bundle: ${JSON.stringify(mine)}`);
            assert.ok(downloads.slice(1).some((r) => r !== undefined && /^bytes=[1-9]\d*-$/.test(r)), `a Range request resumed the download: ${JSON.stringify(mine)}`);
          }
          assert.ok(!existsSync(join(r.root, 'resume-B.json')), 'no checkpoint left behind');
          // Give a duplicate terminal status the chance to show up, then count.
          wms.publish(`edge/${id}/cmd/ping`, JSON.stringify({ id: 'last' }), { qos: 1 });
          await until(g, () => resOf(got, id, 'last').length > 0, 'a last answer');
          assert.equal(terminalsOf(got, id, 'u').length, 1, `one terminal status: ${JSON.stringify(terminalsOf(got, id, 'u'))}`);
        } finally {
          await g.stop();
          await wms.endAsync(true);
          rmSync(r.root, { recursive: true, force: true });
        }
      });
    }
  });
}
