/**
 * The checks of a signed client certificate before it is tried against the broker (the
 * `certificate` operation's install, CONTRACT.md section 7): it is for the pending key, chains
 * to the configured CA, is valid now, and may be used for TLS client authentication
 * (RFC 5280 4.2.1.12: id-kp-clientAuth; an end-entity certificate without the extension is
 * refused too, as it would be let into more than the broker). Pure apart from its inputs.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { EdgeError, registerCodes } from '../lib/errors.js';

export const CERTIFICATE_CODES = registerCodes('certificate', ['no-pending-key', 'key-mismatch', 'untrusted', 'not-valid', 'broker-refused', 'cert-unconfigured'] as const);
export type CertificateCode = (typeof CERTIFICATE_CODES)[number];

export class CertificateError extends EdgeError<CertificateCode> {}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const MAX_DEPTH = 8;

/** Every certificate of a PEM text, in order. */
export function pemCerts(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

export interface CertInfo {
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
}

export function certInfo(c: X509Certificate): CertInfo {
  return {
    subject: c.subject.replace(/\n/g, ', '),
    issuer: c.issuer.replace(/\n/g, ', '),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    fingerprint: c.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/** The leaf of `chainPem`, checked; throws CertificateError with the contract's codes. */
export function checkClientCert(o: { chainPem: string; keyPem: string; anchorsPem: string; now: Date }): X509Certificate {
  let certs: X509Certificate[];
  try {
    certs = pemCerts(o.chainPem);
  } catch (err) {
    throw new CertificateError('not-valid', `the certificate cannot be read: ${(err as Error).message}`);
  }
  const leaf = certs[0];
  if (!leaf) throw new CertificateError('not-valid', 'no PEM certificate in what was sent');
  if (!leaf.checkPrivateKey(createPrivateKey(o.keyPem))) throw new CertificateError('key-mismatch', `the certificate (${leaf.subject.replace(/\n/g, ', ')}) is not for the pending key`);
  const anchors = pemCerts(o.anchorsPem);
  let cur = leaf;
  for (let depth = 0; ; depth++) {
    const anchor = anchors.find((a) => cur.checkIssued(a) && cur.verify(a.publicKey));
    if (anchor) break;
    const next = certs.slice(1).find((c) => c !== cur && cur.checkIssued(c) && cur.verify(c.publicKey) && c.ca);
    if (!next || depth >= MAX_DEPTH) throw new CertificateError('untrusted', `the certificate (issuer ${cur.issuer.replace(/\n/g, ', ')}) does not chain to the configured CA`);
    cur = next;
  }
  const t = o.now.getTime();
  for (const c of certs) {
    if (t < Date.parse(c.validFrom) || t > Date.parse(c.validTo)) throw new CertificateError('not-valid', `${c.subject.replace(/\n/g, ', ')} is valid from ${c.validFrom} to ${c.validTo}, not now`);
  }
  if (!leaf.keyUsage?.includes(CLIENT_AUTH)) throw new CertificateError('not-valid', 'the certificate is not for TLS client authentication (no clientAuth extended key usage)');
  return leaf;
}

/**
 * When a certificate is due for renewal: at `fraction` of its lifetime or `beforeMs` before it
 * expires, whichever comes first (Azure IoT Edge renews at 80 %).
 */
export function renewalDue(notBefore: number, notAfter: number, fraction: number, beforeMs: number): number {
  return Math.min(notBefore + fraction * (notAfter - notBefore), notAfter - beforeMs);
}
