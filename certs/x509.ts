/**
 * PEM splitting and the parts of an X.509 certificate (RFC 5280 section 4) that Node's
 * X509Certificate does not expose: the raw issuer and subject names, the validity times, the
 * signature algorithm and the extensions keyUsage (4.2.1.3), basicConstraints (4.2.1.9) and
 * extKeyUsage (4.2.1.12), plus the list of critical extensions.
 *
 * Node (OpenSSL) parses the certificate and checks signatures; node-forge's ASN.1 layer only
 * walks the DER. forge's X.509 layer is not used: it only understands RSA keys.
 *
 * Invariants: a ParsedCert is only made from DER that both Node and forge parsed in full; every
 * malformed input throws TrustError 'chain-invalid' naming where it came from; no I/O.
 */
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { TrustError } from './trust-errors.js';

type Asn1 = forge.asn1.Asn1;

export const OID = {
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  codeSigning: '1.3.6.1.5.5.7.3.3',
} as const;

/**
 * Extensions we may accept as critical: the three we enforce, plus ones that only describe
 * (names, key identifiers). Any other critical extension (nameConstraints, policyConstraints,
 * certificatePolicies, ...) is one we do not enforce, so RFC 5280 4.2 says reject the certificate.
 */
const HANDLED_CRITICAL = new Set<string>([
  OID.keyUsage,
  OID.basicConstraints,
  OID.extKeyUsage,
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.17', // subjectAltName (critical when the subject is empty, 4.2.1.6)
  '2.5.29.18', // issuerAltName
]);

export interface BasicConstraints {
  cA: boolean;
  /** undefined: no limit. */
  pathLen: number | undefined;
}

export interface KeyUsage {
  digitalSignature: boolean;
  keyCertSign: boolean;
}

export interface ParsedCert {
  x509: X509Certificate;
  der: Buffer;
  /** The subject on one line, for messages. */
  name: string;
  issuerDer: Buffer;
  subjectDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** OID of the algorithm the issuer signed this certificate with. */
  signatureAlgorithm: string;
  basicConstraints: BasicConstraints | undefined;
  keyUsage: KeyUsage | undefined;
  /** The extended key usage OIDs, undefined when the extension is absent. */
  extKeyUsage: string[] | undefined;
  /** OIDs of critical extensions this module does not handle. */
  unhandledCritical: string[];
}

const { Class, Type } = forge.asn1;

// @types/node-forge only knows the boolean form of the options; the object form lets us turn
// off forge's guess that a BIT STRING holds nested ASN.1 (a keyUsage bit string is plain bits).
const fromDer = forge.asn1.fromDer as unknown as (
  bytes: forge.util.ByteBuffer,
  options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean },
) => Asn1;

function malformed(what: string): TrustError {
  return new TrustError('chain-invalid', `malformed certificate: ${what}`);
}

function decode(der: Buffer | string, what: string): Asn1 {
  const raw = typeof der === 'string' ? der : der.toString('binary');
  try {
    return fromDer(forge.util.createBuffer(raw, 'raw'), { strict: true, parseAllBytes: true, decodeBitStrings: false });
  } catch (err) {
    throw new TrustError('chain-invalid', `malformed certificate: ${what} is not DER`, { cause: err });
  }
}

function kids(node: Asn1 | undefined, what: string): Asn1[] {
  if (node === undefined || !Array.isArray(node.value)) throw malformed(`${what} is not a constructed value`);
  return node.value;
}

function prim(node: Asn1 | undefined, type: forge.asn1.Type, what: string): string {
  if (node === undefined || node.tagClass !== Class.UNIVERSAL || node.type !== type || typeof node.value !== 'string') {
    throw malformed(`${what} has the wrong ASN.1 type`);
  }
  return node.value;
}

function reencode(node: Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary');
}

function time(node: Asn1 | undefined, what: string): Date {
  if (node?.tagClass === Class.UNIVERSAL && typeof node.value === 'string') {
    const d = node.type === Type.UTCTIME ? forge.asn1.utcTimeToDate(node.value) : node.type === Type.GENERALIZEDTIME ? forge.asn1.generalizedTimeToDate(node.value) : undefined;
    if (d !== undefined && !Number.isNaN(d.getTime())) return d;
  }
  throw malformed(`${what} is not a time`);
}

function parseKeyUsage(value: string): KeyUsage {
  const bits = prim(decode(value, 'keyUsage'), Type.BITSTRING, 'keyUsage');
  // First octet: the number of unused bits; then bit 0 (digitalSignature) is the top bit of
  // the next octet and bit 5 (keyCertSign) is 0x04 of it (RFC 5280 4.2.1.3).
  const first = bits.length > 1 ? bits.charCodeAt(1) : 0;
  return { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0 };
}

function parseBasicConstraints(value: string): BasicConstraints {
  const fields = kids(decode(value, 'basicConstraints'), 'basicConstraints');
  let cA = false;
  let pathLen: number | undefined;
  for (const f of fields) {
    if (f.type === Type.BOOLEAN) cA = prim(f, Type.BOOLEAN, 'basicConstraints.cA') !== '\x00';
    else {
      const int = prim(f, Type.INTEGER, 'basicConstraints.pathLenConstraint');
      if (int.length === 0 || (int.charCodeAt(0) & 0x80) !== 0) throw malformed('basicConstraints.pathLenConstraint is negative');
      // More than four octets is a limit no chain reaches: treat it as none.
      pathLen = int.length > 4 ? Number.MAX_SAFE_INTEGER : forge.asn1.derToInteger(int);
    }
  }
  return { cA, pathLen };
}

function parseExtKeyUsage(value: string): string[] {
  return kids(decode(value, 'extKeyUsage'), 'extKeyUsage').map((o) => forge.asn1.derToOid(prim(o, Type.OID, 'extKeyUsage')));
}

interface Extensions {
  basicConstraints: BasicConstraints | undefined;
  keyUsage: KeyUsage | undefined;
  extKeyUsage: string[] | undefined;
  unhandledCritical: string[];
}

function parseExtensions(node: Asn1 | undefined): Extensions {
  const out: Extensions = { basicConstraints: undefined, keyUsage: undefined, extKeyUsage: undefined, unhandledCritical: [] };
  if (node === undefined) return out;
  const seen = new Set<string>();
  for (const ext of kids(kids(node, 'extensions')[0], 'extensions')) {
    const parts = kids(ext, 'extension');
    const oid = forge.asn1.derToOid(prim(parts[0], Type.OID, 'extension id'));
    // RFC 5280 4.2: "A certificate MUST NOT include more than one instance of a particular extension."
    if (seen.has(oid)) throw malformed(`extension ${oid} appears twice`);
    seen.add(oid);
    const critical = parts.length === 3 && prim(parts[1], Type.BOOLEAN, 'extension critical') !== '\x00';
    const value = prim(parts[parts.length - 1], Type.OCTETSTRING, `extension ${oid}`);
    if (oid === OID.keyUsage) out.keyUsage = parseKeyUsage(value);
    else if (oid === OID.basicConstraints) out.basicConstraints = parseBasicConstraints(value);
    else if (oid === OID.extKeyUsage) out.extKeyUsage = parseExtKeyUsage(value);
    if (critical && !HANDLED_CRITICAL.has(oid)) out.unhandledCritical.push(oid);
  }
  return out;
}

/** A context-specific tag [n]; forge keeps its number in `type`, typed as a universal type. */
function isContextTag(node: Asn1 | undefined, n: number): boolean {
  return node?.tagClass === Class.CONTEXT_SPECIFIC && (node.type as number) === n;
}

export function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

/** Parses one DER certificate; `what` names it in errors ("signer.pem certificate 2"). */
export function parseCertificate(der: Buffer, what: string): ParsedCert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (err) {
    throw new TrustError('chain-invalid', `${what} is not an X.509 certificate`, { cause: err });
  }
  try {
    const [tbs, sigAlg] = kids(decode(der, what), 'certificate');
    const f = kids(tbs, 'tbsCertificate');
    // The version is an explicit [0] tag and absent for v1 certificates.
    const i = isContextTag(f[0], 0) ? 1 : 0;
    const [issuer, validity, subject] = [f[i + 2], f[i + 3], f[i + 4]];
    if (issuer === undefined || subject === undefined) throw malformed('names missing');
    const [notBefore, notAfter] = kids(validity, 'validity');
    const extNode = f.slice(i + 6).find((n) => isContextTag(n, 3)); // extensions are explicit [3]
    return {
      x509,
      der,
      name: oneLine(x509.subject),
      issuerDer: reencode(issuer),
      subjectDer: reencode(subject),
      notBefore: time(notBefore, 'notBefore'),
      notAfter: time(notAfter, 'notAfter'),
      signatureAlgorithm: forge.asn1.derToOid(prim(kids(sigAlg, 'signatureAlgorithm')[0], Type.OID, 'signatureAlgorithm')),
      ...parseExtensions(extNode),
    };
  } catch (err) {
    if (err instanceof TrustError) throw new TrustError('chain-invalid', `${what}: ${err.message}`, { cause: err });
    throw new TrustError('chain-invalid', `${what} is malformed`, { cause: err });
  }
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/**
 * The certificates of a PEM text, in order. Text between blocks (openssl's "subject=" lines)
 * is ignored; any other block type, a block without its END line, bad base64 or no certificate
 * at all is 'chain-invalid'. `source` names the text in errors ("signer.pem").
 */
export function parsePem(pem: string, source: string): ParsedCert[] {
  const certs: ParsedCert[] = [];
  let blocks = 0;
  for (const m of pem.matchAll(BLOCK)) {
    blocks++;
    const [, label, body = '', endLabel] = m;
    const what = `${source} block ${blocks}`;
    if (label !== 'CERTIFICATE' || endLabel !== label) throw new TrustError('chain-invalid', `${what} is a ${label ?? '?'} block; only CERTIFICATE blocks are allowed`);
    const b64 = body.replace(/\s+/g, '');
    if (b64.length === 0 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new TrustError('chain-invalid', `${what} is not valid base64`);
    certs.push(parseCertificate(Buffer.from(b64, 'base64'), what));
  }
  const begins = pem.split('-----BEGIN ').length - 1;
  if (begins !== blocks) throw new TrustError('chain-invalid', `${source} has a PEM block without its END line`);
  if (certs.length === 0) throw new TrustError('chain-invalid', `${source} holds no PEM certificate`);
  return certs;
}

export function keyType(cert: X509Certificate): 'rsa' | 'ec' | 'ed25519' | 'other' {
  const t = cert.publicKey.asymmetricKeyType;
  return t === 'rsa' || t === 'ec' || t === 'ed25519' ? t : 'other';
}
