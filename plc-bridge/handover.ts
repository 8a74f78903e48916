/**
 * The single-writer role between two bridge instances (docs/plc-bridge.md, Handover).
 *
 * Old instance (answers on the main control socket), only to the successor it spawned itself
 * (startSuccessor: its pid and a token in its environment; anyone else: `handover-refused`):
 *   `handover`      -> stops publishing (Bridge.retire) and answers with its counters; if the
 *                      successor does not confirm within the deadline, or exits first, it
 *                      becomes active again and reports the stall (onStall);
 *   `handover-done` -> gives up the socket path and exits after its writes in flight finished.
 * New instance (`plc-bridge --handover`, listening on a private socket meanwhile):
 *   polls in standby until every group has read, calls `handover`, takes over the counters,
 *   subscribes to sets, calls `handover-done`, then moves its socket onto the main path.
 *
 * Invariants: at every moment at most one instance publishes data; the new one publishes only
 * ticks after the old one's last; a new instance that never becomes ready changes nothing.
 */
import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { renameSync } from 'node:fs';
import { checkUpgrade, runtimeOf } from './active-slot.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { rpcRequest, socketAlive } from '../lib/rpc.js';
import { PlcError } from './errors.js';
import type { Bridge, HandoverState } from './bridge.js';

export interface PredecessorSide {
  bridge: Bridge;
  clock: Clock;
  logger: Logger;
  timeoutMs: number;
  /** The successor this process spawned and waits for (startSuccessor), if any. */
  successor(): SuccessorId | undefined;
  /** Whether a process is alive (the successor that asked for the role may die before confirming). */
  alive?: (pid: number) => boolean;
  /** Data was silenced (handover asked, never confirmed) and this instance took the role back. */
  onStall(stall: { successor: number; silencedMs: number; reason: string }): void;
  /** Called once the successor confirmed: give up the socket path, finish, exit. */
  retire(): Promise<void>;
}

/** Who may take the role: the pid of the successor this process spawned, and the token it was given. */
export interface SuccessorId {
  pid: number;
  token: string;
}

/** The environment variable that carries a successor's token (its environment is its own user's only). */
export const HANDOVER_TOKEN_ENV = 'EDGE_PLC_HANDOVER_TOKEN';
const WATCH_SUCCESSOR_MS = 100;

function sameSuccessor(want: SuccessorId | undefined, params: Record<string, unknown>): boolean {
  if (!want || params.pid !== want.pid || typeof params.token !== 'string') return false;
  const a = Buffer.from(params.token);
  const b = Buffer.from(want.token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The old instance's two methods for its control socket. Only the successor this process spawned
 * (its pid and token) may call them: anyone else in the socket's group is refused
 * `handover-refused`, and the data keeps flowing.
 */
export function predecessorMethods(p: PredecessorSide): Record<string, (params: Record<string, unknown>) => unknown> {
  let pending: { timer: NodeJS.Timeout; watch: NodeJS.Timeout; successor: SuccessorId; since: number } | undefined;
  const alive = p.alive ?? processAlive;
  const takeBack = (reason: string): void => {
    if (!pending) return;
    p.clock.clearTimeout(pending.timer);
    p.clock.clearInterval(pending.watch);
    const { successor, since } = pending;
    pending = undefined;
    p.bridge.resume();
    p.onStall({ successor: successor.pid, silencedMs: p.clock.now() - since, reason });
  };
  return {
    handover: (params) => {
      if (p.bridge.role !== 'active') throw new PlcError('not-active', `this instance is ${p.bridge.role}; it has nothing to hand over`);
      const successor = p.successor();
      if (!sameSuccessor(successor, params) || !successor) {
        p.logger.warn({ caller: params.pid }, 'handover asked by a process this bridge did not start: refused');
        throw new PlcError('handover-refused', 'only the successor this bridge started may take over (upgrade)');
      }
      const state = p.bridge.retire();
      const timer = p.clock.setTimeout(() => takeBack(`the successor did not confirm within ${p.timeoutMs} ms`), p.timeoutMs);
      // A successor that dies between `handover` and `handover-done` must not silence the data
      // until the deadline: take the role back as soon as it is gone.
      const watch = p.clock.setInterval(() => {
        if (!alive(successor.pid)) takeBack('the successor exited before confirming');
      }, WATCH_SUCCESSOR_MS);
      pending = { timer, watch, successor, since: p.clock.now() };
      p.logger.info({ successor: successor.pid }, 'handing over');
      return { ...state, pid: process.pid };
    },
    'handover-done': async (params) => {
      if (!pending) throw new PlcError('not-active', 'no handover is in progress');
      if (!sameSuccessor(pending.successor, params)) throw new PlcError('handover-refused', 'only the successor that asked for the handover may confirm it');
      p.clock.clearTimeout(pending.timer);
      p.clock.clearInterval(pending.watch);
      pending = undefined;
      await p.retire();
      return { pid: process.pid };
    },
  };
}

export interface SuccessorSide {
  bridge: Bridge;
  clock: Clock;
  logger: Logger;
  mainSocket: string;
  ownSocket: string;
  timeoutMs: number;
  /** Whether a device's connection is up (a down PLC does not hold the handover back). */
  linkUp(device: string): boolean;
  /** Called between `handover` and `handover-done`: start taking sets and replaying. */
  activate(): Promise<void>;
  /** The token the running bridge gave this process when it spawned it (HANDOVER_TOKEN_ENV). */
  token: string | undefined;
}

/**
 * Runs the new instance's side; resolves when it holds the role and the main socket path.
 * Rejects with `handover-failed` when it does not become ready in time (the old one is untouched).
 */
export async function takeOver(s: SuccessorSide): Promise<void> {
  const deadline = s.clock.now() + s.timeoutMs;
  while (!s.bridge.ready((d) => s.linkUp(d))) {
    if (s.clock.now() > deadline) throw new PlcError('handover-failed', `not ready within ${s.timeoutMs} ms: some group has not read yet`);
    await new Promise<void>((r) => s.clock.setTimeout(r, 20));
  }
  let state: HandoverState = { seq: {}, lastTick: {} };
  const predecessor = await socketAlive(s.mainSocket);
  if (predecessor) {
    if (s.token === undefined) throw new PlcError('handover-failed', 'a bridge runs, and only it can start its successor: ask it with `upgrade` (this process has no handover token)');
    state = (await rpcRequest(s.mainSocket, 'handover', { pid: process.pid, token: s.token }, Math.max(1000, deadline - s.clock.now()))) as HandoverState;
  } else {
    s.logger.warn({ socket: s.mainSocket }, 'no bridge answers on the main socket; starting a new session');
  }
  s.bridge.takeOver(state);
  await s.activate();
  if (predecessor) await rpcRequest(s.mainSocket, 'handover-done', { pid: process.pid, token: s.token }, 10_000);
  renameSync(s.ownSocket, s.mainSocket);
  s.logger.info({ seq: state.seq }, 'took over the bridge role');
}

export interface UpgradeOptions {
  /** The successor's entry point: `.../dist/agent/cli/index.js` of this or a sibling release. */
  cli: string;
  /** This process's own entry point (process.argv[1]). */
  ownCli: string;
  /** This process's arguments after the entry point; the successor gets the same plus --handover. */
  args: readonly string[];
  mainSocket: string;
  timeoutMs: number;
  logger: Logger;
  clock: Clock;
  env?: NodeJS.ProcessEnv;
  /** Called once the successor is spawned, before it can ask for the role: who may take it. */
  expect(successor: SuccessorId | undefined): void;
}

/**
 * Starts a successor from `cli` in handover mode, on that release's runtime (runtimeOf; detached, in this process's cgroup under
 * systemd, which then follows it through MAINPID=) and resolves with its pid once it answers
 * on the main socket as active. Rejects `handover-failed` when it exits or misses the deadline;
 * this instance then keeps (or takes back) the role.
 */
export async function startSuccessor(o: UpgradeOptions): Promise<{ pid: number }> {
  const allowed = checkUpgrade(o.cli, o.ownCli);
  if (!allowed.ok) throw new PlcError('upgrade-refused', allowed.reason);
  const args = [...process.execArgv, o.cli, ...o.args.filter((a) => a !== '--handover'), '--handover'];
  // The token goes through the environment: /proc/PID/environ is readable by the process's own
  // user only, while its arguments are anyone's to read.
  const token = randomBytes(24).toString('hex');
  // On the successor's own release's runtime, not this process's: an update that changes the
  // runtime moves the bridge onto the new one too (and a rollback back onto the old one).
  const node = runtimeOf(o.cli);
  const child = spawn(node, args, { detached: true, stdio: ['ignore', 'inherit', 'inherit'], env: { ...(o.env ?? process.env), [HANDOVER_TOKEN_ENV]: token } });
  // A runtime that cannot be executed (ENOEXEC, ENOENT) is reported as an 'error' event: without
  // a listener it would take this bridge down instead of failing the handover.
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new PlcError('handover-failed', `the successor could not be started on ${node}${spawnError ? `: ${spawnError.message}` : ''}`);
  o.expect({ pid, token });
  let exited: number | null | undefined;
  child.once('exit', (code, signal) => (exited = code ?? (signal ? -1 : null)));
  o.logger.info({ successor: pid, cli: o.cli, node }, 'successor started');
  const deadline = o.clock.now() + o.timeoutMs + 5000;
  for (;;) {
    if (exited !== undefined) throw new PlcError('handover-failed', `the successor exited (${String(exited)}) before taking over`);
    try {
      const p = (await rpcRequest(o.mainSocket, 'ping', {}, 1000)) as { pid?: number; role?: string };
      if (p.pid === pid && p.role === 'active') return { pid };
    } catch {
      // the path moves during the takeover; ask again
    }
    if (o.clock.now() > deadline) {
      child.kill('SIGKILL');
      throw new PlcError('handover-failed', `the successor did not take over within ${o.timeoutMs} ms`);
    }
    await new Promise<void>((r) => o.clock.setTimeout(() => r(), 50));
  }
}
