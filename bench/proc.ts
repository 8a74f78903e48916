/**
 * Child processes for the benchmarks: Node scripts spawned with an argument array, their output
 * kept (the tail) for error messages, their RSS read from /proc, and a clean stop.
 *
 * Invariant: every child spawned through spawnNode() is SIGKILLed by a process 'exit' hook if
 * the bench forgets it, so no agent outlives the bench.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file runs as dist/bench/proc.js. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST = join(ROOT, 'dist');

export interface NodeChild {
  proc: ChildProcess;
  pid: number;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  hasExited(): boolean;
  /** Everything written to stdout, kept whole (the outbox children print one JSON line). */
  stdout(): string;
  /** The last lines of stdout and stderr, for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * An environment without the variables that would change how the agent runs (systemd
 * notification, its config overrides), so a developer's shell does not skew the numbers.
 */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('EDGE_AGENT_') || k === 'NOTIFY_SOCKET' || k === 'WATCHDOG_USEC' || k === 'INVOCATION_ID' || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return env;
}

/**
 * The Node flags deploy/systemd/edge-agent.service starts the agent with; agent and reference
 * both run with them, so the comparison is as deployed and still like for like.
 */
export const DEPLOYED_NODE_FLAGS = ['--max-semi-space-size=1'];

export function spawnNode(script: string, args: string[], nodeFlags: string[] = []): NodeChild {
  const proc = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  if (proc.pid === undefined) throw new Error(`cannot spawn node ${script}`);
  const pid = proc.pid;
  let out = '';
  const lines: string[] = [];
  const keep = (s: string): void => {
    lines.push(...s.split('\n').filter(Boolean));
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    if (out.length > 1_000_000) out = out.slice(-500_000);
    keep(s);
  });
  proc.stderr?.setEncoding('utf8').on('data', keep);
  let done = false;
  const killOnExit = (): void => void proc.kill('SIGKILL');
  process.on('exit', killOnExit);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('error', (err) => {
      keep(`spawn error: ${err.message}`);
      done = true;
      resolve('spawn-error');
    });
    proc.once('exit', (code, signal) => {
      done = true;
      process.off('exit', killOnExit);
      resolve(signal ?? code ?? -1);
    });
  });
  return {
    proc,
    pid,
    exited,
    hasExited: () => done,
    stdout: () => out,
    tail: () => lines.join('\n'),
    stop: async (graceMs = 10_000) => {
      if (done) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface Rss {
  /** VmRSS */
  total: number;
  /** RssAnon: heap, malloc arenas, stacks */
  anon: number;
  /** RssFile: mapped files, mostly the node binary's pages (shared with other node processes) */
  file: number;
}

/** Resident memory of a live process in bytes (proc(5): /proc/PID/status reports kB). */
export function rssOf(pid: number): Rss {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
    if (!m?.[1]) throw new Error(`no ${key} for pid ${pid}`);
    return Number(m[1]) * 1024;
  };
  return { total: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** Runs a child to completion and parses the JSON object on its last stdout line. */
export async function runJsonChild<T>(script: string, args: string[], nodeFlags: string[] = [], timeoutMs = 600_000): Promise<T> {
  const child = spawnNode(script, args, nodeFlags);
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const last = child.stdout().trim().split('\n').pop() ?? '';
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}\n${child.tail()}`);
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`${script} printed no JSON result\n${child.tail()}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
