/**
 * Bundle download over HTTP(S), as one continuous stream of the bundle's bytes even when the
 * connection breaks: the next request asks for the rest with `Range: bytes=N-` (RFC 9110 14.2)
 * and `If-Range` with the first response's validator, so a bundle that changed on the server is
 * never spliced onto the old bytes. A server that ignores Range gets its first N bytes skipped.
 *
 * The stream is consumed directly by the bundle reader: no temporary copy of the bundle, and
 * backpressure pauses the socket, so memory does not grow with the bundle's size.
 *
 * INVARIANTS
 * - The download ends for good when its consumer destroys the stream (the bundle reader
 *   refused the bundle), when `signal` aborts, or when it fails: no request is made and no
 *   progress is reported after that. `done` settles only once the last connection is closed.
 * - Throughput is bounded from below: over each `stallWindowMs` at least
 *   `minBytesPerSecond` on average must arrive (reconnects and backoff waits included), or the
 *   download fails `download-stalled`; a server that trickles cannot hold the update slot.
 * - A server that answered with bytes and then refuses the rest (401, 403, 404 or 410 to a
 *   Range request: a presigned or CDN-token URL that expired mid-download) fails `url-expired`
 *   at once, without retries: the same URL will not work again, a fresh one will resume.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import { backoffDelay, type BackoffPolicy } from '../lib/backoff.js';
import { OtaError } from './errors.js';

export interface DownloadOptions {
  url: string;
  /** PEM CA bundle for https; the system's CAs when absent. */
  ca?: Buffer | undefined;
  maxBytes: number;
  /** Expected size and SHA-256 of the whole file, from the command, when given. */
  size?: number | undefined;
  sha256?: string | undefined;
  /** Start at this offset (resume after a restart); `ifRange` is the validator seen then. */
  startAt?: number;
  ifRange?: string | undefined;
  /** A connection that delivers nothing for this long is dropped and resumed. */
  idleTimeoutMs?: number;
  /** Broken connections resumed before giving up. */
  retries?: number;
  /** Below this average over a window of `stallWindowMs`, the download fails (0: no bound). */
  minBytesPerSecond?: number;
  stallWindowMs?: number;
  backoff?: BackoffPolicy;
  signal?: AbortSignal | undefined;
  onProgress?(received: number, total: number | undefined): void;
}

export interface DownloadResult {
  bytes: number;
  total: number | undefined;
  validator: string | undefined;
  sha256: string | undefined;
}

const MAX_REDIRECTS = 5;
/** What a presigned URL (S3: 403) or a CDN token (403, 404, 410; 401 for some) answers once expired. */
const EXPIRED_STATUSES = new Set([401, 403, 404, 410]);

export interface Download {
  stream: Readable;
  /** Resolves when every byte was delivered and checked; rejects with an OtaError otherwise. */
  done: Promise<DownloadResult>;
  /** The server's validator (ETag or Last-Modified) once known: keep it to resume later. */
  validator(): string | undefined;
}

export function download(opts: DownloadOptions): Download {
  const out = new PassThrough({ highWaterMark: 256 * 1024 });
  const seen = { validator: opts.ifRange };
  // One signal ends every part of the download: the caller's, the consumer gone, a stall.
  const stop = new AbortController();
  const onCallerAbort = (): void => stop.abort(new OtaError('download-failed', 'download cancelled'));
  if (opts.signal?.aborted) onCallerAbort();
  else opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const onConsumerGone = (): void => stop.abort(new OtaError('download-failed', 'the bundle reader stopped reading'));
  out.once('close', onConsumerGone);
  const done = run({ ...opts, signal: stop.signal }, out, seen, stop).finally(() => {
    opts.signal?.removeEventListener('abort', onCallerAbort);
    out.off('close', onConsumerGone);
  });
  done.then(
    () => out.end(),
    (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  // The consumer learns of failures through the stream; `done` is for the caller's bookkeeping.
  done.catch(() => undefined);
  return { stream: out, done, validator: () => seen.validator };
}

/** The reason `signal` was aborted with, as the OtaError the download rejects with. */
function stopReason(signal: AbortSignal): OtaError {
  return signal.reason instanceof OtaError ? signal.reason : new OtaError('download-failed', 'download cancelled');
}

/** Checks the throughput at the end of each window; aborts `stop` with download-stalled. */
function watchThroughput(opts: DownloadOptions, at: { offset: number }, stop: AbortController): () => void {
  const min = opts.minBytesPerSecond ?? 0;
  const windowMs = opts.stallWindowMs ?? 60_000;
  if (min <= 0 || windowMs <= 0) return () => undefined;
  let from = at.offset;
  const timer = setInterval(() => {
    const got = at.offset - from;
    from = at.offset;
    if (got * 1000 < min * windowMs) {
      stop.abort(new OtaError('download-stalled', `${got} bytes arrived in the last ${windowMs} ms, below the minimum of ${min} bytes/s (ota.download.minBytesPerSecond)`));
    }
  }, windowMs);
  return () => clearInterval(timer);
}

async function run(opts: DownloadOptions, out: PassThrough, seen: { validator: string | undefined }, stop: AbortController): Promise<DownloadResult> {
  // `at.offset` moves with every byte delivered, also on a connection that then breaks.
  const at = { offset: opts.startAt ?? 0 };
  const unwatch = watchThroughput(opts, at, stop);
  try {
    return await attempts(opts, out, seen, at, stop.signal);
  } finally {
    unwatch();
  }
}

async function attempts(opts: DownloadOptions, out: PassThrough, seen: { validator: string | undefined }, at: { offset: number }, signal: AbortSignal): Promise<DownloadResult> {
  // A whole-file hash is only possible when we see every byte from the start.
  const hash = at.offset === 0 && opts.sha256 ? createHash('sha256') : undefined;
  let validator = opts.ifRange;
  let total: number | undefined;
  let failures = 0;
  const retries = opts.retries ?? 5;
  for (;;) {
    if (signal.aborted) throw stopReason(signal);
    try {
      const res = await get(opts.url, opts, at.offset, validator);
      const skip = at.offset > 0 && res.statusCode === 200 ? at.offset : 0;
      if (res.statusCode === 200 && at.offset > 0 && validator && res.headers.etag && res.headers.etag !== validator) {
        res.destroy();
        throw new OtaError('download-failed', 'the bundle changed on the server during the download');
      }
      total = totalSize(res, at.offset);
      if (total !== undefined && total > opts.maxBytes) {
        res.destroy();
        throw new OtaError('download-too-large', `the bundle is ${total} bytes, over the limit of ${opts.maxBytes}`);
      }
      if (opts.size !== undefined && total !== undefined && total !== opts.size) {
        res.destroy();
        throw new OtaError('download-checksum', `the server offers ${total} bytes; the command said ${opts.size}`);
      }
      validator ??= typeof res.headers.etag === 'string' ? res.headers.etag : (res.headers['last-modified'] ?? undefined);
      seen.validator = validator;
      await pump(res, out, at, skip, opts, hash, total);
      if (total === undefined || at.offset >= total) break;
      throw new OtaError('download-failed', `connection closed at ${at.offset} of ${total} bytes`);
    } catch (err) {
      if (signal.aborted) throw stopReason(signal);
      if (err instanceof OtaError && err.code !== 'download-failed') throw err;
      if (++failures > retries) throw err instanceof OtaError ? err : new OtaError('download-failed', (err as Error).message, { cause: err });
      await sleep(backoffDelay(opts.backoff ?? { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 1 }, failures - 1), signal);
      if (signal.aborted) throw stopReason(signal);
    }
  }
  if (opts.size !== undefined && at.offset !== opts.size) throw new OtaError('download-checksum', `received ${at.offset} bytes; the command said ${opts.size}`);
  const digest = hash?.digest('hex');
  if (hash && opts.sha256 && digest !== opts.sha256.toLowerCase()) {
    throw new OtaError('download-checksum', `sha256 of the download is ${digest}, the command said ${opts.sha256}`);
  }
  return { bytes: at.offset, total, validator, sha256: digest };
}

function totalSize(res: IncomingMessage, offset: number): number | undefined {
  if (res.statusCode === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
    if (!m || Number(m[1]) !== offset) throw new OtaError('download-failed', `unexpected Content-Range ${res.headers['content-range'] ?? '(none)'}`);
    return m[3] === '*' ? undefined : Number(m[3]);
  }
  const len = Number(res.headers['content-length']);
  return Number.isFinite(len) && res.headers['content-length'] !== undefined ? len : undefined;
}

/** Copies the body into `out` with backpressure, advancing `at.offset` with every byte. */
function pump(res: IncomingMessage, out: PassThrough, at: { offset: number }, skip: number, opts: DownloadOptions, hash: ReturnType<typeof createHash> | undefined, total: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let toSkip = skip;
    const idle = opts.idleTimeoutMs ?? 30_000;
    let timer = setTimeout(() => res.destroy(new Error('no data')), idle);
    const onAbort = (): void => {
      res.destroy(new Error('cancelled'));
    };
    let finished = false;
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (err?: Error): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      out.off('drain', onDrain);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => {
      res.resume();
    };
    out.on('drain', onDrain);
    res.on('data', (chunk: Buffer) => {
      if (finished || opts.signal?.aborted) return;
      clearTimeout(timer);
      timer = setTimeout(() => res.destroy(new Error('no data')), idle);
      let data = chunk;
      if (toSkip > 0) {
        const n = Math.min(toSkip, data.length);
        toSkip -= n;
        data = data.subarray(n);
        if (data.length === 0) return;
      }
      at.offset += data.length;
      if (at.offset > opts.maxBytes) {
        res.destroy();
        finish(new OtaError('download-too-large', `the bundle is over the limit of ${opts.maxBytes} bytes`));
        return;
      }
      hash?.update(data);
      if (out.destroyed) return;
      if (!out.write(data)) res.pause();
      opts.onProgress?.(at.offset, total);
    });
    res.on('end', () => finish());
    res.on('error', (err) => finish(err));
    res.on('aborted', () => finish(new Error('connection aborted')));
    const onClose = (): void => {
      res.destroy();
    };
    out.once('close', onClose);
    res.once('close', () => {
      out.off('close', onClose);
      // Destroyed without an error (no 'error' event follows): still settle, after 'end' a no-op.
      finish(new Error('connection closed'));
    });
  });
}

/**
 * One GET of `url` from `offset` (and up to `end`, inclusive, when given: a bounded Range), with
 * redirects followed; resolves with a 200 or 206 response, rejects with an OtaError otherwise.
 */
export function get(url: string, opts: Pick<DownloadOptions, 'ca' | 'idleTimeoutMs' | 'signal'>, offset: number, validator: string | undefined, redirects = 0, end?: number): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new OtaError('download-failed', `not a URL: ${url}`));
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new OtaError('download-failed', `unsupported scheme ${u.protocol}; use http or https`));
      return;
    }
    const headers: Record<string, string> = { 'user-agent': 'edge-agent', 'accept-encoding': 'identity' };
    if (end !== undefined) headers.range = `bytes=${offset}-${end}`;
    else if (offset > 0) {
      headers.range = `bytes=${offset}-`;
      if (validator) headers['if-range'] = validator;
    }
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'GET', headers, ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.signal ? { signal: opts.signal } : {}), timeout: opts.idleTimeoutMs ?? 30_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new OtaError('download-failed', 'too many redirects'));
        get(new URL(res.headers.location, u).toString(), opts, offset, validator, redirects + 1, end).then(resolve, reject);
        return;
      }
      if (status === 416 && offset > 0) {
        res.resume();
        return reject(new OtaError('download-failed', 'the server cannot resume at the saved offset (416)'));
      }
      if (offset > 0 && EXPIRED_STATUSES.has(status)) {
        res.resume();
        return reject(new OtaError('url-expired', `the server answered ${status} for ${u.origin}${u.pathname} after ${offset} bytes: the URL has expired; send the update again with a fresh URL to resume`));
      }
      if (status !== 200 && status !== 206) {
        res.resume();
        const err = new OtaError(status >= 400 && status < 500 ? 'download-http-status' : 'download-failed', `the server answered ${status} for ${u.origin}${u.pathname}`);
        return reject(err);
      }
      resolve(res);
    });
    req.on('timeout', () => req.destroy(new Error('connect timeout')));
    req.on('error', reject);
    req.end();
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
