/**
 * signManifest (what `bundle create` uses), checkKeyMatchesCert and summarizePem, against keys
 * and certificates made by the real openssl command line; signatures are checked both ways.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TrustError, checkKeyMatchesCert, signManifest, summarizePem, verifySignedManifest } from '../../certs/trust.js';
import { CA_EXT, issue, opensslVerifies, selfSigned, signWithOpenssl, type Issued } from '../fixtures/openssl-pki.js';
import { tempDir } from '../helpers/util.js';

const MANIFEST = Buffer.from('{"format":1,"product":"edge-agent","version":"2.0.0","files":[]}');

let dir = '';
let manifestPath = '';
let root: Issued;
let mid: Issued;
const signers: Issued[] = [];

before(() => {
  dir = tempDir('trust-sign');
  manifestPath = join(dir, 'manifest.json');
  writeFileSync(manifestPath, MANIFEST);
  root = selfSigned(dir, 'root', { kind: 'ec' });
  mid = issue(dir, 'mid', root, { kind: 'ed25519', ext: CA_EXT });
  for (const kind of ['rsa', 'ec', 'ed25519'] as const) signers.push(issue(dir, `signer-${kind}`, mid, { kind }));
});

after(() => rmSync(dir, { recursive: true, force: true }));

function isTrustError(code: string): (err: unknown) => boolean {
  return (err) => err instanceof TrustError && err.code === code;
}

describe('signManifest', () => {
  test('for each key type, the device accepts it and stock openssl verifies it', () => {
    for (const s of signers) {
      const signature = signManifest(MANIFEST, s.keyPem);
      const v = verifySignedManifest({ manifest: MANIFEST, signature, signerPem: s.certPem + mid.certPem, trustPem: root.certPem });
      assert.deepEqual(v.chain.map((c) => c.subject), [`CN=${s.name}`, 'CN=mid', 'CN=root']);
      assert.equal(opensslVerifies(dir, s, manifestPath, signature), true, `openssl rejects the ${s.kind} signature`);
      assert.equal(opensslVerifies(dir, s, manifestPath, signManifest(Buffer.from('other'), s.keyPem)), false);
    }
  });

  test('RSA PKCS#1 v1.5 and Ed25519 are deterministic: byte for byte what openssl makes', () => {
    for (const s of signers.filter((x) => x.kind !== 'ec')) {
      assert.deepEqual(signManifest(MANIFEST, s.keyPem), signWithOpenssl(dir, s, manifestPath), s.kind);
    }
    const ed = signers.find((x) => x.kind === 'ed25519')!;
    assert.equal(signManifest(MANIFEST, ed.keyPem).length, 64);
  });

  test('an unreadable key or an unsupported key type is signature-invalid', () => {
    assert.throws(() => signManifest(MANIFEST, 'not a key'), isTrustError('signature-invalid'));
    const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => signManifest(MANIFEST, dsa), (err) => isTrustError('signature-invalid')(err) && /dsa key/.test((err as Error).message));
  });
});

describe('checkKeyMatchesCert', () => {
  test('accepts the certificate key and rejects another', () => {
    const [rsa, ec] = signers;
    checkKeyMatchesCert(rsa!.keyPem, rsa!.certPem + mid.certPem);
    assert.throws(() => checkKeyMatchesCert(ec!.keyPem, rsa!.certPem), isTrustError('signature-invalid'));
    assert.throws(() => checkKeyMatchesCert(ec!.keyPem, 'garbage'), isTrustError('chain-invalid'));
  });
});

describe('summarizePem', () => {
  test('summarises every certificate of a bundle in order, without a trust decision', () => {
    const [rsa] = signers;
    const text = `subject=CN = signer-rsa\n${rsa!.certPem}\n# the intermediate\n${mid.certPem}`;
    const sum = summarizePem(text);
    assert.deepEqual(sum.map((s) => [s.subject, s.issuer, s.keyType]), [
      ['CN=signer-rsa', 'CN=mid', 'rsa'],
      ['CN=mid', 'CN=root', 'ed25519'],
    ]);
    const x = new X509Certificate(rsa!.certPem);
    assert.equal(sum[0]?.serialNumber, x.serialNumber);
    assert.equal(sum[0]?.fingerprint256, x.fingerprint256);
    assert.equal(sum[0]?.notAfter, new Date(x.validTo).toISOString());
    assert.equal(sum[0]?.notBefore, new Date(x.validFrom).toISOString());
    assert.equal(summarizePem(root.certPem)[0]?.keyType, 'ec');
  });

  test('garbage is chain-invalid', () => {
    assert.throws(() => summarizePem('hello'), isTrustError('chain-invalid'));
    assert.throws(() => summarizePem('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'), isTrustError('chain-invalid'));
  });
});
