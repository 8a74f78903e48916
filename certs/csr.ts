/**
 * A PKCS #10 certificate signing request (RFC 2986) for a key made on the gateway, built with
 * Node's crypto and a few lines of DER (X.690): node-forge cannot make ECDSA keys or CSRs, and
 * OpenSSL's command line is not ours to depend on at run time. Subject: CN only. Pure.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export type KeyType = 'ec-p256' | 'rsa-2048';

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a! + b!];
  for (const n of rest) {
    const chunk: number[] = [];
    let v = n;
    do {
      chunk.unshift((v & 0x7f) | (chunk.length ? 0x80 : 0));
      v = Math.floor(v / 128);
    } while (v > 0);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

const SEQ = 0x30;
const SET = 0x31;
const ALGORITHMS: Record<KeyType, Buffer> = {
  // ecdsa-with-SHA256 (RFC 5758 3.2): no parameters.
  'ec-p256': tlv(SEQ, oid('1.2.840.10045.4.3.2')),
  // sha256WithRSAEncryption (RFC 4055 5): NULL parameters.
  'rsa-2048': tlv(SEQ, oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])),
};

/** A new private key (PKCS #8 PEM). */
export function newKey(type: KeyType = 'ec-p256'): string {
  const { privateKey } = type === 'ec-p256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

export function keyTypeOf(key: KeyObject): KeyType {
  return key.asymmetricKeyType === 'rsa' ? 'rsa-2048' : 'ec-p256';
}

/** The CSR (PEM) for `keyPem` with subject CN = `commonName`. */
export function makeCsr(keyPem: string, commonName: string): string {
  const key = createPrivateKey(keyPem);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject = tlv(SEQ, tlv(SET, tlv(SEQ, oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const info = tlv(SEQ, Buffer.from([0x02, 0x01, 0x00]), subject, spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, key);
  const der = tlv(SEQ, info, ALGORITHMS[keyTypeOf(key)], tlv(0x03, Buffer.from([0x00]), signature));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
