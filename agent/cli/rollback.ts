/**
 * `edge-agent rollback`: the `rollback` operation from the console. The daemon runs it as if the
 * WMS had sent it (admin method `command`; the WMS sees its statuses on ~/res/{id} too). A
 * rollback restarts the agent, so the outcome is polled with a deadline: over the admin socket
 * (`command-status`) while a daemon answers, else from the state store (read-only), where the
 * next release's `resume` writes the terminal status.
 */
import { randomBytes } from 'node:crypto';
import { adminRequest } from '../../core/admin.js';
import { CommandStore } from '../command-store.js';
import { contextOrExit, fail, withStoreReadonly, type CliContext } from './context.js';

type Values = Record<string, string | boolean | undefined>;

export const DEFAULT_TIMEOUT_SEC = 60;
const POLL_MS = 250;
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export interface Status {
  status: string;
  progress?: { step?: string };
  reason?: { code?: string; message?: string; details?: { path: string; message: string }[] };
  result?: unknown;
}

/** The socket errors that mean "no daemon answers right now" (down, restarting, busy). */
export function daemonAway(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'admin-timeout';
}

export function consoleCommandId(now = Date.now()): string {
  return `console-${now}-${randomBytes(4).toString('hex')}`;
}

/** The command's latest status: from the daemon, else from the store; undefined when neither knows it yet. */
export async function latest(ctx: CliContext, id: string): Promise<{ from: 'daemon' | 'store'; status: Status | undefined }> {
  try {
    const s = (await adminRequest(ctx.socket, 'command-status', { id }, 2000)) as Status | null;
    return { from: 'daemon', status: s ?? undefined };
  } catch (err) {
    if (!daemonAway(err)) throw err;
  }
  const status = withStoreReadonly(ctx.store, (db) => {
    const rec = new CommandStore(db).get(id);
    return rec ? (JSON.parse(rec.lastMessage) as Status) : undefined;
  });
  return { from: 'store', status };
}

function describe(s: Status): string {
  return s.status === 'executing' && s.progress?.step ? `executing (${s.progress.step})` : s.status;
}

export async function rollbackCommand(v: Values): Promise<number> {
  const name = 'edge-agent rollback';
  const timeoutSec = typeof v.timeout === 'string' ? Number(v.timeout) : DEFAULT_TIMEOUT_SEC;
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) {
    process.stderr.write(`${name}: --timeout must be a positive number of seconds, got ${JSON.stringify(v.timeout)}\n`);
    return 64;
  }
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  const id = consoleCommandId();
  try {
    await adminRequest(ctx.socket, 'command', { op: 'rollback', params: {}, id });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      process.stderr.write(`${name}: the daemon is not running (no admin socket at ${ctx.socket}); start it (systemctl start edge-agent) and try again\n`);
      return 3;
    }
    return fail(name, err);
  }
  process.stdout.write(`rollback requested as command ${id}\n`);

  const deadline = Date.now() + timeoutSec * 1000;
  let shown = '';
  let away = false;
  for (;;) {
    let r: Awaited<ReturnType<typeof latest>>;
    try {
      r = await latest(ctx, id);
    } catch (err) {
      return fail(name, err);
    }
    if (r.from === 'store' && !away) process.stdout.write('the agent is restarting; waiting for it to report the outcome\n');
    away = r.from === 'store';
    const s = r.status;
    if (s && describe(s) !== shown) {
      shown = describe(s);
      process.stdout.write(`${shown}\n`);
    }
    if (s && TERMINAL.has(s.status)) return outcome(s);
    if (Date.now() >= deadline) {
      process.stderr.write(
        `${name}: no outcome within ${timeoutSec} s (last status: ${shown || 'none'}); see \`edge-agent history\` for command ${id} later\n`,
      );
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function outcome(s: Status): number {
  if (s.status === 'successful') {
    const r = s.result as { fromVersion?: string; toVersion?: string; slot?: string } | undefined;
    process.stdout.write(`rolled back${r ? `: ${r.fromVersion ?? '?'} -> ${r.toVersion ?? '?'}, now running slot ${r.slot ?? '?'}` : ''}\n`);
    return 0;
  }
  process.stderr.write(`edge-agent rollback: ${s.status}: ${s.reason?.code ?? 'unknown'}: ${s.reason?.message ?? 'no reason given'}\n`);
  return 1;
}
