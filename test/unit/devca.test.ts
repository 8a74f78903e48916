import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { createCa, issueCert, randomSerial, writePki } from '../../certs/devca.js';
import { tempDir } from '../helpers/util.js';

const ca = createCa({ commonName: 'unit CA' });
const caX = new X509Certificate(ca.certPem);

test('the CA is self-signed, a CA, and its key matches', () => {
  assert.equal(caX.ca, true);
  assert.equal(caX.subject, 'CN=unit CA');
  assert.equal(caX.verify(caX.publicKey), true);
  assert.equal(caX.checkPrivateKey(createPrivateKey(ca.keyPem)), true);
});

test('a server certificate chains to the CA and names localhost and 127.0.0.1', () => {
  const s = issueCert(ca, { commonName: 'localhost', kind: 'server' });
  const x = new X509Certificate(s.certPem);
  assert.equal(x.verify(caX.publicKey), true);
  assert.equal(x.checkIssued(caX), true);
  assert.equal(x.ca, false);
  assert.equal(x.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.equal(x.checkHost('localhost'), 'localhost');
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
});

test('each kind gets the extended key usage for its one job', () => {
  const eku = (kind: 'client' | 'codeSigning'): string[] | undefined => new X509Certificate(issueCert(ca, { commonName: kind, kind }).certPem).keyUsage;
  assert.deepEqual(eku('client'), ['1.3.6.1.5.5.7.3.2']);
  assert.deepEqual(eku('codeSigning'), ['1.3.6.1.5.5.7.3.3']);
});

test('an intermediate is a CA that can issue in turn', () => {
  const mid = issueCert(ca, { commonName: 'mid', kind: 'intermediate', pathLen: 0 });
  const midX = new X509Certificate(mid.certPem);
  assert.equal(midX.ca, true);
  const leaf = new X509Certificate(issueCert(mid, { commonName: 'signer', kind: 'codeSigning' }).certPem);
  assert.equal(leaf.checkIssued(midX), true);
  assert.equal(leaf.verify(midX.publicKey), true);
  assert.equal(leaf.issuer, 'CN=mid');
});

test('validity can be set explicitly, e.g. for an expired certificate', () => {
  const notBefore = new Date('2020-01-01T00:00:00Z');
  const notAfter = new Date('2020-02-01T00:00:00Z');
  const x = new X509Certificate(issueCert(ca, { commonName: 'old', kind: 'client', notBefore, notAfter }).certPem);
  assert.equal(new Date(x.validTo).getTime(), notAfter.getTime());
  assert.equal(new Date(x.validFrom).getTime(), notBefore.getTime());
});

test('serials are random, positive and minimally encoded', () => {
  const serials = new Set(Array.from({ length: 200 }, () => randomSerial()));
  assert.equal(serials.size, 200);
  for (const s of serials) assert.match(s, /^(0[1-9a-f]|[1-7][0-9a-f])[0-9a-f]{30}$/);
});

test('writePki writes the files with private keys at mode 0600', (t) => {
  const dir = tempDir('pki');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = writePki(dir, { clientCommonName: 'gw-7' });
  assert.equal(statSync(p.clientKey).mode & 0o777, 0o600);
  assert.equal(statSync(p.serverKey).mode & 0o777, 0o600);
  const client = new X509Certificate(readFileSync(p.clientCert));
  assert.equal(client.subject, 'CN=gw-7');
  assert.equal(client.checkIssued(new X509Certificate(readFileSync(p.ca))), true);
  assert.equal(p.authority.certPem, readFileSync(p.ca, 'utf8'));
});
