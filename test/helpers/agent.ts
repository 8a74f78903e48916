/**
 * The real agent binary as a child process, for integration tests: a generated YAML config in
 * its data dir, JSON log lines collected, and stop (SIGTERM), kill9 (SIGKILL) and exit waits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { adminRequest } from '../../core/admin.js';
import { collectLines, exitOf, linesText, waitFor, type ChildExit, type OutputLine } from './util.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(REPO, 'dist', 'agent', 'cli', 'index.js');

export interface AgentProcess {
  proc: ChildProcess;
  pid: number;
  dataDir: string;
  configPath: string;
  /** Parsed JSON log lines (and raw strings for anything else) from stdout and stderr. */
  logs: OutputLine[];
  exited: Promise<ChildExit>;
  admin(method: string, params?: Record<string, unknown>): Promise<unknown>;
  stop(): Promise<ChildExit>;
  kill9(): Promise<void>;
  logText(): string;
}

export interface AgentOptions {
  dataDir: string;
  gatewayId?: string;
  /** Merged into the generated config; `mqtt.url` is required. */
  config: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  args?: string[];
}

export function writeAgentConfig(dataDir: string, gatewayId: string, config: Record<string, unknown>): string {
  // 0750, as the agent makes it (and StateDirectoryMode): `diag` warns about one others can read.
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const path = join(dataDir, 'config.yaml');
  // The console listens on a port of the system's choosing: agents of tests that run side by
  // side would otherwise all ask for 127.0.0.1:8080 (a test that cares sets console itself).
  const console = { listen: '127.0.0.1:0', ...((config.console as Record<string, unknown> | undefined) ?? {}) };
  // The built-in procedures' schedules (the store check hourly, backups every 6 h, ...) would
  // start runs at wall-clock times in the middle of unrelated tests: off unless a test sets
  // `maintenance.schedules` itself (then exactly as it says).
  const m = (config.maintenance as Record<string, unknown> | undefined) ?? {};
  const maintenance = { ...m, schedules: m.schedules ?? builtinSchedulesOff() };
  writeFileSync(path, stringify({ gatewayId, dataDir, ...config, console, maintenance }));
  return path;
}

/** `{id: {enabled: false}}` for every shipped procedure with a schedule (maintenance/procedures). */
export function builtinSchedulesOff(): Record<string, { enabled: false }> {
  const dir = join(REPO, 'maintenance', 'procedures');
  const ids = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && /^schedule:/m.test(readFileSync(join(dir, f), 'utf8')))
    .map((f) => f.slice(0, -'.yaml'.length));
  return Object.fromEntries(ids.map((id) => [id, { enabled: false as const }]));
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const clean = { ...process.env };
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'INVOCATION_ID']) delete clean[k];
  return spawn(process.execPath, [CLI, ...args], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function startAgent(opts: AgentOptions): AgentProcess {
  const configPath = writeAgentConfig(opts.dataDir, opts.gatewayId ?? 'gw-test', opts.config);
  return runAgent(configPath, opts.dataDir, opts);
}

/** `edge-agent run` on an existing config file (a corrupt one, say), whose data dir is `dataDir`. */
export function runAgent(configPath: string, dataDir: string, opts: { env?: NodeJS.ProcessEnv; args?: string[] } = {}): AgentProcess {
  const proc = spawnCli(['run', '--config', configPath, ...(opts.args ?? [])], opts.env);
  const logs = collectLines(proc);
  const exited = exitOf(proc);
  const socket = join(dataDir, 'agent.sock');
  const a: AgentProcess = {
    proc,
    pid: proc.pid ?? -1,
    dataDir,
    configPath,
    logs,
    exited,
    admin: (method, params = {}) => adminRequest(socket, method, params),
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
    logText: () => linesText(logs),
  };
  return a;
}

/** Waits until the agent answers on its admin socket (it is then started, not necessarily connected). */
export async function agentReady(a: AgentProcess, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => (await a.admin('status').catch(() => undefined)) !== undefined, { timeoutMs, what: `agent ${a.pid} admin socket\n${a.logText()}` });
}

export async function agentConnected(a: AgentProcess, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => {
      const s = (await a.admin('status').catch(() => undefined)) as { broker?: { connected?: boolean } } | undefined;
      return s?.broker?.connected === true;
    },
    { timeoutMs, what: `agent ${a.pid} connected to the broker\n${a.logText().slice(-3000)}` },
  );
}

/** Collects a child's stdout and stderr and its exit status. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  p.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  p.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((resolve) => p.on('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}
