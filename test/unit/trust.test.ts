/**
 * verifySignedManifest against certificates and signatures made by the real openssl command
 * line (test/fixtures/openssl-pki.ts), generated once for the file in a temp directory.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TrustError, verifySignedManifest, type TrustCode, type VerifyInput } from '../../certs/trust.js';
import { CA_EXT, SIGNER_EXT, genKey, issue, selfSigned, signWithOpenssl, type Issued } from '../fixtures/openssl-pki.js';
import { tempDir } from '../helpers/util.js';

const DAY = 24 * 3600 * 1000;
const MANIFEST = Buffer.from('{"format":1,"product":"edge-agent","version":"1.4.0"}\n');
const OTHER = Buffer.from('{"format":1,"product":"edge-agent","version":"6.6.6"}\n');
const LEAF = (eku: string, ku = 'digitalSignature'): string[] => ['basicConstraints=critical,CA:FALSE', `keyUsage=critical,${ku}`, `extendedKeyUsage=${eku}`];

let dir = '';
let manifestPath = '';
let otherPath = '';
const c: Record<string, Issued> = {};

function cert(name: string): Issued {
  const x = c[name];
  assert.ok(x, `fixture ${name} was not generated`);
  return x;
}

/** Input for `signer` signing MANIFEST, its PEM followed by `chain`, trusting the RSA root. */
function input(signer: string, over: Partial<VerifyInput> & { chain?: string[] } = {}): VerifyInput {
  const s = cert(signer);
  return {
    manifest: MANIFEST,
    signature: signWithOpenssl(dir, s, manifestPath),
    signerPem: [s.certPem, ...(over.chain ?? []).map((n) => cert(n).certPem)].join(''),
    trustPem: cert('root').certPem,
    ...over,
  };
}

function rejects(inp: VerifyInput, code: TrustCode, message?: RegExp): void {
  let err: unknown;
  try {
    verifySignedManifest(inp);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof TrustError, `expected TrustError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
}

before(() => {
  dir = tempDir('trust');
  manifestPath = join(dir, 'manifest.json');
  otherPath = join(dir, 'other.json');
  writeFileSync(manifestPath, MANIFEST);
  writeFileSync(otherPath, OTHER);
  const root = (c.root = selfSigned(dir, 'root'));
  c.mid = issue(dir, 'mid', root, { kind: 'ec', ext: CA_EXT });
  c.rsa = issue(dir, 'signer-rsa', root);
  c.ec = issue(dir, 'signer-ec', root, { kind: 'ec' });
  c.ed = issue(dir, 'signer-ed', root, { kind: 'ed25519' });
  c.chained = issue(dir, 'signer-chained', c.mid, { kind: 'ed25519' });
  c.otherRoot = selfSigned(dir, 'other-root', { kind: 'ec' });
  c.untrusted = issue(dir, 'signer-untrusted', c.otherRoot, { kind: 'ec' });
  c.expired = issue(dir, 'signer-expired', root, { kind: 'ec', days: -1 });
  c.shortRoot = selfSigned(dir, 'short-root', { kind: 'ec', days: 1 });
  c.underShort = issue(dir, 'signer-under-short-root', c.shortRoot, { kind: 'ec', days: 365 });
  c.server = issue(dir, 'signer-server', root, { kind: 'ec', ext: LEAF('serverAuth') });
  c.noDs = issue(dir, 'signer-no-ds', root, { ext: LEAF('codeSigning', 'keyEncipherment') });
  c.caSigner = issue(dir, 'signer-ca', root, { kind: 'ec', ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature,keyCertSign', 'extendedKeyUsage=codeSigning'] });
  c.bare = issue(dir, 'signer-no-extensions', root, { kind: 'ec', ext: [] });
  c.midNoCa = issue(dir, 'mid-no-ca', root, { kind: 'ec', ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,keyCertSign'] });
  c.underNoCa = issue(dir, 'signer-under-no-ca', c.midNoCa, { kind: 'ec' });
  c.midNoKcs = issue(dir, 'mid-no-keycertsign', root, { kind: 'ec', ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'] });
  c.underNoKcs = issue(dir, 'signer-under-no-keycertsign', c.midNoKcs, { kind: 'ec' });
  c.root0 = selfSigned(dir, 'root-pathlen0', { kind: 'ec', ext: ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign'] });
  c.mid0 = issue(dir, 'mid-under-pathlen0', c.root0, { kind: 'ec', ext: CA_EXT });
  c.underMid0 = issue(dir, 'signer-under-mid0', c.mid0, { kind: 'ec' });
  c.underRoot0 = issue(dir, 'signer-under-root0', c.root0, { kind: 'ec' });
  c.midTls = issue(dir, 'mid-tls-only', root, { kind: 'ec', ext: [...CA_EXT, 'extendedKeyUsage=serverAuth'] });
  c.underMidTls = issue(dir, 'signer-under-tls-mid', c.midTls, { kind: 'ec' });
  c.critical = issue(dir, 'signer-unknown-critical', root, { kind: 'ec', ext: [...SIGNER_EXT, '1.2.3.4=critical,ASN1:NULL'] });
  c.sha1 = issue(dir, 'signer-sha1', root, { kind: 'ec', digest: 'sha1' });
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('accepts what stock openssl signs', () => {
  for (const [name, keyType] of [['rsa', 'rsa'], ['ec', 'ec'], ['ed', 'ed25519']] as const) {
    test(`a ${keyType} signer directly under the root (openssl ${keyType === 'ed25519' ? 'pkeyutl -rawin' : 'dgst -sha256'})`, () => {
      const v = verifySignedManifest(input(name));
      assert.deepEqual(v.chain.map((s) => [s.subject, s.keyType]), [[`CN=${cert(name).name}`, keyType], ['CN=root', 'rsa']]);
    });
  }

  test('root -> intermediate -> signer, signer.pem holding the signer then the intermediate', () => {
    const v = verifySignedManifest(input('chained', { chain: ['mid'] }));
    assert.deepEqual(v.chain.map((s) => s.subject), ['CN=signer-chained', 'CN=mid', 'CN=root']);
    assert.equal(v.chain[1]?.issuer, 'CN=root');
  });

  test('intermediates in any order, with an unrelated certificate among them', () => {
    const v = verifySignedManifest(input('chained', { chain: ['otherRoot', 'mid'] }));
    assert.equal(v.chain.length, 3);
  });

  test('an intermediate pinned as the anchor ends the chain there', () => {
    const v = verifySignedManifest(input('chained', { chain: ['mid'], trustPem: cert('mid').certPem }));
    assert.deepEqual(v.chain.map((s) => s.subject), ['CN=signer-chained', 'CN=mid']);
  });

  test('a signer pinned as the anchor is a chain of one, still held to the signer rules', () => {
    assert.deepEqual(verifySignedManifest(input('rsa', { trustPem: cert('rsa').certPem })).chain.map((s) => s.subject), ['CN=signer-rsa']);
    rejects(input('server', { trustPem: cert('server').certPem }), 'signer-not-codesigning');
  });

  test('one of several anchors', () => {
    const v = verifySignedManifest(input('ec', { trustPem: cert('otherRoot').certPem + cert('root').certPem }));
    assert.equal(v.chain[1]?.subject, 'CN=root');
  });

  test('a pathlen:0 root may issue the signer directly', () => {
    assert.equal(verifySignedManifest(input('underRoot0', { trustPem: cert('root0').certPem })).chain.length, 2);
  });

  test('a v1 signer, without keyUsage, extendedKeyUsage or basicConstraints (only present extensions restrict)', () => {
    assert.equal(verifySignedManifest(input('bare')).chain.length, 2);
  });
});

describe('rejects, each with its own code', () => {
  test('a signature made by another key: signature-invalid', () => {
    rejects({ ...input('rsa'), signature: signWithOpenssl(dir, cert('ec'), manifestPath) }, 'signature-invalid', /signer-rsa/);
    rejects({ ...input('ed'), signature: signWithOpenssl(dir, cert('chained'), manifestPath) }, 'signature-invalid');
  });

  test('a signature over another manifest: signature-invalid', () => {
    for (const name of ['rsa', 'ec', 'ed']) {
      rejects({ ...input(name), signature: signWithOpenssl(dir, cert(name), otherPath) }, 'signature-invalid');
    }
  });

  test('a manifest changed by one byte, an empty or truncated signature: signature-invalid', () => {
    const ok = input('ec');
    const tampered = Buffer.from(MANIFEST.toString().replace('1.4.0', '1.4.1'));
    rejects({ ...ok, manifest: tampered }, 'signature-invalid');
    rejects({ ...ok, signature: Buffer.alloc(0) }, 'signature-invalid');
    rejects({ ...input('ed'), signature: input('ed').signature.subarray(0, 63) }, 'signature-invalid');
    rejects({ ...input('rsa'), signature: input('rsa').signature.subarray(1) }, 'signature-invalid');
  });

  test('a signer from a CA the device does not trust: signer-untrusted', () => {
    rejects(input('untrusted'), 'signer-untrusted', /CN=other-root/);
    // also with its CA shipped in signer.pem: a bundle cannot bring its own anchor
    rejects(input('untrusted', { chain: ['otherRoot'] }), 'signer-untrusted');
  });

  test('a chain whose intermediate is missing from signer.pem: signer-untrusted', () => {
    rejects(input('chained'), 'signer-untrusted');
  });

  // 16 certificates that issue each other make millions of paths without the search budget
  test('a signer.pem of made-up CAs that all issue each other is searched in bounded time', { timeout: 30_000 }, () => {
    const keyPath = genKey(dir, 'loop', 'ec');
    const loop = Array.from({ length: 16 }, (_, i) => selfSigned(dir, `loop-${i}`, { kind: 'ec', keyPath, subject: 'loop' }));
    const signer = issue(dir, 'signer-under-loop', loop[0]!, { kind: 'ec' });
    const inp: VerifyInput = { ...input('ec'), signerPem: signer.certPem + loop.map((l) => l.certPem).join('') };
    rejects(inp, 'signer-untrusted');
    rejects({ ...inp, signerPem: inp.signerPem + cert('mid').certPem }, 'chain-invalid', /at most 16/);
  });

  test('the chain is judged before the signature', () => {
    rejects({ ...input('untrusted'), signature: Buffer.from('nope') }, 'signer-untrusted');
  });

  test('a certificate that expired (openssl x509 -days -1): signer-expired', () => {
    rejects(input('expired'), 'signer-expired', /the signer \(CN=signer-expired\) expired/);
  });

  test('a valid chain checked at a time after the signer expires: signer-expired', () => {
    rejects(input('rsa', { now: new Date(Date.now() + 400 * DAY) }), 'signer-expired');
  });

  test('an expired anchor expires the chain even while the signer is valid', () => {
    rejects(input('underShort', { trustPem: cert('shortRoot').certPem, now: new Date(Date.now() + 30 * DAY) }), 'signer-expired', /trust anchor/);
  });

  test('a chain checked before the signer is valid: signer-not-yet-valid', () => {
    rejects(input('ec', { now: new Date('2000-01-01T00:00:00Z') }), 'signer-not-yet-valid', /not valid before/);
  });

  test('a signer for serverAuth only: signer-not-codesigning', () => {
    rejects(input('server'), 'signer-not-codesigning', /1\.3\.6\.1\.5\.5\.7\.3\.1/);
  });

  test('a signer whose keyUsage lacks digitalSignature: signer-not-codesigning', () => {
    rejects(input('noDs'), 'signer-not-codesigning', /digitalSignature/);
  });

  test('a CA certificate as the signer: signer-not-codesigning', () => {
    rejects(input('caSigner'), 'signer-not-codesigning', /CA certificate/);
  });

  test('an intermediate limited to serverAuth by its EKU: signer-not-codesigning', () => {
    rejects(input('underMidTls', { chain: ['midTls'] }), 'signer-not-codesigning', /mid-tls-only/);
  });

  test('an intermediate without cA: chain-invalid', () => {
    rejects(input('underNoCa', { chain: ['midNoCa'] }), 'chain-invalid', /not a CA/);
  });

  test('an intermediate whose keyUsage lacks keyCertSign: chain-invalid', () => {
    rejects(input('underNoKcs', { chain: ['midNoKcs'] }), 'chain-invalid', /keyCertSign/);
  });

  test('a pathlen:0 root with an intermediate below it: chain-invalid', () => {
    rejects(input('underMid0', { chain: ['mid0'], trustPem: cert('root0').certPem }), 'chain-invalid', /pathLenConstraint/);
  });

  test('an unknown critical extension: chain-invalid', () => {
    rejects(input('critical'), 'chain-invalid', /1\.2\.3\.4/);
  });

  test('a certificate signed with SHA-1: chain-invalid', () => {
    rejects(input('sha1'), 'chain-invalid', /1\.2\.840\.113549\.1\.1\.5/); // sha1WithRSAEncryption
  });

  test('garbage where PEM should be: chain-invalid', () => {
    const ok = input('ec');
    const badBlock = '-----BEGIN CERTIFICATE-----\nTUlJQmdhcmJhZ2U=\n-----END CERTIFICATE-----\n';
    rejects({ ...ok, signerPem: 'not a certificate' }, 'chain-invalid', /no PEM certificate/);
    rejects({ ...ok, signerPem: badBlock }, 'chain-invalid');
    rejects({ ...ok, signerPem: '-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n' }, 'chain-invalid', /base64/);
    rejects({ ...ok, signerPem: cert('ec').certPem.slice(0, 200) }, 'chain-invalid', /END line/);
    rejects({ ...ok, signerPem: ok.signerPem + cert('ec').keyPem }, 'chain-invalid', /PRIVATE KEY/);
    rejects({ ...ok, trustPem: '' }, 'chain-invalid');
    rejects({ ...ok, trustPem: badBlock }, 'chain-invalid');
  });
});
