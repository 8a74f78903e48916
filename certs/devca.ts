/**
 * Development PKI: a throw-away CA and the certificates the tests, the demo and local setups need
 * (broker server, gateway client for mTLS, intermediates, code signing for update bundles).
 * Never for production keys: nothing here protects the private keys beyond file mode 0600.
 *
 * Keys come from Node's crypto (OpenSSL, milliseconds) rather than forge's pure-JS generator
 * (seconds); forge only builds and signs the X.509 structures. Extension choices follow
 * RFC 5280 section 4.2: CA certificates carry a critical basicConstraints cA=true and
 * keyCertSign/cRLSign; end-entity certificates carry cA=false and an extended key usage that
 * limits them to their one job.
 *
 * Pure functions apart from writePki(); importing this module does no I/O.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';

export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

export type CertKind = 'server' | 'client' | 'intermediate' | 'codeSigning';

export interface AltNames {
  dns?: string[];
  ip?: string[];
}

export interface IssueOptions {
  commonName: string;
  kind: CertKind;
  /** Server certificates default to DNS localhost and IP 127.0.0.1. */
  altNames?: AltNames;
  /** Defaults to five minutes ago, so a slightly slow clock elsewhere still accepts it. */
  notBefore?: Date;
  /** Defaults to notBefore + days. */
  notAfter?: Date;
  days?: number;
  /** Intermediates only: how many further CAs may follow below this one. */
  pathLen?: number;
}

const DEFAULT_DAYS = 365;
const DAY_MS = 24 * 3600 * 1000;
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** A random positive serial (RFC 5280 4.1.2.2: positive, at most 20 octets), as hex. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  // Top bit clear keeps the DER INTEGER positive; a non-zero first octet keeps it minimal.
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return bytes.toString('hex');
}

function newKeyPair(): { keyPem: string; publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    keyPem: privateKey,
    publicKey: forge.pki.publicKeyFromPem(publicKey),
    privateKey: forge.pki.privateKeyFromPem(privateKey),
  };
}

function validity(opts: { notBefore?: Date; notAfter?: Date; days?: number }): { notBefore: Date; notAfter: Date } {
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? DEFAULT_DAYS) * DAY_MS);
  return { notBefore, notAfter };
}

function caConstraints(pathLen: number | undefined): object {
  return pathLen === undefined
    ? { name: 'basicConstraints', cA: true, critical: true }
    : { name: 'basicConstraints', cA: true, pathLenConstraint: pathLen, critical: true };
}

/** The extensions that make a certificate of `kind` fit for exactly that job. */
function kindExtensions(kind: CertKind, altNames: AltNames | undefined, pathLen: number | undefined): object[] {
  const endEntity = { name: 'basicConstraints', cA: false, critical: true };
  switch (kind) {
    case 'server': {
      const dns = altNames?.dns ?? (altNames?.ip ? [] : ['localhost']);
      const ip = altNames?.ip ?? (altNames?.dns ? [] : ['127.0.0.1']);
      return [
        endEntity,
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [...dns.map((value) => ({ type: 2, value })), ...ip.map((addr) => ({ type: 7, ip: addr }))],
        },
      ];
    }
    case 'client':
      return [endEntity, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }, { name: 'extKeyUsage', clientAuth: true }];
    case 'codeSigning':
      return [endEntity, { name: 'keyUsage', digitalSignature: true, critical: true }, { name: 'extKeyUsage', codeSigning: true }];
    case 'intermediate':
      return [caConstraints(pathLen), { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }];
  }
}

/** A self-signed root CA. */
export function createCa(opts: { commonName: string; days?: number; pathLen?: number }): CertAndKey {
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  const { notBefore, notAfter } = validity({ days: opts.days ?? 10 * DEFAULT_DAYS });
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const subject = [{ name: 'commonName', value: opts.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    caConstraints(opts.pathLen),
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.keyPem };
}

/** The issuer's key identifier, for the child's authorityKeyIdentifier (RFC 5280 4.2.1.1). */
function issuerKeyId(caCert: forge.pki.Certificate): string {
  const ski = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  return ski?.subjectKeyIdentifier ? forge.util.hexToBytes(ski.subjectKeyIdentifier) : caCert.generateSubjectKeyIdentifier().getBytes();
}

/** A certificate for `opts.kind`, signed by `ca` (a root from createCa or an intermediate). */
export function issueCert(ca: CertAndKey, opts: IssueOptions): CertAndKey {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  const { notBefore, notAfter } = validity(opts);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: 'commonName', value: opts.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    ...kindExtensions(opts.kind, opts.altNames, opts.pathLen),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: issuerKeyId(caCert) },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.keyPem };
}

export interface PkiPaths {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export interface WritePkiOptions {
  caCommonName?: string;
  /** Server certificate names; default DNS localhost, IP 127.0.0.1. */
  serverAltNames?: AltNames;
  /** The client certificate's CN: the gateway id when the broker maps identity to username. */
  clientCommonName?: string;
}

function writeKey(path: string, pem: string): void {
  writeFileSync(path, pem, { mode: 0o600 });
  chmodSync(path, 0o600); // `mode` only applies when the file is created
}

/**
 * Writes ca.pem, server.pem/server.key and client.pem/client.key into `dir` (created if needed;
 * keys mode 0600). Returns the paths and, in memory only, the CA so callers can issue more.
 */
export function writePki(dir: string, opts: WritePkiOptions = {}): PkiPaths & { authority: CertAndKey } {
  mkdirSync(dir, { recursive: true });
  const authority = createCa({ commonName: opts.caCommonName ?? 'edge-agent dev CA' });
  const server = issueCert(authority, { commonName: 'localhost', kind: 'server', altNames: opts.serverAltNames });
  const client = issueCert(authority, { commonName: opts.clientCommonName ?? 'gw-test', kind: 'client' });
  const paths: PkiPaths = {
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
  };
  writeFileSync(paths.ca, authority.certPem);
  writeFileSync(paths.serverCert, server.certPem);
  writeKey(paths.serverKey, server.keyPem);
  writeFileSync(paths.clientCert, client.certPem);
  writeKey(paths.clientKey, client.keyPem);
  return { ...paths, authority };
}
