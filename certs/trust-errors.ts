/**
 * The trust domain's error codes (re-exported by certs/trust.ts, which is where callers import
 * them from). A module of its own so the X.509 helpers can throw them without an import cycle.
 */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const TRUST_CODES = registerCodes('trust', [
  'signature-invalid', // manifest.sig does not verify with the signer's key over manifest.json
  'signer-untrusted', // the signer does not chain to an installed trust anchor
  'signer-expired', // a certificate in the chain is past its notAfter
  'signer-not-yet-valid', // a certificate in the chain is before its notBefore
  'signer-not-codesigning', // the signer lacks keyUsage digitalSignature, or has an EKU without codeSigning
  'chain-invalid', // an issuer without CA flag or keyCertSign, a path length exceeded, unparsable PEM
] as const);
export type TrustCode = (typeof TRUST_CODES)[number];

export class TrustError extends EdgeError<TrustCode> {}
