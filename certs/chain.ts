/**
 * Certification path building and validation for the manifest signer (RFC 5280 section 6,
 * reduced to what a code-signing check needs: no revocation, no policies, no name constraints).
 *
 * A path is signer -> intermediates (from signer.pem, any order) -> anchor (from the trust PEM).
 * A certificate byte-identical to an anchor ends the path there: the anchor may be a self-signed
 * root, an intermediate pinned as anchor, or even the signer itself. "Issued by" means the
 * issuer name matches the parent's subject AND the child's signature verifies with the parent's
 * key; neither the AKI nor the parent's keyUsage is used to find a parent (OpenSSL's checkIssued
 * does both), so a parent without keyCertSign is found and then reported as chain-invalid rather
 * than hidden as signer-untrusted.
 *
 * Checks on a found path, in this order, first failure wins:
 *  1. every certificate, the anchor included, is within its validity at `now`;
 *  2. every issuer has basicConstraints cA=true, keyCertSign if it has a keyUsage, and its
 *     pathLenConstraint covers the non-self-issued CAs below it; every certificate below the
 *     anchor is signed with an algorithm in ALLOWED_SIG; no certificate has an unhandled
 *     critical extension (chain-invalid);
 *  3. no issuer has an extended key usage without codeSigning; the signer is not a CA, has
 *     digitalSignature if it has a keyUsage and codeSigning if it has an EKU (signer-not-codesigning).
 * Several paths may exist (re-issued roots, cross-certificates); the first that passes wins,
 * otherwise the first path's failure is reported.
 */
import { OID, type ParsedCert } from './x509.js';
import { TrustError } from './trust-errors.js';

/** More certificates than any sane code-signing chain; these bound the search. */
const MAX_DEPTH = 8;
const MAX_PATHS = 16;
export const MAX_INTERMEDIATES = 16;
/**
 * Nodes the search may visit. Certificates made up by an attacker can all issue each other
 * (same name, same key), which makes the paths through them factorial in number; the budget
 * keeps `bundle verify` on such a signer.pem in milliseconds. Real chains need a handful.
 */
const MAX_VISITS = 256;

/** Signature algorithms accepted on certificates below the anchor: no MD5, no SHA-1. */
const ALLOWED_SIG = new Set([
  '1.2.840.113549.1.1.11', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13', // sha512WithRSAEncryption
  '1.2.840.113549.1.1.10', // RSASSA-PSS
  '1.2.840.10045.4.3.2', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4', // ecdsa-with-SHA512
  '1.3.101.112', // Ed25519
  '1.3.101.113', // Ed448
]);

function sameName(childIssuer: ParsedCert, parent: ParsedCert): boolean {
  // Binary equality first (RFC 5280 7.1); Node's printed form also matches names that differ
  // only in string type (PrintableString vs UTF8String).
  return childIssuer.issuerDer.equals(parent.subjectDer) || childIssuer.x509.issuer === parent.x509.subject;
}

export function issuedBy(child: ParsedCert, parent: ParsedCert): boolean {
  if (!sameName(child, parent)) return false;
  try {
    return child.x509.verify(parent.x509.publicKey);
  } catch {
    return false;
  }
}

function selfIssued(c: ParsedCert): boolean {
  return c.issuerDer.equals(c.subjectDer);
}

/** Paths from the signer to an anchor whose signatures verify, at most MAX_PATHS. */
export function findPaths(signer: ParsedCert, intermediates: ParsedCert[], anchors: ParsedCert[]): ParsedCert[][] {
  if (intermediates.length > MAX_INTERMEDIATES) {
    throw new TrustError('chain-invalid', `signer.pem holds ${intermediates.length} intermediates; at most ${MAX_INTERMEDIATES} are accepted`);
  }
  const isAnchor = (c: ParsedCert): boolean => anchors.some((a) => a.der.equals(c.der));
  const pool = intermediates.filter((c, i) => !isAnchor(c) && !c.der.equals(signer.der) && intermediates.findIndex((o) => o.der.equals(c.der)) === i);
  const memo = new Map<ParsedCert, Map<ParsedCert, boolean>>();
  const issued = (child: ParsedCert, parent: ParsedCert): boolean => {
    const row = memo.get(child) ?? new Map<ParsedCert, boolean>();
    memo.set(child, row);
    const known = row.get(parent);
    if (known !== undefined) return known;
    const ok = issuedBy(child, parent);
    row.set(parent, ok);
    return ok;
  };
  const paths: ParsedCert[][] = [];
  let visits = 0;
  const walk = (path: ParsedCert[]): void => {
    const cur = path[path.length - 1]!;
    if (isAnchor(cur)) {
      paths.push(path);
      return;
    }
    for (const a of anchors) if (paths.length < MAX_PATHS && issued(cur, a)) paths.push([...path, a]);
    if (path.length >= MAX_DEPTH - 1) return;
    for (const c of pool) {
      if (paths.length >= MAX_PATHS || visits >= MAX_VISITS) return;
      if (!path.includes(c) && issued(cur, c)) {
        visits++;
        walk([...path, c]);
      }
    }
  };
  walk([signer]);
  return paths;
}

function role(path: ParsedCert[], i: number): string {
  const c = path[i]!;
  if (i === 0) return `the signer (${c.name})`;
  return i === path.length - 1 ? `the trust anchor (${c.name})` : `the intermediate ${c.name}`;
}

function checkValidity(path: ParsedCert[], now: Date): void {
  path.forEach((c, i) => {
    if (now.getTime() < c.notBefore.getTime()) {
      throw new TrustError('signer-not-yet-valid', `${role(path, i)} is not valid before ${c.notBefore.toISOString()} (now ${now.toISOString()})`);
    }
    if (now.getTime() > c.notAfter.getTime()) {
      throw new TrustError('signer-expired', `${role(path, i)} expired at ${c.notAfter.toISOString()} (now ${now.toISOString()})`);
    }
  });
}

function checkStructure(path: ParsedCert[]): void {
  path.forEach((c, i) => {
    const who = role(path, i);
    if (c.unhandledCritical.length > 0) throw new TrustError('chain-invalid', `${who} has critical extensions this device does not enforce: ${c.unhandledCritical.join(', ')}`);
    if (i < path.length - 1 && !ALLOWED_SIG.has(c.signatureAlgorithm)) {
      throw new TrustError('chain-invalid', `${who} is signed with algorithm ${c.signatureAlgorithm}, which is not accepted (SHA-256 or better)`);
    }
    if (i === 0) return;
    if (c.basicConstraints?.cA !== true) throw new TrustError('chain-invalid', `${who} issues ${path[i - 1]!.name} but is not a CA (basicConstraints cA is not true)`);
    if (c.keyUsage && !c.keyUsage.keyCertSign) throw new TrustError('chain-invalid', `${who} issues ${path[i - 1]!.name} but its keyUsage lacks keyCertSign`);
    const pathLen = c.basicConstraints.pathLen;
    const casBelow = path.slice(1, i).filter((p) => !selfIssued(p)).length;
    if (pathLen !== undefined && casBelow > pathLen) {
      throw new TrustError('chain-invalid', `${who} allows ${pathLen} intermediate CA(s) below it (pathLenConstraint) but the chain has ${casBelow}`);
    }
  });
}

function checkUsage(path: ParsedCert[]): void {
  path.forEach((c, i) => {
    if (i === 0 || c.extKeyUsage === undefined || c.extKeyUsage.includes(OID.codeSigning)) return;
    throw new TrustError('signer-not-codesigning', `${role(path, i)} is limited by its extended key usage to ${c.extKeyUsage.join(', ')}, without code signing`);
  });
  const s = path[0]!;
  const who = role(path, 0);
  // A CA key signing manifests would be one key with two jobs (RFC 5280 4.2.1.9 keeps CA keys
  // for certificates); code-signing profiles require an end-entity certificate.
  if (s.basicConstraints?.cA === true) throw new TrustError('signer-not-codesigning', `${who} is a CA certificate; manifests must be signed by an end-entity certificate`);
  if (s.keyUsage && !s.keyUsage.digitalSignature) throw new TrustError('signer-not-codesigning', `${who} has a keyUsage without digitalSignature`);
  if (s.extKeyUsage !== undefined && !s.extKeyUsage.includes(OID.codeSigning)) {
    throw new TrustError('signer-not-codesigning', `${who} has an extended key usage without codeSigning (${OID.codeSigning}): ${s.extKeyUsage.join(', ')}`);
  }
}

/** Throws the first failure of the path (see the order at the top of the file). */
export function checkPath(path: ParsedCert[], now: Date): void {
  checkValidity(path, now);
  checkStructure(path);
  checkUsage(path);
}

/** The first path that passes every check; throws signer-untrusted when none chains to an anchor. */
export function validateChain(signer: ParsedCert, intermediates: ParsedCert[], anchors: ParsedCert[], now: Date): ParsedCert[] {
  const paths = findPaths(signer, intermediates, anchors);
  if (paths.length === 0) {
    throw new TrustError('signer-untrusted', `the signer (${signer.name}, issued by ${signer.x509.issuer.split('\n').join(', ')}) does not chain to any installed trust anchor`);
  }
  let first: unknown;
  for (const p of paths) {
    try {
      checkPath(p, now);
      return p;
    } catch (err) {
      first ??= err;
    }
  }
  throw first;
}
