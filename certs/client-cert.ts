/**
 * The checks of a signed client certificate before it is tried against the broker (the
 * `certificate` operation's install, CONTRACT.md section 7): it is for the pending key, chains
 * to the configured CA, is valid now, and may be used for TLS client authentication
 * (RFC 5280 4.2.1.12: id-kp-clientAuth; an end-entity certificate without the extension is
 * refused too, as it would be let into more than the broker), and names the gateway: its subject
 * CN is the gateway id the CSR asked for. Pure apart from its inputs.
 *
 * Why the CN is checked here and not left to the broker's trial: a broker that takes the client's
 * identity from the certificate (Mosquitto's `use_identity_as_username`) accepts a certificate
 * for another CN, and with an ACL on `%u` even grants its subscription to this gateway's command
 * topic (it filters what it delivers, not the SUBACK); the gateway would then connect as someone
 * else and hear nothing. Only a round trip through the gateway's own topics would show it, and
 * that publishes on them (and fails under ACLs that allow only the topics the agent uses).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { EdgeError, registerCodes } from '../lib/errors.js';

export const CERTIFICATE_CODES = registerCodes('certificate', ['no-pending-key', 'key-mismatch', 'untrusted', 'not-valid', 'broker-refused', 'cert-unconfigured', 'identity-mismatch'] as const);
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
export function checkClientCert(o: { chainPem: string; keyPem: string; anchorsPem: string; now: Date; commonName?: string }): X509Certificate {
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
  if (o.commonName !== undefined) {
    const cns = subjectCommonNames(leaf.subject);
    if (cns.length !== 1 || cns[0] !== o.commonName) {
      throw new CertificateError('identity-mismatch', `the certificate is for ${cns.length === 0 ? 'no CN' : cns.map((c) => `CN=${c}`).join(', ')}, not this gateway (CN=${o.commonName}, as its CSR asked): a broker that takes the identity from the certificate would see another client`);
    }
  }
  return leaf;
}

/** The CN values of an X509Certificate subject (Node's form: one `KEY=value` per line). Pure. */
export function subjectCommonNames(subject: string): string[] {
  return subject
    .split('\n')
    .filter((l) => l.startsWith('CN='))
    .map((l) => l.slice(3));
}

/**
 * When a certificate is due for renewal: at `fraction` of its lifetime or `beforeMs` before it
 * expires, whichever comes first (Azure IoT Edge renews at 80 %).
 */
export function renewalDue(notBefore: number, notAfter: number, fraction: number, beforeMs: number): number {
  return Math.min(notBefore + fraction * (notAfter - notBefore), notAfter - beforeMs);
}
