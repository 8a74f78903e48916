/**
 * Delta bundles (CONTRACT.md section 4), black-box: releases made from this build, a full 1.1.0
 * bundle whose signed manifest slot A keeps, and a 1.1.1 where one source file changed, made into
 * a delta by the real CLI (`bundle create --delta-from`). Stock GNU tar and openssl read it; the
 * real Updater installs it from a local HTTP server that counts the bytes it sends; the real
 * boot guard and agent commit it. Refusals leave nothing in the slot.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { readBundleHead } from '../../ota/bundle-input.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { SLOT_MANIFEST_DIR, type Manifest } from '../../ota/manifest.js';
import { initSlots, loadSlots } from '../../ota/slots.js';
import { Updater, type UpdateContext } from '../../ota/updater.js';
import { errorCode } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { runCli } from '../helpers/agent.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { keepBundleHead, makeOtaRoot, makeRelease, resOf, serveBundles, startGuard, statusesOf, terminalsOf, until, type BundleServer } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir } from '../helpers/util.js';
import { tree } from '../fixtures/bundle-kit.js';

let work: string;
let server: BundleServer;
let broker: Broker;
let trustPath: string;
let rel110: string;
let rel111: string;
const bundles = (name: string): string => join(work, 'bundles', name);
const CHANGED = 'dist/agent/cli/status.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const manifestOf = async (bundle: string): Promise<{ bytes: Buffer; m: Manifest }> => {
  const bytes = (await readBundleHead(createReadStream(bundle))).manifestBytes;
  return { bytes, m: JSON.parse(bytes.toString('utf8')) as Manifest };
};

before(async () => {
  work = tempDir('delta');
  mkdirSync(join(work, 'bundles'));
  const ca = createCa({ commonName: 'delta test CA' });
  const signer = issueCert(ca, { commonName: 'delta test signer', kind: 'codeSigning' });
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  writeFileSync(join(work, 'signer.key'), signer.keyPem);
  writeFileSync(join(work, 'signer.pem'), signer.certPem);
  const sign = { compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem };
  rel110 = join(work, 'rel-1.1.0');
  makeRelease(rel110, '1.1.0');
  await createBundle({ ...sign, inDir: rel110, version: '1.1.0', out: bundles('full-1.1.0.tar'), now: new Date('2026-12-01T10:00:00Z') });
  // Another build of 1.1.0 (same files, another manifest): the base a delta must not accept.
  await createBundle({ ...sign, inDir: rel110, version: '1.1.0', out: bundles('other-1.1.0.tar'), now: new Date('2026-12-02T10:00:00Z') });
  await keepBundleHead(rel110, bundles('full-1.1.0.tar'));
  rel111 = join(work, 'rel-1.1.1');
  makeRelease(rel111, '1.1.1', rel110);
  writeFileSync(join(rel111, CHANGED), readFileSync(join(rel111, CHANGED), 'utf8') + '// 1.1.1: a patch\n');
  await createBundle({ ...sign, inDir: rel111, version: '1.1.1', out: bundles('full-1.1.1.tar') });
  const create = (out: string, from: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    runCli(['bundle', 'create', '--in', rel111, '--version', '1.1.1', '--compatible', 'wms-gateway', '--key', join(work, 'signer.key'), '--cert', join(work, 'signer.pem'), '-o', out, '--delta-from', from]);
  for (const [out, from] of [
    [bundles('delta.tar'), bundles('full-1.1.0.tar')],
    [bundles('delta-from-dir.tar'), rel110],
    [bundles('delta-other.tar'), bundles('other-1.1.0.tar')],
  ] as const) {
    const r = await create(out, from);
    assert.equal(r.code, 0, r.stderr);
  }
  server = await serveBundles(join(work, 'bundles'));
  broker = await startBroker();
});

after(async () => {
  await server?.close();
  await broker?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a delta is format 1 that stock GNU tar and openssl read: every file listed, only the changed ones carried', async () => {
  const x = join(work, 'x');
  mkdirSync(x);
  execFileSync('tar', ['-xf', bundles('delta.tar'), '-C', x]);
  const members = execFileSync('tar', ['-tf', bundles('delta.tar')], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(members.slice(0, 3), ['manifest.json', 'manifest.sig', 'signer.pem']);
  const payloadFiles = members.filter((m) => m.startsWith('payload/') && !m.endsWith('/'));
  assert.deepEqual(payloadFiles.sort(), [`payload/${CHANGED}`, 'payload/package.json']);
  execFileSync('openssl', ['x509', '-in', join(x, 'signer.pem'), '-pubkey', '-noout', '-out', join(x, 'pub.pem')]);
  const ok = execFileSync('openssl', ['dgst', '-sha256', '-verify', join(x, 'pub.pem'), '-signature', join(x, 'manifest.sig'), join(x, 'manifest.json')], { encoding: 'utf8' });
  assert.match(ok, /Verified OK/);

  const delta = (await manifestOf(bundles('delta.tar'))).m;
  const full = (await manifestOf(bundles('full-1.1.1.tar'))).m;
  const base = await manifestOf(bundles('full-1.1.0.tar'));
  assert.deepEqual(delta.delta, { baseVersion: '1.1.0', baseManifestSha256: sha(base.bytes) });
  // The same files as the full bundle, with the same hashes; only the source differs.
  const strip = (m: Manifest): unknown[] => m.files.map((f) => (f.type === 'file' ? { ...f, source: undefined } : f));
  assert.deepEqual(strip(delta), strip(full));
  const carried = delta.files.filter((f) => f.type === 'file' && f.source !== 'base').map((f) => f.path);
  assert.deepEqual(carried.sort(), [CHANGED, 'package.json']);
  // Made from the release directory (its kept manifest), the delta names the same base.
  assert.deepEqual((await manifestOf(bundles('delta-from-dir.tar'))).m.delta, delta.delta);
  const v = await runCli(['bundle', 'verify', bundles('delta.tar'), '--trust', trustPath, '--base', rel110]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /delta\s+from 1\.1\.0 .*checked against/);
  assert.ok(statSync(bundles('delta.tar')).size * 20 < statSync(bundles('full-1.1.1.tar')).size, 'the delta is under 5 % of the full bundle');
});

interface Root {
  root: string;
  updater: Updater;
}

function root(name: string): Root {
  const r = join(work, name);
  cpSync(rel110, join(r, 'slots', 'A'), { recursive: true });
  initSlots(r, { version: '1.1.0' });
  const updater = new Updater({
    root: r,
    runningSlot: 'A',
    runningVersion: '1.1.0',
    deviceClass: 'wms-gateway',
    trustPath,
    maxBundleBytes: 256 * 1024 * 1024,
    download: { idleTimeoutMs: 5000, retries: 2 },
    backup: () => undefined,
    logger: silentLogger(),
  });
  return { root: r, updater };
}

const ctx = (): UpdateContext => ({ signal: new AbortController().signal, progress: () => undefined, setCancellable: () => undefined, save: () => undefined });

async function refusal(r: Root, name: string): Promise<string> {
  try {
    await r.updater.install(`u-${name}`, { url: server.url(name) }, ctx());
  } catch (err) {
    return errorCode(err) ?? String(err);
  }
  return 'installed';
}

/** Nothing of a refused bundle is left: slot B empty (or never begun), slot A committed and as it was. */
function slotFree(r: Root): void {
  const s = loadSlots(r.root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state], ['A', 'committed', 'empty'], JSON.stringify(s));
  const b = join(r.root, 'slots', 'B');
  assert.ok(!existsSync(b) || readdirSync(b).length === 0, `slot B holds ${existsSync(b) ? readdirSync(b).join(', ') : ''}`);
}

test('the Updater installs a delta: unchanged files copied from the running slot, the rest downloaded', async () => {
  const r = root('install');
  const before = server.sent('delta.tar');
  await r.updater.install('u-1', { url: server.url('delta.tar') }, ctx());
  const sent = server.sent('delta.tar') - before;
  const b = join(r.root, 'slots', 'B');
  const got = tree(b);
  const want = tree(rel111);
  delete got[`${SLOT_MANIFEST_DIR}/manifest.json`];
  delete got[`${SLOT_MANIFEST_DIR}/manifest.sig`];
  delete got[`${SLOT_MANIFEST_DIR}/signer.pem`];
  delete got[SLOT_MANIFEST_DIR];
  assert.deepEqual(got, want, 'slot B holds exactly release 1.1.1');
  assert.equal(statSync(join(b, 'dist/agent/cli/index.js')).mode & 0o777, statSync(join(rel111, 'dist/agent/cli/index.js')).mode & 0o755);
  assert.equal(loadSlots(r.root).slots.B.verified, true);
  // The head probe and the delta, nothing more; far below the full bundle.
  // The delta, and its head once more for the probe (ota/head-probe.ts).
  const head = (await manifestOf(bundles('delta.tar'))).bytes.length;
  assert.ok(sent <= statSync(bundles('delta.tar')).size + head + 64 * 1024, `sent ${sent}`);
  // This fixture has no node_modules and no runtime, so its manifest weighs more than in a real
  // release (bench/ measures that); the delta is still a small part of the full bundle.
  assert.ok(sent * 10 < statSync(bundles('full-1.1.1.tar')).size, `sent ${sent} of a full ${statSync(bundles('full-1.1.1.tar')).size}`);
});

test('a delta for another base is refused delta-base-mismatch after its head only; nothing is left in the slot', async () => {
  const r = root('other-base');
  const headBytes = (await manifestOf(bundles('delta-other.tar'))).bytes.length;
  const from = server.ranges.length;
  assert.equal(await refusal(r, 'delta-other.tar'), 'delta-base-mismatch');
  // Bounded ranges for the head (manifest.json lists every file of the release), never the payload.
  const asked = server.ranges.slice(from);
  assert.ok(asked.length > 0 && asked.every((x) => x !== undefined && /^bytes=\d+-\d+$/.test(x)), `only the head was asked for: ${JSON.stringify(asked)}`);
  assert.ok(server.sent('delta-other.tar') <= headBytes + 64 * 1024, `sent ${server.sent('delta-other.tar')}, the head is ${headBytes}`);
  assert.ok(server.sent('delta-other.tar') * 10 < statSync(bundles('full-1.1.1.tar')).size, 'almost nothing of a full bundle');
  slotFree(r);
  // A running release that keeps no signed manifest cannot be a delta's base either.
  rmSync(join(r.root, 'slots', 'A', SLOT_MANIFEST_DIR), { recursive: true });
  assert.equal(await refusal(r, 'delta.tar'), 'delta-base-mismatch');
  slotFree(r);
});

test('a delta whose payload or manifest was tampered with is refused like any bundle', async () => {
  const good = readFileSync(bundles('delta.tar'));
  // A byte of the changed file's content, and a byte of the manifest (its base hash).
  const atPayload = good.indexOf(Buffer.from('// 1.1.1: a patch'));
  const payload = Buffer.from(good);
  payload[atPayload + 3] = 'X'.charCodeAt(0);
  writeFileSync(bundles('tampered-payload.tar'), payload);
  const manifest = Buffer.from(good);
  const atBase = manifest.indexOf(Buffer.from('"baseManifestSha256": "')) + '"baseManifestSha256": "'.length;
  manifest[atBase] = manifest[atBase] === 0x30 ? 0x31 : 0x30;
  writeFileSync(bundles('tampered-manifest.tar'), manifest);
  const r = root('tampered');
  assert.equal(await refusal(r, 'tampered-payload.tar'), 'hash-mismatch');
  slotFree(r);
  assert.equal(await refusal(r, 'tampered-manifest.tar'), 'signature-invalid');
  slotFree(r);
});

test('a running-slot file that no longer matches its hash fails the install cleanly; it is never installed', async () => {
  const r = root('modified');
  const victim = join(r.root, 'slots', 'A', 'dist', 'agent', 'main.js');
  const text = readFileSync(victim, 'utf8');
  const evil = text.replace(/.$/s, text.endsWith('X') ? 'Y' : 'X'); // same size, one byte changed
  writeFileSync(victim, evil);
  assert.equal(await refusal(r, 'delta.tar'), 'delta-base-modified');
  slotFree(r);
  // A symlink in a file's place is not followed, even to the right content.
  writeFileSync(victim, text);
  writeFileSync(join(r.root, 'elsewhere.js'), text);
  rmSync(victim);
  symlinkSync(join(r.root, 'elsewhere.js'), victim);
  assert.equal(await refusal(r, 'delta.tar'), 'delta-base-modified');
  slotFree(r);
});

test('a delta update end to end: the real agent installs it, its gate commits it, the server counts the bytes', { timeout: 120_000 }, async () => {
  const id = 'gw-delta-e2e';
  const r = makeOtaRoot({
    releaseDir: rel110,
    version: '1.1.0',
    config: { gatewayId: id, mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } }, ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 15_000 } } },
  });
  const wms: MqttClient = await mqttClient(broker.url, { clientId: `wms-${id}` });
  const got = await collect(wms, `edge/${id}/#`);
  const g = startGuard(r, ['--max-trial-starts', '3', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100']);
  try {
    await until(g, () => statusesOf(got, id).some((s) => s.state === 'online'), 'the agent online');
    for (let n = 1; ; n++) {
      wms.publish(`edge/${id}/cmd/ping`, JSON.stringify({ id: `ready-${n}` }), { qos: 1 });
      if (await until(g, () => resOf(got, id, `ready-${n}`).length > 0, 'ready', 1000).then(() => true, () => false)) break;
      assert.ok(n < 30, 'the agent answers commands');
    }
    const before = server.sent('delta.tar');
    wms.publish(`edge/${id}/cmd/update`, JSON.stringify({ id: 'u', params: { url: server.url('delta.tar') } }), { qos: 1 });
    await until(g, () => terminalsOf(got, id, 'u').length > 0, 'a terminal status for the update', 90_000);
    const t = resOf(got, id, 'u').at(-1)!;
    assert.equal(t.status, 'successful', JSON.stringify(t));
    await until(g, () => statusesOf(got, id).at(-1)?.version === '1.1.1', 'online 1.1.1');
    const s = loadSlots(r.root);
    assert.deepEqual([s.active, s.slots.B.state, s.slots.B.version], ['B', 'committed', '1.1.1']);
    const sent = server.sent('delta.tar') - before;
    // The delta, and its head once more for the probe (ota/head-probe.ts).
  const head = (await manifestOf(bundles('delta.tar'))).bytes.length;
  assert.ok(sent <= statSync(bundles('delta.tar')).size + head + 64 * 1024, `sent ${sent}`);
    // This fixture has no node_modules and no runtime, so its manifest weighs more than in a real
  // release (bench/ measures that); the delta is still a small part of the full bundle.
  assert.ok(sent * 10 < statSync(bundles('full-1.1.1.tar')).size, `sent ${sent} of a full ${statSync(bundles('full-1.1.1.tar')).size}`);
    assert.equal(readFileSync(join(r.root, 'slots', 'B', CHANGED), 'utf8'), readFileSync(join(rel111, CHANGED), 'utf8'));
  } finally {
    await g.stop();
    await wms.endAsync(true);
    rmSync(r.root, { recursive: true, force: true });
  }
});


