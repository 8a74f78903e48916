/**
 * Reads a bundle's three leading members (manifest.json, manifest.sig, signer.pem) before its
 * payload is downloaded, with bounded Range requests (RFC 9110 14.2: `bytes=0-65535`, then
 * larger): the updater refuses a bundle it would never install (a delta for another base, a
 * policy failure) after a few KiB instead of after the whole download.
 *
 * An optimisation, never a gate: anything unexpected (a network error, a server that ignores
 * Range and answers 200, a head that does not parse, more than PROBE_MS in all) resolves
 * undefined, and the streaming reader then checks everything again on the real download, as it
 * always does.
 */
import { Readable } from 'node:stream';
import { readBundleHead } from './bundle-input.js';
import { get } from './download.js';

export interface BundleHead {
  manifestBytes: Buffer;
  signature: Buffer;
  signerPem: Buffer;
  /** Bytes the probe received. */
  bytes: number;
}

const FIRST = 64 * 1024;
/** The three members' limits (ota/bundle-input.ts) plus headers and gzip overhead. */
const LAST = 4 * 1024 * 1024;
/** The whole probe's time bound: a slow server must not hold the update longer than this. */
const PROBE_MS = 10_000;

export interface ProbeOptions {
  url: string;
  ca?: Buffer | undefined;
  idleTimeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** The body of a bounded response, at most `max` bytes; the connection is closed after. */
async function body(res: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res as AsyncIterable<Buffer>) {
      chunks.push(c);
      n += c.length;
      if (n >= max) break;
    }
  } finally {
    res.destroy();
  }
  return Buffer.concat(chunks).subarray(0, max);
}

/**
 * Where the first member (manifest.json) of a plain tar ends, from its header (POSIX ustar: the
 * size is octal at offset 124), or undefined (gzip, or too little to tell).
 */
function firstMemberEnd(data: Buffer): number | undefined {
  if (data.length < 512 || (data[0] === 0x1f && data[1] === 0x8b)) return undefined;
  const size = parseInt(data.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  return Number.isSafeInteger(size) && size >= 0 ? 512 + Math.ceil(size / 512) * 512 : undefined;
}

/** Slack after manifest.json for the headers and data of manifest.sig and signer.pem. */
const SIG_AND_SIGNER = 32 * 1024;

export async function probeHead(o: ProbeOptions): Promise<BundleHead | undefined> {
  const signal = AbortSignal.any([AbortSignal.timeout(PROBE_MS), ...(o.signal ? [o.signal] : [])]);
  let data = Buffer.alloc(0);
  try {
    for (let want = FIRST; data.length < LAST; ) {
      // Only the bytes not yet here: each round continues where the last one ended.
      const res = await get(o.url, { ...o, signal }, data.length, undefined, 0, want - 1);
      if (res.statusCode !== 206) {
        res.destroy(); // the server ignores Range: it would send the whole bundle
        return undefined;
      }
      const part = await body(res, want - data.length);
      data = Buffer.concat([data, part]);
      try {
        return { ...(await readBundleHead(Readable.from([data]))), bytes: data.length };
      } catch {
        if (data.length < want) return undefined; // the whole file, and its head does not parse
      }
      const end = firstMemberEnd(data);
      want = Math.min(LAST, end !== undefined && end + SIG_AND_SIGNER > data.length ? end + SIG_AND_SIGNER : data.length * 4);
    }
  } catch {
    return undefined;
  }
  return undefined;
}
