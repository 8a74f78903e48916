/**
 * PUT of a file (the support bundle) to a URL the WMS gives: http or https, bounded in time and
 * size, never following redirects (a redirect could send the bundle somewhere else). The URL in
 * the outcome keeps only origin and path: a pre-signed URL's query string is a credential, and
 * the request headers (Authorization, ...) are never reported or logged.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import type { DiagCode } from './errors.js';

export interface UploadTarget {
  url: string;
  headers?: Record<string, string> | undefined;
}

export interface UploadOutcome {
  ok: boolean;
  /** Origin and path only. */
  url: string;
  bytes: number;
  durationMs: number;
  httpStatus?: number;
  error?: { code: DiagCode; message: string };
}

/** Origin and path of a URL, without user info, query or fragment; pure. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

export async function uploadFile(path: string, target: UploadTarget, opts: { timeoutMs: number; maxBytes: number; ca?: Buffer | undefined }): Promise<UploadOutcome> {
  const t0 = Date.now();
  const bytes = (await stat(path)).size;
  const base = { url: safeUrl(target.url), bytes };
  const fail = (code: DiagCode, message: string, httpStatus?: number): UploadOutcome => ({ ok: false, ...base, durationMs: Date.now() - t0, ...(httpStatus ? { httpStatus } : {}), error: { code, message } });
  if (bytes > opts.maxBytes) return fail('upload-too-large', `the bundle has ${bytes} bytes, more than diag.upload.maxBytes (${opts.maxBytes})`);
  const u = new URL(target.url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail('upload-failed', `${u.protocol} URLs are not supported; use http or https`);
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const headers = { ...(target.headers ?? {}), 'content-type': 'application/gzip', 'content-length': String(bytes) };
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(u, { method: 'PUT', headers, signal, ...(opts.ca ? { ca: opts.ca } : {}) }, resolve);
      req.once('error', reject);
      pipeline(createReadStream(path), req).catch(reject);
    });
    res.resume(); // the body is not needed (and may echo what we sent)
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return { ok: true, ...base, durationMs: Date.now() - t0, httpStatus: status };
    return fail('upload-rejected', `the server answered ${status} ${res.statusMessage ?? ''}`.trim(), status);
  } catch (err) {
    if (signal.aborted) return fail('upload-timeout', `the upload did not finish within ${opts.timeoutMs} ms`);
    return fail('upload-failed', err instanceof Error ? err.message : String(err));
  }
}
