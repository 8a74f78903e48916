/**
 * A full disk during install, for real: the install root on a small tmpfs, a bundle whose
 * payload does not fit. The update fails with disk-full, the active slot is untouched, the
 * inactive one is empty again and its space is given back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, readFileSync, statfsSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createBundle } from '../../ota/bundle-writer.js';
import { Updater, type UpdateContext } from '../../ota/updater.js';
import { initSlots, loadSlots } from '../../ota/slots.js';
import { OtaError } from '../../ota/errors.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir } from '../helpers/util.js';

const work = tempDir('diskfull-');
const root = join(work, 'root');
let server: Server;
let url = '';
let mounted = false;

function free(): number {
  const s = statfsSync(root);
  return s.bavail * s.bsize;
}

function treeHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      h.update(n);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

before(async () => {
  mkdirSync(root, { recursive: true });
  // 24 MiB for the whole installation: slot A takes 4 MiB, the bundle's payload needs 30.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', root]);
  mounted = true;
  const a = join(root, 'slots', 'A');
  mkdirSync(join(a, 'dist'), { recursive: true });
  writeFileSync(join(a, 'package.json'), '{"name":"edge-agent","version":"1.0.0"}');
  writeFileSync(join(a, 'dist', 'blob'), randomBytes(4 << 20));
  initSlots(root, { version: '1.0.0' });

  const ca = createCa({ commonName: 'disk-full test CA' });
  const signer = issueCert(ca, { commonName: 'signer', kind: 'codeSigning' });
  writeFileSync(join(work, 'trust.pem'), ca.certPem);
  const rel = join(work, 'release');
  mkdirSync(join(rel, 'dist'), { recursive: true });
  writeFileSync(join(rel, 'package.json'), '{"name":"edge-agent","version":"1.1.0"}');
  for (let i = 0; i < 6; i++) writeFileSync(join(rel, 'dist', `part-${i}`), randomBytes(5 << 20));
  await createBundle({ inDir: rel, version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(work, 'b.tar') });
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': statSync(join(work, 'b.tar')).size });
    createReadStream(join(work, 'b.tar')).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/b.tar`;
});

after(() => {
  server?.close();
  if (mounted) execFileSync('umount', [root]);
});

test('a full disk during install: disk-full, the active slot untouched, the space given back', async () => {
  const activeBefore = treeHash(join(root, 'slots', 'A'));
  const freeBefore = free();
  const steps: string[] = [];
  const ctx: UpdateContext = {
    signal: new AbortController().signal,
    progress: (step) => {
      if (steps.at(-1) !== step) steps.push(step);
    },
    setCancellable: () => undefined,
    save: () => undefined,
  };
  const updater = new Updater({
    root,
    runningSlot: 'A',
    runningVersion: '1.0.0',
    deviceClass: 'wms-gateway',
    trustPath: join(work, 'trust.pem'),
    maxBundleBytes: 1 << 30,
    download: { idleTimeoutMs: 10_000, retries: 0 },
    backup: () => assert.fail('no backup: nothing is activated'),
    logger: silentLogger(),
  });
  await assert.rejects(updater.install('u-full', { url }, ctx), (e: unknown) => e instanceof OtaError && e.code === 'disk-full');
  assert.deepEqual(steps.slice(0, 3), ['download', 'verify', 'install'], 'it got as far as writing the slot');
  const s = loadSlots(root);
  assert.equal(s.active, 'A');
  assert.equal(s.slots.A.state, 'committed');
  assert.equal(s.slots.B.state, 'empty');
  assert.equal(treeHash(join(root, 'slots', 'A')), activeBefore, 'the active slot is untouched');
  assert.ok(!existsSync(join(root, 'slots', 'B')) || readdirSync(join(root, 'slots', 'B')).length === 0, 'the inactive slot is empty');
  // Everything the install wrote is gone again (slots.json may have grown by its history lines).
  assert.ok(free() >= freeBefore - 64 * 1024, `space given back: ${free()} free now, ${freeBefore} before`);
});
