/**
 * Verification of a signed manifest against installed trust anchors (CONTRACT.md section 4).
 *
 * The signature formats are exactly what stock OpenSSL makes:
 *  - RSA (PKCS#1 v1.5) or ECDSA (DER, RFC 3279 2.2.3) over SHA-256:
 *    `openssl dgst -sha256 -sign signer.key -out manifest.sig manifest.json`
 *  - Ed25519 (RFC 8032, 64 raw bytes, the message itself, no prehash):
 *    `openssl pkeyutl -sign -rawin -inkey signer.key -in manifest.json -out manifest.sig`
 * Ed448 is accepted the same way; other key types (RSA-PSS keys, DSA) are not.
 *
 * Order of checks, first failure wins: PEM parsing (chain-invalid), path to an anchor
 * (signer-untrusted), the path's validity, structure and usage (certs/chain.ts), then the
 * manifest signature (signature-invalid). No I/O, no clock except `now` defaulting to the time.
 */
import { createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { validateChain } from './chain.js';
import { TrustError } from './trust-errors.js';
import { keyType, oneLine, parsePem, type ParsedCert } from './x509.js';

export { TRUST_CODES, TrustError, type TrustCode } from './trust-errors.js';

export interface CertSummary {
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  fingerprint256: string;
  keyType: 'rsa' | 'ec' | 'ed25519' | 'other';
}

export interface VerifiedSigner {
  /** The signer first, then each issuer up to and including the trust anchor. */
  chain: CertSummary[];
}

export interface VerifyInput {
  /** The exact bytes of manifest.json. */
  manifest: Buffer;
  /** manifest.sig: RSA PKCS#1 v1.5 or ECDSA (DER) over SHA-256, or Ed25519 (raw 64 bytes). */
  signature: Buffer;
  /** signer.pem: the signing certificate, then any intermediates. */
  signerPem: string;
  /** The device's trust anchors, one or more PEM certificates. */
  trustPem: string;
  now?: Date;
}

function summary(c: ParsedCert): CertSummary {
  return {
    subject: c.name,
    issuer: oneLine(c.x509.issuer),
    serialNumber: c.x509.serialNumber,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    fingerprint256: c.x509.fingerprint256,
    keyType: keyType(c.x509),
  };
}

/**
 * The digest argument of crypto.sign/verify for a key: SHA-256 for RSA and ECDSA, none for
 * EdDSA, which signs the message itself (RFC 8032 "PureEdDSA"). Throws for other key types.
 */
function digestFor(key: KeyObject, what: string): 'sha256' | null {
  const t = key.asymmetricKeyType;
  if (t === 'rsa' || t === 'ec') return 'sha256';
  if (t === 'ed25519' || t === 'ed448') return null;
  throw new TrustError('signature-invalid', `${what} is a ${t ?? 'unknown'} key; manifests are signed with RSA, ECDSA, Ed25519 or Ed448`);
}

function verifySignature(signer: ParsedCert, manifest: Buffer, signature: Buffer): void {
  const key = signer.x509.publicKey;
  const digest = digestFor(key, `the signer's key (${signer.name})`);
  let ok: boolean;
  try {
    ok = verify(digest, manifest, key, signature);
  } catch {
    ok = false; // a malformed ECDSA DER signature throws in some OpenSSL versions
  }
  if (!ok) {
    throw new TrustError('signature-invalid', `manifest.sig is not a valid ${keyType(signer.x509)} signature of manifest.json by ${signer.name}`);
  }
}

/** Throws TrustError with the code of the first failure; returns the verified chain. */
export function verifySignedManifest(input: VerifyInput): VerifiedSigner {
  const [signer, ...intermediates] = parsePem(input.signerPem, 'signer.pem');
  const anchors = parsePem(input.trustPem, 'the trust anchors');
  const chain = validateChain(signer!, intermediates, anchors, input.now ?? new Date());
  verifySignature(signer!, input.manifest, input.signature);
  return { chain: chain.map(summary) };
}

/** The certificates of a PEM bundle, summarised, without any trust decision (for `bundle inspect`). */
export function summarizePem(pem: string): CertSummary[] {
  return parsePem(pem, 'the PEM text').map(summary);
}

function privateKey(keyPem: string): KeyObject {
  try {
    return createPrivateKey(keyPem);
  } catch (err) {
    throw new TrustError('signature-invalid', 'the signing key is not a readable, unencrypted PEM private key', { cause: err });
  }
}

/**
 * manifest.sig for `bundle create`, in the formats verifySignedManifest accepts (and stock
 * OpenSSL makes). Throws TrustError 'signature-invalid' for an unreadable or unsupported key.
 */
export function signManifest(manifest: Buffer, keyPem: string): Buffer {
  const key = privateKey(keyPem);
  return sign(digestFor(key, 'the signing key'), manifest, key);
}

/**
 * Throws TrustError 'signature-invalid' unless `keyPem` is the private key of the first
 * certificate in `certPem`: lets `bundle create` refuse to write a bundle no device accepts.
 */
export function checkKeyMatchesCert(keyPem: string, certPem: string): void {
  const [cert] = parsePem(certPem, 'the signer certificate');
  if (!cert!.x509.checkPrivateKey(privateKey(keyPem))) {
    throw new TrustError('signature-invalid', `the signing key does not belong to the certificate ${cert!.name}`);
  }
}
