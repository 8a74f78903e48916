/**
 * Update bundles end to end with the real tools: certificates and signatures from `openssl`
 * (RSA, ECDSA P-256, Ed25519), archives from GNU `tar` (plain and gzip), extraction by
 * ota/bundle-reader.ts; `edge-agent bundle create` output checked by GNU tar and by
 * `bundle verify`; the CLI's exit statuses and output. Attacks: bundle-attacks.test.ts; bit
 * flips and bombs: bundle-flips.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { OtaError } from '../../ota/errors.js';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { readBundle } from '../../ota/bundle-reader.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { tempDir } from '../helpers/util.js';
import { CLI } from '../helpers/agent.js';
import { issue, selfSigned } from '../fixtures/openssl-pki.js';
import { gnuTar, listPayload, makePayload, makePki, manifestJson, outcome, readFileBundle, stage, tree, workWith, type Pki } from '../fixtures/bundle-kit.js';

let root: string;
let pki: Pki;
let payload: string;

before(() => {
  root = tempDir('bundle');
  pki = makePki(join(root, 'pki'));
  payload = makePayload(join(root, 'src'));
});

after(() => rmSync(root, { recursive: true, force: true }));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A staged work dir signed by `kind`, and its GNU tar archive. */
function gnuBundle(name: string, kind: keyof Pki['signers'], gzip: boolean): string {
  const work = workWith(join(root, name), payload);
  stage(work, manifestJson(listPayload(join(work, 'payload'))), pki.signers[kind]);
  return gnuTar(work, join(work, gzip ? 'bundle.tgz' : 'bundle.tar'), { gzip });
}

for (const kind of ['rsa', 'ec', 'ed25519'] as const) {
  for (const gzip of [false, true]) {
    test(`a GNU tar${gzip ? ' -z' : ''} bundle signed by stock openssl (${kind}) is accepted and extracts to the same tree`, async () => {
      const file = gnuBundle(`ok-${kind}-${gzip}`, kind, gzip);
      const slot = join(root, `slot-${kind}-${gzip}`);
      const progress: number[] = [];
      const r = await readFileBundle(file, { trustPem: pki.ca.certPem, extractTo: slot, onProgress: (n) => progress.push(n) });
      assert.deepEqual(tree(slot), tree(payload));
      assert.equal(tree(slot)['bin/run']?.split(' ')[1], '755');
      assert.equal(r.files, 4);
      assert.equal(r.bytesOut, listPayload(payload).reduce((s, e) => s + ('size' in e ? e.size : 0), 0));
      assert.equal(r.bytesIn, readFileSync(file).length);
      assert.equal(progress.at(-1), r.bytesIn);
      assert.deepEqual(r.signer.chain.map((c) => c.subject), [`CN=signer-${kind}`, 'CN=root-ca']);
      assert.equal(r.manifest.version, '1.4.0');
      assert.deepEqual(r.manifestBytes, readFileSync(join(root, `ok-${kind}-${gzip}`, 'manifest.json')));
    });
  }
}

test('member names with a leading ./ are accepted; verify-only mode writes nothing', async () => {
  const work = workWith(join(root, 'dot'), payload);
  stage(work, manifestJson(listPayload(join(work, 'payload'))), pki.signers.ec);
  const file = gnuTar(work, join(work, 'b.tar'), { members: ['./manifest.json', './manifest.sig', './signer.pem', './payload'] });
  assert.match(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }), /^\.\/manifest\.json$/m);
  const r = await readFileBundle(file, { trustPem: pki.ca.certPem });
  assert.equal(r.files, 4);
});

test('checkManifest runs before the payload, and its error is what readBundle rejects with', async () => {
  const file = gnuBundle('policy', 'rsa', false);
  const slot = join(root, 'slot-policy');
  let seen = '';
  await assert.rejects(
    readFileBundle(file, {
      trustPem: pki.ca.certPem,
      extractTo: slot,
      checkManifest: (m) => {
        seen = m.version;
        throw new OtaError('incompatible', 'not for this device');
      },
    }),
    (err: unknown) => err instanceof OtaError && err.code === 'incompatible',
  );
  assert.equal(seen, '1.4.0');
  assert.equal(existsSync(slot), false, 'nothing may be extracted before the policy accepts the manifest');
});

test('the trust codes: untrusted signer, signature by another key, expired, not for code signing', async () => {
  const file = gnuBundle('trust', 'rsa', false);
  const otherCa = selfSigned(join(root, 'pki'), 'other-ca');
  assert.equal(await outcome(readFileBundle(file, { trustPem: otherCa.certPem })), 'signer-untrusted');
  assert.equal(await outcome(readFileBundle(file, { trustPem: pki.ca.certPem, now: new Date(Date.now() + 3 * 365 * 86400_000) })), 'signer-expired');

  const wrongKey = workWith(join(root, 'wrong-key'), payload);
  stage(wrongKey, manifestJson(listPayload(join(wrongKey, 'payload'))), pki.signers.ec, pki.signers.rsa.certPem);
  assert.equal(await outcome(readFileBundle(gnuTar(wrongKey, join(wrongKey, 'b.tar')), { trustPem: pki.ca.certPem })), 'signature-invalid');

  const server = issue(join(root, 'pki'), 'server', pki.ca, { kind: 'ec', ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth'] });
  const notCs = workWith(join(root, 'not-cs'), payload);
  stage(notCs, manifestJson(listPayload(join(notCs, 'payload'))), server);
  assert.equal(await outcome(readFileBundle(gnuTar(notCs, join(notCs, 'b.tar')), { trustPem: pki.ca.certPem })), 'signer-not-codesigning');
});

test('bundle create makes a bundle GNU tar lists and bundle verify accepts; verify and inspect report', async () => {
  const dir = join(root, 'cli');
  mkdirSync(dir);
  const cert = join(dir, 'signer.pem');
  const trust = join(dir, 'trust.pem');
  writeFileSync(cert, pki.signers.ec.certPem);
  writeFileSync(trust, pki.ca.certPem);
  const out = join(dir, 'release.tgz');
  const created = cli(['bundle', 'create', '--in', payload, '--version', '2.1.0', '--compatible', 'wms-gateway,lab', '--compatible', 'spare',
    '--key', pki.signers.ec.keyPath, '--cert', cert, '-o', out, '--gzip', '--requires', '>=1.0.0', '--security-version', '4']);
  assert.equal(created.status, 0, created.stderr);
  const listed = execFileSync('tar', ['-tzvf', out], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listed.slice(0, 3).map((l) => l.split(/\s+/).at(-1)), ['manifest.json', 'manifest.sig', 'signer.pem']);
  assert.ok(listed.some((l) => /^l.* payload\/bin\/main -> \.\.\/app\/main\.js$/.test(l)), listed.join('\n'));
  assert.ok(listed.some((l) => /^-rwxr-xr-x .* payload\/bin\/run$/.test(l)), listed.join('\n'));

  const ok = cli(['bundle', 'verify', out, '--trust', trust]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^OK: .* is a valid bundle/);
  assert.match(ok.stdout, /version +2\.1\.0/);
  const okJson = JSON.parse(cli(['bundle', 'verify', out, '--trust', trust, '--json']).stdout);
  assert.equal(okJson.ok, true);
  assert.deepEqual(okJson.manifest.compatible, ['wms-gateway', 'lab', 'spare']);
  assert.equal(okJson.manifest.securityVersion, 4);
  assert.equal(okJson.files, 4);

  const slot = join(root, 'slot-cli');
  await readFileBundle(out, { trustPem: pki.ca.certPem, extractTo: slot });
  assert.deepEqual(tree(slot), tree(payload));

  const untrusted = cli(['bundle', 'verify', out, '--trust', cert.replace('signer.pem', 'nope.pem')]);
  assert.equal(untrusted.status, 1);
  assert.match(untrusted.stderr, /^ENOENT: /);
  writeFileSync(join(dir, 'other.pem'), selfSigned(dir, 'other').certPem);
  const bad = cli(['bundle', 'verify', out, '--trust', join(dir, 'other.pem'), '--json']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^signer-untrusted: /);
  assert.deepEqual(Object.keys(JSON.parse(bad.stdout)), ['ok', 'code', 'message']);
  assert.equal(JSON.parse(bad.stdout).code, 'signer-untrusted');

  const inspect = cli(['bundle', 'inspect', out]);
  assert.equal(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, /NOT VERIFIED/);
  assert.match(inspect.stdout, /"version": "2\.1\.0"/);
  assert.match(inspect.stdout, /CN=signer-ec/);
  const inspectJson = JSON.parse(cli(['bundle', 'inspect', out, '--json']).stdout);
  assert.equal(inspectJson.verified, false);
  assert.equal(inspectJson.manifest.version, '2.1.0');
  assert.equal(inspectJson.signer[0].subject, 'CN=signer-ec');
});

test('bundle verify names the reason for a tampered file; usage errors exit 64; every form has --help', () => {
  const work = workWith(join(root, 'cli-bad'), payload);
  stage(work, manifestJson(listPayload(join(work, 'payload'))), pki.signers.rsa);
  writeFileSync(join(work, 'payload', 'app', 'main.js'), 'console.log("evil!!!!!!");\n');
  const file = gnuTar(work, join(work, 'b.tar'));
  writeFileSync(join(work, 'trust.pem'), pki.ca.certPem);
  const r = cli(['bundle', 'verify', file, '--trust', join(work, 'trust.pem')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^hash-mismatch: payload\/app\/main\.js/);

  for (const args of [['bundle', '--help'], ['bundle', 'create', '--help'], ['bundle', 'verify', '--help'], ['bundle', 'inspect', '-h']]) {
    const h = cli(args);
    assert.equal(h.status, 0, args.join(' '));
    assert.match(h.stdout, /edge-agent bundle create --in DIR/);
  }
  assert.equal(cli(['bundle', 'explode']).status, 64);
  assert.equal(cli(['bundle']).status, 64);
  assert.equal(cli(['bundle', 'verify', file]).status, 64);
  assert.equal(cli(['bundle', 'inspect', file, '--gzip']).status, 64);
  assert.equal(cli(['bundle', 'create', '--in', payload]).status, 64);
  assert.match(cli(['--help']).stdout, /bundle +make, verify or inspect/);
});

test('an abort stops a stalled read and destroys the source; maxBundleBytes bounds the input', async () => {
  const bytes = readFileSync(gnuBundle('abort', 'rsa', false));
  const source = new Readable({ read: () => undefined }); // delivers 20 kB, then hangs like a stuck download
  source.push(bytes.subarray(0, 20_000));
  const ac = new AbortController();
  const reason = new Error('cancelled by the operator');
  const reading = readBundle(source, { trustPem: pki.ca.certPem, signal: ac.signal, onProgress: (n) => n >= 20_000 && setImmediate(() => ac.abort(reason)) });
  await assert.rejects(reading, (err) => err === reason);
  assert.equal(source.destroyed, true);
  assert.equal(await outcome(readBundle(Readable.from([bytes]), { trustPem: pki.ca.certPem, maxBundleBytes: bytes.length - 1 })), 'too-large');
  assert.equal(await outcome(readBundle(Readable.from([bytes]), { trustPem: pki.ca.certPem, maxBundleBytes: bytes.length })), 'ok');
});

test('createBundle: same input, same bytes; hard links become files; FIFOs, escaping symlinks and a foreign key fail and leave nothing', async () => {
  const src = workWith(join(root, 'writer', 'src'), payload);
  linkSync(join(src, 'payload', 'app', 'main.js'), join(src, 'payload', 'app', 'same.js'));
  const signer = pki.signers.ed25519;
  const base = { inDir: join(src, 'payload'), version: '3.0.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, now: new Date('2026-11-22T10:00:00Z') };
  const a = join(root, 'writer', 'a.tar');
  const b = join(root, 'writer', 'b.tar');
  await createBundle({ ...base, out: a });
  await createBundle({ ...base, out: b });
  assert.deepEqual(readFileSync(a), readFileSync(b));
  const slot = join(root, 'writer', 'slot');
  await readFileBundle(a, { trustPem: pki.ca.certPem, extractTo: slot });
  assert.deepEqual(tree(slot), tree(join(src, 'payload')));

  const failing = async (prepare: () => void, code: string, over: Partial<typeof base> = {}): Promise<void> => {
    prepare();
    const out = join(root, 'writer', `${code}.tar`);
    assert.equal(await outcome(createBundle({ ...base, ...over, out })), code);
    assert.deepEqual(readdirSync(join(root, 'writer')).filter((n) => n.endsWith('.tmp') || n === `${code}.tar`), []);
  };
  await failing(() => undefined, 'signature-invalid', { keyPem: pki.signers.rsa.keyPem });
  await failing(() => symlinkSync('../../../etc/passwd', join(src, 'payload', 'app', 'passwd')), 'symlink-invalid');
  rmSync(join(src, 'payload', 'app', 'passwd'));
  await failing(() => execFileSync('mkfifo', [join(src, 'payload', 'app', 'fifo')]), 'unsafe-member-type');
});
