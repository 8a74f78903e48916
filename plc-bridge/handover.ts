/**
 * The single-writer role between two bridge instances (docs/plc-bridge.md, Handover).
 *
 * Old instance (answers on the main control socket):
 *   `handover`      -> stops publishing (Bridge.retire) and answers with its counters; if the
 *                      successor does not confirm within the deadline it becomes active again;
 *   `handover-done` -> gives up the socket path and exits after its writes in flight finished.
 * New instance (`plc-bridge --handover`, listening on a private socket meanwhile):
 *   polls in standby until every group has read, calls `handover`, takes over the counters,
 *   subscribes to sets, calls `handover-done`, then moves its socket onto the main path.
 *
 * Invariants: at every moment at most one instance publishes data; the new one publishes only
 * ticks after the old one's last; a new instance that never becomes ready changes nothing.
 */
import { spawn } from 'node:child_process';
import { realpathSync, renameSync } from 'node:fs';
import { dirname, isAbsolute, join, sep } from 'node:path';
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
  /** Called once the successor confirmed: give up the socket path, finish, exit. */
  retire(): Promise<void>;
}

/** The old instance's two methods for its control socket. */
export function predecessorMethods(p: PredecessorSide): Record<string, (params: Record<string, unknown>) => unknown> {
  let pending: { timer: NodeJS.Timeout; successor: unknown } | undefined;
  return {
    handover: (params) => {
      if (p.bridge.role !== 'active') throw new PlcError('not-active', `this instance is ${p.bridge.role}; it has nothing to hand over`);
      const state = p.bridge.retire();
      const timer = p.clock.setTimeout(() => {
        pending = undefined;
        p.bridge.resume();
        p.logger.warn({ successor: params.pid }, 'the successor did not confirm the handover; staying active');
      }, p.timeoutMs);
      pending = { timer, successor: params.pid };
      p.logger.info({ successor: params.pid }, 'handing over');
      return { ...state, pid: process.pid };
    },
    'handover-done': async () => {
      if (!pending) throw new PlcError('not-active', 'no handover is in progress');
      p.clock.clearTimeout(pending.timer);
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
    state = (await rpcRequest(s.mainSocket, 'handover', { pid: process.pid }, Math.max(1000, deadline - s.clock.now()))) as HandoverState;
  } else {
    s.logger.warn({ socket: s.mainSocket }, 'no bridge answers on the main socket; starting a new session');
  }
  s.bridge.takeOver(state);
  await s.activate();
  if (predecessor) await rpcRequest(s.mainSocket, 'handover-done', { pid: process.pid }, 10_000);
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
}

const CLI_SUFFIX = join('dist', 'agent', 'cli', 'index.js');

/**
 * Only the entry point of this release or of a sibling release directory (the other A/B slot)
 * may be started: the control socket is local and 0660, but it still never runs a path it is
 * handed from anywhere else.
 */
export function allowedSuccessor(cli: string, ownCli: string): boolean {
  let real: string;
  let own: string;
  try {
    real = realpathSync(cli);
    own = realpathSync(ownCli);
  } catch {
    return false;
  }
  if (!isAbsolute(cli) || !real.endsWith(sep + CLI_SUFFIX) || !own.endsWith(sep + CLI_SUFFIX)) return false;
  const release = real.slice(0, -(CLI_SUFFIX.length + 1));
  const ownRelease = own.slice(0, -(CLI_SUFFIX.length + 1));
  return release === ownRelease || dirname(release) === dirname(ownRelease);
}

/**
 * Starts a successor from `cli` in handover mode (detached, in this process's cgroup under
 * systemd, which then follows it through MAINPID=) and resolves with its pid once it answers
 * on the main socket as active. Rejects `handover-failed` when it exits or misses the deadline;
 * this instance then keeps (or takes back) the role.
 */
export async function startSuccessor(o: UpgradeOptions): Promise<{ pid: number }> {
  if (!allowedSuccessor(o.cli, o.ownCli)) throw new PlcError('invalid-params', `not an edge-agent release entry point next to this one: ${o.cli}`);
  const args = [...process.execArgv, o.cli, ...o.args.filter((a) => a !== '--handover'), '--handover'];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'inherit', 'inherit'], env: o.env ?? process.env });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new PlcError('handover-failed', 'the successor could not be started');
  let exited: number | null | undefined;
  child.once('exit', (code, signal) => (exited = code ?? (signal ? -1 : null)));
  o.logger.info({ successor: pid, cli: o.cli }, 'successor started');
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
