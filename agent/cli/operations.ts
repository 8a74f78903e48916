/**
 * `edge-agent operations`, `pause|resume|cancel ID` and `confirm ID STEP --yes|--no` (CONTRACT.md
 * section 5): the operation queue and its controls from the console. The controls are commands
 * sent through the daemon's admin socket (`command`), routed as if the WMS had sent them (the
 * same codes, the same `~/res/{id}`, recorded in the audit trail as `local`); the command line
 * waits for their terminal status.
 *
 * Exit statuses (docs/maintenance.md): 0 done; 1 failed; 2 rejected (the code is printed:
 * not-running, not-waiting, unknown-target, ...); 3 the daemon is not running; 64 usage.
 * `operations` works with the daemon down: it then lists the unfinished commands in the store.
 */
import { adminRequest } from '../../core/admin.js';
import { CommandStore } from '../command-store.js';
import { consoleCommandId } from './rollback.js';
import { contextOrExit, fail, withStoreReadonly, type CliContext } from './context.js';

type Values = Record<string, string | boolean | undefined>;

export interface CommandStatusView {
  id?: string;
  op?: string;
  status: string;
  progress?: { step?: string; percent?: number };
  reason?: { code?: string; message?: string };
  result?: unknown;
}

const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);
const POLL_MS = 200;

export function daemonDown(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

/** Sends a command through the daemon; its id, or an exit code once the reason is written. */
export async function submit(name: string, ctx: CliContext, op: string, params: Record<string, unknown>, extra: { priority?: string } = {}): Promise<string | number> {
  const id = consoleCommandId();
  try {
    await adminRequest(ctx.socket, 'command', { op, params, id, ...extra });
  } catch (err) {
    if (daemonDown(err)) {
      process.stderr.write(`${name}: the daemon is not running (no admin socket at ${ctx.socket}); start it (systemctl start edge-agent) and try again\n`);
      return 3;
    }
    return fail(name, err);
  }
  return id;
}

/**
 * Polls the command's status until it is terminal (or `timeoutSec` passes: undefined); calls
 * `onStatus` whenever it changes.
 */
export async function follow(ctx: CliContext, id: string, timeoutSec: number, onStatus: (s: CommandStatusView) => void = () => undefined): Promise<CommandStatusView | undefined> {
  const deadline = Date.now() + timeoutSec * 1000;
  let last = '';
  for (;;) {
    let s: CommandStatusView | undefined;
    try {
      s = ((await adminRequest(ctx.socket, 'command-status', { id }, 5000)) as CommandStatusView | null) ?? undefined;
    } catch {
      // The daemon restarts (a procedure may restart components, never the agent: but an update
      // queued behind may): read the store.
      s = withStoreReadonly(ctx.store, (db) => {
        const rec = new CommandStore(db).get(id);
        return rec ? (JSON.parse(rec.lastMessage) as CommandStatusView) : undefined;
      });
    }
    if (s) {
      const key = `${s.status}:${s.progress?.step ?? ''}`;
      if (key !== last) {
        last = key;
        onStatus(s);
      }
      if (TERMINAL.has(s.status)) return s;
    }
    if (Date.now() >= deadline) return undefined;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The exit status of a terminal status: 0 successful, 2 rejected, 1 otherwise. */
export function exitOf(s: CommandStatusView): number {
  return s.status === 'successful' ? 0 : s.status === 'rejected' ? 2 : 1;
}

export function reasonLine(name: string, s: CommandStatusView): string {
  return `${name}: ${s.status}: ${s.reason?.code ?? 'unknown'}: ${s.reason?.message ?? 'no reason given'}\n`;
}

function timeoutOf(name: string, v: Values, dflt: number): number | undefined {
  const t = typeof v.timeout === 'string' ? Number(v.timeout) : dflt;
  if (!Number.isFinite(t) || t <= 0) {
    process.stderr.write(`${name}: --timeout must be a positive number of seconds, got ${JSON.stringify(v.timeout)}\n`);
    return undefined;
  }
  return t;
}

/** `edge-agent pause|resume|cancel ID` and `edge-agent confirm ID STEP --yes|--no`. */
export async function controlCommand(op: 'pause' | 'resume' | 'cancel' | 'confirm', v: Values, positionals: string[]): Promise<number> {
  const name = `edge-agent ${op}`;
  const [target, step, ...extra] = positionals;
  const usage = (m: string): number => {
    process.stderr.write(`${name}: ${m}\nUsage: ${op === 'confirm' ? 'edge-agent confirm ID STEP --yes|--no' : `edge-agent ${op} ID`} (see --help)\n`);
    return 64;
  };
  if (target === undefined) return usage('which operation? give its id (edge-agent operations lists them)');
  let params: Record<string, unknown> = { target };
  if (op === 'confirm') {
    if (step === undefined) return usage('which step? give the id of the confirm step the run waits at');
    if (extra.length > 0) return usage(`unexpected ${extra.join(' ')}`);
    if (!!v.yes === !!v.no) return usage('answer with exactly one of --yes or --no');
    params = { target, step, answer: v.yes ? 'yes' : 'no' };
  } else if (step !== undefined) return usage(`unexpected ${[step, ...extra].join(' ')}`);
  const timeoutSec = timeoutOf(name, v, 120);
  if (timeoutSec === undefined) return 64;
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  const id = await submit(name, ctx, op, params);
  if (typeof id === 'number') return id;
  const s = await follow(ctx, id, timeoutSec);
  if (!s) {
    process.stderr.write(`${name}: no answer within ${timeoutSec} s (command ${id}); see \`edge-agent operations\`\n`);
    return 1;
  }
  if (v.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
  else if (s.status === 'successful') {
    const r = (s.result ?? {}) as { state?: string; step?: string | null };
    const what = op === 'pause' ? `paused${r.step ? ` (next step after ${r.step})` : ''}` : op === 'resume' ? 'running again' : op === 'cancel' ? 'cancel requested: it stops at its next step boundary, then rolls back' : `answered ${String(params.answer)}`;
    process.stdout.write(`${target}: ${what}\n`);
  }
  if (s.status !== 'successful') process.stderr.write(reasonLine(name, s));
  return exitOf(s);
}

interface OperationView {
  id: string;
  op: string;
  state: string;
  exclusive?: boolean;
  priority?: string;
  origin?: { trigger: string; actor: string };
  since?: string;
  step?: string | null;
  position?: number;
  run?: { procedure: string; state: string; step?: string; percent: number; dryRun: boolean; confirm?: { step: string; message: string; expiresAt: string } };
}

/** `edge-agent operations [--json]`: what runs and waits, in the order it will start. */
export async function operationsCommand(v: Values): Promise<number> {
  const name = 'edge-agent operations';
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  let ops: OperationView[];
  let daemon = 'running';
  try {
    ops = ((await adminRequest(ctx.socket, 'operations', {}, 5000)) as { operations: OperationView[] }).operations;
  } catch (err) {
    if (!daemonDown(err)) return fail(name, err);
    daemon = 'not running';
    ops =
      withStoreReadonly(ctx.store, (db) =>
        new CommandStore(db).unfinished().map((r) => ({ id: r.id, op: r.op, state: r.status === 'accepted' ? 'waiting' : 'interrupted', priority: r.priority, origin: r.origin, since: new Date(r.receivedAt).toISOString() })),
      ) ?? [];
  }
  if (v.json) {
    process.stdout.write(JSON.stringify({ daemon, operations: ops }, null, 2) + '\n');
    return 0;
  }
  if (daemon !== 'running') process.stdout.write(`the daemon is not running: these commands resume when it starts\n`);
  if (ops.length === 0) {
    process.stdout.write('no operation is running or waiting\n');
    return 0;
  }
  for (const o of ops) {
    const state = o.run?.state === 'paused' ? 'paused' : o.run?.confirm ? 'waiting for confirm' : o.state;
    const what = o.run ? `${o.op} ${o.run.procedure}${o.run.dryRun ? ' (dry run)' : ''}` : o.op;
    const step = o.run?.confirm ? ` at ${o.run.confirm.step}: "${o.run.confirm.message}" (until ${o.run.confirm.expiresAt}; edge-agent confirm ${o.id} ${o.run.confirm.step} --yes|--no)` : o.run?.step ? ` step ${o.run.step} (${o.run.percent} %)` : o.step ? ` step ${o.step}` : '';
    const pos = o.position !== undefined ? ` #${o.position}` : '';
    process.stdout.write(`${o.id}  ${state}${pos}  ${what}  priority ${o.priority ?? 'normal'}${o.exclusive ? ', exclusive' : ''}  from ${o.origin?.actor ?? '?'}  since ${o.since ?? '?'}${step}\n`);
  }
  return 0;
}
