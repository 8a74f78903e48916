/**
 * The agent under demonstration, as real child processes: the daemon with its pino JSON made
 * readable by pino-pretty, and one-shot `edge-agent` CLI calls.
 *
 * The daemon restarts itself by spawning a detached copy that inherits its stdout, so the pipe
 * stays open while any agent process lives: its end is how the demo knows they have all exited.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import pinoPretty from 'pino-pretty';

/** The environment for agent processes, without what would change their behaviour under a demo. */
export function agentEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    // INVOCATION_ID makes a restart exit 75 for systemd instead of spawning a replacement;
    // NOTIFY_SOCKET/WATCHDOG_* belong to the caller's service; EDGE_AGENT_* would override flags.
    if (k === 'INVOCATION_ID' || k === 'NOTIFY_SOCKET' || k.startsWith('WATCHDOG_') || k.startsWith('EDGE_AGENT_')) continue;
    env[k] = v;
  }
  return env;
}

/** A writable that hands each complete line to `print` with a prefix. */
function lineWriter(prefix: string, print: (line: string) => void): Writable {
  let partial = '';
  return new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) if (line.length > 0) print(`${prefix}${line}`);
      cb();
    },
    final(cb) {
      if (partial.length > 0) print(`${prefix}${partial}`);
      cb();
    },
  });
}

export interface AgentProcess {
  child: ChildProcess;
  /** Resolves when every process writing to the agent's stdout (it and its replacements) is gone. */
  allGone: Promise<void>;
  /** Resolves with the first process's exit code (or signal name). */
  exited: Promise<number | string>;
}

export interface StartAgentOptions {
  cli: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  prefix: string;
  colorize: boolean;
  print: (line: string) => void;
}

export function startAgent(o: StartAgentOptions): AgentProcess {
  const child = spawn(process.execPath, [o.cli, ...o.args], { stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
  const pretty = pinoPretty({
    colorize: o.colorize,
    singleLine: true,
    ignore: 'hostname,name',
    translateTime: 'HH:MM:ss.l',
    destination: lineWriter(o.prefix, o.print),
  });
  const stdout = child.stdout;
  const stderr = child.stderr;
  if (!stdout || !stderr) throw new Error('the agent was spawned without pipes');
  const allGone = new Promise<void>((resolve) => stdout.once('close', () => resolve()));
  stdout.pipe(pretty);
  stderr.pipe(lineWriter(`${o.prefix}stderr: `, o.print));
  const exited = new Promise<number | string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  return { child, allGone, exited };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `edge-agent ARGS` to completion (argument array, no shell). */
export function runCli(cli: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr: err && typeof err.code !== 'number' ? `${stderr}${err.message}\n` : stderr });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * SIGTERM to every pid, then waits for `gone` (every writer of the stdout pipe has exited). While
 * the pipe stays open, `discover` is asked for the daemon's pid: a replacement whose pid no status
 * reported yet (a restart cut short) is found that way. What still lives at the deadline gets
 * SIGKILL; those pids are returned.
 */
export async function stopAll(pids: Set<number>, gone: Promise<void>, discover: () => Promise<number | undefined>, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let done = false;
  void gone.then(() => (done = true));
  const signalled = new Set<number>();
  while (!done && Date.now() < deadline) {
    for (const pid of pids) {
      if (signalled.has(pid)) continue;
      signal(pid, 'SIGTERM');
      signalled.add(pid);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, Math.min(500, deadline - Date.now())))))]);
    clearTimeout(timer);
    if (done) break;
    const pid = await discover();
    if (pid !== undefined) pids.add(pid);
  }
  if (done) return [];
  const stuck = [...pids].filter(alive);
  for (const pid of stuck) signal(pid, 'SIGKILL');
  return stuck;
}
