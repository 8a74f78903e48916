/**
 * The `diagnostics` operation: runs the diagnostics suite (health/diag/) inside the daemon; the
 * report is the `result`. With `params.upload: {url, headers?}` it also makes the support bundle
 * and PUTs it there (http or https, bounded in time and size); `result.upload` says how it went.
 *
 * The suite is loaded on the first command, not at start: the daemon's start-up is on the path
 * of every restart and update, and diagnostics are rare.
 */
import { z } from 'zod';
import type { OperationHandler } from '../../core/ports.js';
import type { DaemonDiagnostics, DaemonDiagOptions } from '../../health/diag/daemon.js';
// Registers the diag error codes at start (it imports nothing heavy).
import '../../health/diag/errors.js';
import { agentStoreReader } from '../store-reader.js';

export const diagnosticsParams = z
  .object({
    upload: z
      .object({
        url: z.string().max(4096).regex(/^https?:\/\/[^\s]+$/, 'must be an http or https URL'),
        headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,128}$/, 'must be a header name'), z.string().max(8192)).optional(),
      })
      .strict()
      .optional(),
  })
  .passthrough();

export const REDACTED = '[redacted]';

/** A URL without its credentials: user info and the query (a pre-signed URL's signature) replaced. Pure. */
export function redactSecretUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = REDACTED;
      u.password = '';
    }
    if (u.search) u.search = `?${REDACTED}`;
    return u.toString();
  } catch {
    return REDACTED;
  }
}

/** The params as they may be stored: every upload header value and the URL's credentials redacted. Pure. */
export function redactDiagnosticsParams(p: z.infer<typeof diagnosticsParams>): z.infer<typeof diagnosticsParams> {
  if (!p.upload) return p;
  const headers = p.upload.headers ? Object.fromEntries(Object.keys(p.upload.headers).map((k) => [k, REDACTED])) : undefined;
  return { ...p, upload: { url: redactSecretUrl(p.upload.url), ...(headers ? { headers } : {}) } };
}

export function diagnosticsOperation(opts: Omit<DaemonDiagOptions, 'storeReader'>): OperationHandler<z.infer<typeof diagnosticsParams>> {
  let diag: Promise<DaemonDiagnostics> | undefined;
  const load = (): Promise<DaemonDiagnostics> => (diag ??= import('../../health/diag/daemon.js').then((m) => new m.DaemonDiagnostics({ ...opts, storeReader: agentStoreReader })));
  return {
    op: 'diagnostics',
    params: diagnosticsParams,
    redactParams: redactDiagnosticsParams,
    async execute(ctx) {
      const result = await (await load()).run({ upload: ctx.params.upload }, (step) => ctx.progress(step));
      return { status: 'successful', result };
    },
  };
}
