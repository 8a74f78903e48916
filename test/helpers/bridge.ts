/**
 * The real PLC bridge as a child process (`edge-agent plc-bridge`), for integration tests: a
 * generated YAML config, JSON log lines collected, its control socket, stop/kill9 and exit waits.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { rpcRequest } from '../../lib/rpc.js';
import { spawnCli } from './agent.js';
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
