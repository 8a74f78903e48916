/**
 * `edge-agent console pair [--role viewer|operator] [--json]` and `edge-agent console sessions
 * [--revoke LABEL|all] [--json]`: the web console's one-time pairing code and its sessions,
 * through the admin socket (root or the agent's group: the socket is 0660). The sessions live in
 * the daemon only, so both need it running.
 */
import { adminRequest } from '../../core/admin.js';
import { contextOrExit, fail } from './context.js';

type Values = Record<string, string | boolean | undefined>;

interface Pair {
  url: string;
  code: string;
  role: string;
  expiresAt: string;
}

interface SessionRow {
  label: string;
  role: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
}

export function formatSessions(list: readonly SessionRow[]): string {
  if (list.length === 0) return 'no console sessions\n';
  const rows = list.map((s) => `${s.label}  ${s.role.padEnd(8)}  paired ${s.createdAt}  last seen ${s.lastSeenAt}  ends ${s.expiresAt}`);
  return `${rows.join('\n')}\n`;
}

export async function consoleCommand(v: Values, positionals: string[]): Promise<number> {
  const sub = positionals[0];
  const name = `edge-agent console ${sub ?? ''}`.trim();
  if (sub !== 'pair' && sub !== 'sessions') {
    process.stderr.write(`edge-agent console: pair or sessions, got ${JSON.stringify(sub ?? '')} (see --help)\n`);
    return 64;
  }
  const role = typeof v.role === 'string' ? v.role : 'viewer';
  if (sub === 'pair' && role !== 'viewer' && role !== 'operator') {
    process.stderr.write(`${name}: --role is viewer or operator, got ${JSON.stringify(role)}\n`);
    return 64;
  }
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let res: unknown;
  try {
    res = sub === 'pair' ? await adminRequest(ctx.socket, 'console-pair', { role }) : await adminRequest(ctx.socket, 'console-sessions', typeof v.revoke === 'string' ? { revoke: v.revoke } : {});
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      process.stderr.write(`${name}: the daemon is not running (no admin socket at ${ctx.socket}); the console lives in it: start it and try again\n`);
      return 3;
    }
    return fail(name, err);
  }
  if (v.json) {
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    return 0;
  }
  if (sub === 'pair') {
    const p = res as Pair;
    process.stdout.write(`Open this URL in a browser on this machine (one use, ${p.role}, valid until ${p.expiresAt}):\n\n  ${p.url}\n\nor type the code ${p.code} on the console's pairing page.\n`);
    return 0;
  }
  const s = res as { sessions: SessionRow[]; revoked?: number };
  if (s.revoked !== undefined) process.stdout.write(`revoked ${s.revoked} session${s.revoked === 1 ? '' : 's'}\n`);
  process.stdout.write(formatSessions(s.sessions));
  return s.revoked === 0 ? 1 : 0;
}
