/**
 * The real PLC bridge as a child process (`edge-agent plc-bridge`), for integration tests: a
 * generated YAML config, JSON log lines collected, its control socket, stop/kill9 and exit waits.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { rpcRequest } from '../../lib/rpc.js';
import { CLI, spawnCli } from './agent.js';
import { collectLines, exitOf, linesText, waitFor, type ChildExit, type OutputLine } from './util.js';

export interface BridgeProcess {
  proc: ChildProcess;
  pid: number;
  logs: OutputLine[];
  exited: Promise<ChildExit>;
  stop(): Promise<ChildExit>;
  kill9(): Promise<void>;
  logText(): string;
}

/** Writes `{dir}/plc-bridge.yaml` with dataDir `{dir}/data`; returns its path. */
export function writeBridgeConfig(dir: string, config: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'plc-bridge.yaml');
  writeFileSync(path, stringify({ gatewayId: 'gw-test', dataDir: join(dir, 'data'), ...config }));
  return path;
}

/** `n` uint16 holding-register tags `{prefix}{i}` at addresses `from`..`from + n - 1`. */
export function holdingTags(n: number, from = 0, prefix = 'r'): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, area: 'holding', address: from + i, type: 'uint16' }));
}

/** The `counter` tag: holding register 0, which the simulated PLC's `--churn` changes on every read. */
export const COUNTER_TAG = { name: 'counter', area: 'holding', address: 0, type: 'uint16' } as const;

/** A 500 ms group `cmd` with one writable tag, `setpoint` at holding register 100: the tests' write target. */
export const SETPOINT_GROUP = { name: 'cmd', intervalMs: 500, tags: [{ name: 'setpoint', area: 'holding', address: 100, type: 'uint16', access: 'read-write' }] } as const;

/** The bridge's configuration for one PLC, `plc0` on 127.0.0.1:`port`, with these groups. */
export function onePlc(brokerUrl: string, port: number | undefined, groups: readonly unknown[], timeoutMs = 500): Record<string, unknown> {
  return { mqtt: { url: brokerUrl }, devices: [{ name: 'plc0', host: '127.0.0.1', port, unitId: 1, timeoutMs, groups }] };
}

export function bridgeSocketOf(dir: string): string {
  return join(dir, 'data', 'plc-bridge.sock');
}

export function startBridge(configPath: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): BridgeProcess {
  const proc = spawnCli(['plc-bridge', '--config', configPath, ...args], env);
  const logs = collectLines(proc);
  const exited = exitOf(proc);
  return {
    proc,
    pid: proc.pid ?? -1,
    logs,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    logText: () => linesText(logs),
  };
}

export interface Ping {
  pid: number;
  role: string;
  session: string;
  version: string;
  /** The entry point the bridge runs from (the release it belongs to). */
  cli?: string;
}

export async function bridgePing(socket: string, timeoutMs = 2000): Promise<Ping | undefined> {
  try {
    return (await rpcRequest(socket, 'ping', {}, timeoutMs)) as Ping;
  } catch {
    return undefined;
  }
}

/** Waits until the bridge with this pid answers on the main socket as `active`. */
export async function bridgeActive(socket: string, b: BridgeProcess, timeoutMs = 20_000): Promise<void> {
  try {
    await waitFor(
      async () => {
        if (b.proc.exitCode !== null || b.proc.signalCode !== null) throw new Error(`bridge ${b.pid} exited`);
        const p = await bridgePing(socket);
        return p?.pid === b.pid && p.role === 'active';
      },
      { timeoutMs, what: `bridge ${b.pid} active on ${socket}` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; its log:\n${b.logText().slice(-4000)}`);
  }
}

/**
 * Asks the running bridge to hand over to a successor it starts itself from `cli` (this build's
 * by default): the only way a handover happens (`upgrade`, docs/plc-bridge.md). Resolves with the
 * successor's pid once it holds the role. The successor writes to the old bridge's stdout, so its
 * log lines arrive in the first bridge's `logs`.
 */
export async function upgradeBridge(socket: string, cli = CLI, timeoutMs = 60_000): Promise<number> {
  const before = await bridgePing(socket);
  try {
    const r = (await rpcRequest(socket, 'upgrade', { cli }, timeoutMs)) as { pid: number };
    return r.pid;
  } catch (err) {
    // The old bridge answers once its successor has the role, and exits right after: its answer
    // may not make it out (agent/bridge-upgrade.ts). What counts is who answers `ping` now.
    let pid: number | undefined;
    await waitFor(
      async () => {
        const p = await bridgePing(socket);
        if (p?.role === 'active' && p.pid !== before?.pid) pid = p.pid;
        return pid !== undefined;
      },
      { timeoutMs: 10_000, what: `a successor after upgrade failed with: ${(err as Error).message}` },
    );
    return pid!;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The exit code a bridge logged for itself ("bridge stopped"), once its process is gone. */
export async function bridgeExitLogged(logs: readonly OutputLine[], pid: number, timeoutMs = 30_000): Promise<number | undefined> {
  await waitFor(() => !pidAlive(pid), { timeoutMs, what: `bridge ${pid} to exit` });
  const line = logs.find((l) => typeof l === 'object' && l.pid === pid && l.msg === 'bridge stopped') as { code?: number } | undefined;
  return line?.code;
}
