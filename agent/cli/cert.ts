/**
 * `edge-agent cert status|csr|install FILE`: the `certificate` operation from the gateway's
 * console (docs/certificates.md), sent through the admin socket as if the WMS had sent it
 * (recorded as `local`), its outcome polled like `edge-agent rollback`'s.
 */
import { readFileSync } from 'node:fs';
import { adminRequest } from '../../core/admin.js';
import { consoleCommandId, daemonAway, latest, type Status } from './rollback.js';
import { contextOrExit, fail } from './context.js';

type Values = Record<string, string | boolean | undefined>;

const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export async function certCommand(v: Values, positionals: string[]): Promise<number> {
  const name = 'edge-agent cert';
  const [action, file, ...extra] = positionals;
  if (action !== 'status' && action !== 'csr' && action !== 'install') {
    process.stderr.write(`${name}: say status, csr or install FILE (got ${JSON.stringify(action ?? '')})\n`);
    return 64;
  }
  if ((action === 'install') !== (file !== undefined) || extra.length > 0) {
    process.stderr.write(`${name}: ${action === 'install' ? 'install takes one FILE (PEM: the certificate, then its chain)' : `${action} takes no FILE`}\n`);
    return 64;
  }
  const keyType = typeof v['key-type'] === 'string' ? v['key-type'] : undefined;
  if (keyType !== undefined && keyType !== 'ec-p256' && keyType !== 'rsa-2048') {
    process.stderr.write(`${name}: --key-type is ec-p256 or rsa-2048\n`);
    return 64;
  }
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let params: Record<string, unknown>;
  try {
    params = action === 'install' ? { action, cert: readFileSync(file!, 'utf8') } : action === 'csr' && keyType ? { action, keyType } : { action };
  } catch (err) {
    return fail(name, err);
  }
  const id = consoleCommandId();
  try {
    await adminRequest(ctx.socket, 'command', { op: 'certificate', params, id });
  } catch (err) {
    if (daemonAway(err)) {
      process.stderr.write(`${name}: the daemon is not running (no admin socket at ${ctx.socket}); start it and try again\n`);
      return 3;
    }
    return fail(name, err);
  }
  const deadline = Date.now() + 120_000;
  let s: Status | undefined;
  for (;;) {
    try {
      s = (await latest(ctx, id)).status;
    } catch (err) {
      return fail(name, err);
    }
    if (s && TERMINAL.has(s.status)) break;
    if (Date.now() >= deadline) {
      process.stderr.write(`${name}: no outcome within 120 s; see \`edge-agent history\` for command ${id}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (v.json === true) process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
  if (s.status !== 'successful') {
    process.stderr.write(`${name} ${action}: ${s.status}: ${s.reason?.code ?? 'unknown'}: ${s.reason?.message ?? 'no reason given'}\n`);
    return 1;
  }
  if (v.json === true) return 0;
  const r = (s.result ?? {}) as Record<string, unknown>;
  if (action === 'csr') process.stdout.write(String(r.csr));
  else if (action === 'install') process.stdout.write(`installed: fingerprint ${String(r.fingerprint)}, valid until ${String(r.notAfter)}\n`);
  else for (const k of ['subject', 'issuer', 'notBefore', 'notAfter', 'fingerprint']) process.stdout.write(`${k.padEnd(12)} ${String(r[k])}\n`);
  if (action === 'status' && typeof r.pendingCsr === 'string') process.stdout.write('pending CSR  yes (edge-agent cert status --json shows it)\n');
  return 0;
}
