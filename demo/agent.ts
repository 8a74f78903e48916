/**
 * The agent under demonstration, as real child processes: the boot guard (ROOT/guard, as systemd
 * would start it) with the agents it runs from the active slot, and one-shot `edge-agent` CLI
 * calls. Every log line is made readable by pino-pretty: the agent's pino JSON (the guard's
 * stdout, which its agents inherit) as `agent │`, the guard's own JSON decisions (its stderr)
 * as `guard │`.
 *
 * The agents inherit the guard's stdout, so that pipe stays open while the guard or any agent
 * lives: its end is how the demo knows they have all exited.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import pinoPretty from 'pino-pretty';

/** The environment for the guard and its agents, without what would change their behaviour under a demo. */
export function agentEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    // INVOCATION_ID/NOTIFY_SOCKET/WATCHDOG_* belong to the caller's service; EDGE_AGENT_* would
    // override the configuration (the guard sets EDGE_AGENT_SLOT, _ROOT and _GUARD itself).
    if (k === 'INVOCATION_ID' || k === 'NOTIFY_SOCKET' || k.startsWith('WATCHDOG_') || k.startsWith('EDGE_AGENT_')) continue;
    env[k] = v;
  }
  return env;
}

/** Calls `onLine` with each complete line of `stream`, and once more with a last partial one at its end. */
function eachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.on('data', (chunk: Buffer | string) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) if (line.length > 0) onLine(line);
  });
  stream.on('end', () => {
    if (partial.length > 0) onLine(partial);
  });
}

function parseObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One of the guard's decisions (ota/boot-guard.ts logs each as one JSON line), e.g. `spawned`. */
export interface GuardEvent {
  event: string;
  msg: string;
  slot?: string;
  childPid?: number;
  code?: number | null;
  reason?: string;
  [k: string]: unknown;
}

export interface GuardProcess {
  child: ChildProcess;
  /** Every decision the guard logged, in order. */
  events: GuardEvent[];
  /** Resolves when the guard and every agent it started (writers of the same stdout) have exited. */
  allGone: Promise<void>;
  /** Resolves with the guard's exit code (or signal name). */
  exited: Promise<number | string>;
}

export interface StartGuardOptions {
  /** ROOT/guard/ota/boot-guard.js */
  entry: string;
  root: string;
  guardArgs: string[];
  /** What the guard passes to each agent: `run --config FILE`. */
  agentArgs: string[];
  env: NodeJS.ProcessEnv;
  agentPrefix: string;
  guardPrefix: string;
  colorize: boolean;
  print: (line: string) => void;
}

export function startGuard(o: StartGuardOptions): GuardProcess {
  const args = [o.entry, '--root', o.root, ...o.guardArgs, '--', ...o.agentArgs];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
  const base = { colorize: o.colorize, singleLine: true, translateTime: 'HH:MM:ss.l' };
  const agentPretty = pinoPretty.prettyFactory({ ...base, ignore: 'hostname,name' });
  const guardPretty = pinoPretty.prettyFactory({ ...base, ignore: 'hostname,name,component' });
  const stdout = child.stdout;
  const stderr = child.stderr;
  if (!stdout || !stderr) throw new Error('the boot guard was spawned without pipes');
  const events: GuardEvent[] = [];
  const allGone = new Promise<void>((resolve) => stdout.once('close', () => resolve()));
  eachLine(stdout, (line) => o.print(`${o.agentPrefix}${parseObject(line) ? agentPretty(line).trimEnd() : line}`));
  eachLine(stderr, (line) => {
    const doc = parseObject(line);
    if (doc?.component === 'boot-guard' && typeof doc.event === 'string') {
      events.push(doc as GuardEvent);
      o.print(`${o.guardPrefix}${guardPretty(line).trimEnd()}`);
    } else {
      // An agent's own stderr (the guard passes it through): rare, and worth seeing as it is.
      o.print(`${o.agentPrefix}${doc ? agentPretty(line).trimEnd() : `stderr: ${line}`}`);
    }
  });
  const exited = new Promise<number | string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  return { child, events, allGone, exited };
}

/** The pids of the agents the guard started, in order. */
export function agentPids(g: GuardProcess): number[] {
  return g.events.flatMap((e) => (e.event === 'spawned' && typeof e.childPid === 'number' ? [e.childPid] : []));
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

/**
 * SIGTERM to the guard (it stops its agent, then exits), then waits up to `timeoutMs` for every
 * writer of its stdout to be gone. What still lives then, the guard and any agent it started,
 * gets SIGKILL; those pids are returned.
 */
export async function stopGuard(g: GuardProcess, timeoutMs: number): Promise<number[]> {
  let done = false;
  void g.allGone.then(() => (done = true));
  if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([g.allGone, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
  if (done) return [];
  const stuck = [g.child.pid, ...agentPids(g)].filter((p): p is number => p !== undefined && alive(p));
  for (const pid of stuck) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
  return stuck;
}

/** Polls the guard's decisions until `cond` holds; rejects naming `what` at the deadline. */
export async function waitGuard(g: GuardProcess, what: string, cond: (events: GuardEvent[]) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond(g.events)) {
    if (Date.now() > deadline) throw new Error(`the boot guard did not log ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
