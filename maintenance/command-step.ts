/**
 * The `command` step's executor (CONTRACT.md section 6): the argv array is spawned as it is,
 * never through a shell, in a process group of its own; a timeout or a cancel sends SIGTERM to
 * the whole group, then SIGKILL after a grace; the output (stdout and stderr as they come) is
 * captured with a bound and secrets masked; the exit code is mapped to the step's outcome.
 *
 * INVARIANTS
 * - No shell: argv[0] is executed with argv[1..] as its arguments, each one element, whatever
 *   characters it holds.
 * - When `runCommand` resolves, no process of the step's group is left: after the command exits,
 *   whatever it left behind in its group is killed (a step's processes never outlive the step;
 *   long-lived services belong to systemd).
 * - At most `maxOutputBytes` of output are kept (the first and the last halves, with a marker in
 *   between), so a chatty command cannot fill the agent's memory or its report.
 * - The environment is a fixed minimal one plus what the caller passes: the agent's own
 *   environment (which may hold credentials) is not inherited.
 * - Never rejects: a program that cannot be started is a `failed` outcome with the reason.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { scrub, SECRET_ASSIGNMENT as SECRET } from '../lib/redact.js';
import type { StepOutcome } from './run-state.js';

export const DEFAULT_ENV: Readonly<Record<string, string>> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export interface CommandOptions {
  argv: readonly [string, ...string[]];
  okExitCodes: readonly number[];
  timeoutMs: number;
  /** Between SIGTERM and SIGKILL to the group. */
  killGraceMs: number;
  maxOutputBytes: number;
  /** Values masked wherever they appear in the output (the configuration's secrets, ...). */
  secrets?: readonly string[];
  /** Aborted by a cancel: the group is stopped as on a timeout, and the outcome is `cancelled`. */
  signal?: AbortSignal;
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Told the process (and group) id once it is spawned: the runner records it before waiting. */
  onStart?(pid: number): void;
  /** Injected for tests; node's spawn by default. */
  spawn?: (file: string, args: readonly string[], opts: SpawnOptions) => ChildProcess;
}

export interface CommandResult {
  outcome: StepOutcome;
  exitCode: number | null;
  /** The signal that ended the command, if one did. */
  signal: NodeJS.Signals | null;
  output: string;
  truncated: boolean;
  /** Why it failed when there is no exit code to say it (the program could not be started). */
  error?: string;
  pid?: number;
}

/** The outcome of an ended command; pure. */
export function outcomeOf(exitCode: number | null, okExitCodes: readonly number[], stoppedBy: 'timeout' | 'cancel' | undefined): StepOutcome {
  if (stoppedBy === 'cancel') return 'cancelled';
  if (stoppedBy === 'timeout') return 'timeout';
  return exitCode !== null && okExitCodes.includes(exitCode) ? 'ok' : 'failed';
}

/** Keeps the first and last halves of a stream under a byte bound. */
export class BoundedOutput {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private dropped = 0;

  constructor(private readonly max: number) {}

  push(chunk: Buffer): void {
    const half = Math.floor(this.max / 2);
    if (this.headBytes < half) {
      const take = chunk.subarray(0, half - this.headBytes);
      this.head.push(take);
      this.headBytes += take.length;
      chunk = chunk.subarray(take.length);
    }
    if (chunk.length === 0) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    const limit = this.max - half;
    while (this.tailBytes > limit) {
      const first = this.tail[0]!;
      const over = this.tailBytes - limit;
      if (first.length <= over) {
        this.tail.shift();
        this.tailBytes -= first.length;
        this.dropped += first.length;
      } else {
        this.tail[0] = first.subarray(over);
        this.tailBytes -= over;
        this.dropped += over;
      }
    }
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  /** The text with secrets masked; a secret cut by the seam is cut off on both sides. */
  text(secrets: readonly string[]): string {
    // Known values first, then anything shaped like `password=x` (the incidents' log tails' rule).
    const mask = (s: string): string => scrub(s, secrets).replace(SECRET, (_m, key: string) => `${key}[redacted]`);
    if (this.dropped === 0) return mask(Buffer.concat([...this.head, ...this.tail]).toString('utf8'));
    let head = Buffer.concat(this.head).toString('utf8');
    let tail = Buffer.concat(this.tail).toString('utf8');
    for (const s of secrets.filter((x) => x.length > 1)) {
      for (let n = s.length - 1; n > 0; n--) {
        if (head.endsWith(s.slice(0, n))) {
          head = head.slice(0, head.length - n);
          break;
        }
      }
      for (let n = s.length - 1; n > 0; n--) {
        if (tail.startsWith(s.slice(s.length - n))) {
          tail = tail.slice(n);
          break;
        }
      }
    }
    return `${mask(head)}\n[... ${this.dropped} bytes left out ...]\n${mask(tail)}`;
  }
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    // A negative pid is the process group (kill(2)); the child leads its own group (detached).
    process.kill(-pid, sig);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** Whether any process of the group still exists. */
export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs one command step; never rejects. */
export function runCommand(o: CommandOptions): Promise<CommandResult> {
  const spawn = o.spawn ?? nodeSpawn;
  const out = new BoundedOutput(o.maxOutputBytes);
  const secrets = o.secrets ?? [];
  return new Promise<CommandResult>((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(o.argv[0], o.argv.slice(1), { shell: false, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...DEFAULT_ENV, ...(o.env ?? {}) }, ...(o.cwd ? { cwd: o.cwd } : {}) });
    } catch (err) {
      resolve({ outcome: 'failed', exitCode: null, signal: null, output: '', truncated: false, error: err instanceof Error ? err.message : String(err) });
      return;
    }
    const pid = child.pid;
    if (pid !== undefined) {
      try {
        o.onStart?.(pid);
      } catch {
        // recording it is best effort; the step runs either way
      }
    }
    let stoppedBy: 'timeout' | 'cancel' | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: string | undefined;
    let open = 2;
    let killTimer: NodeJS.Timeout | undefined;
    let drainTimer: NodeJS.Timeout | undefined;
    let done = false;

    const stop = (why: 'timeout' | 'cancel'): void => {
      if (stoppedBy || exit || pid === undefined) return;
      stoppedBy = why;
      killGroup(pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(pid, 'SIGKILL'), o.killGraceMs);
    };
    const timer = setTimeout(() => stop('timeout'), o.timeoutMs);
    const onAbort = (): void => stop('cancel');
    if (o.signal?.aborted) queueMicrotask(onAbort);
    else o.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      clearTimeout(drainTimer);
      o.signal?.removeEventListener('abort', onAbort);
      // Whatever the command left in its group goes with it.
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      child.stdout?.destroy();
      child.stderr?.destroy();
      const code = exit?.code ?? null;
      resolve({
        outcome: spawnError !== undefined ? 'failed' : outcomeOf(code, o.okExitCodes, stoppedBy),
        exitCode: code,
        signal: exit?.signal ?? null,
        output: out.text(secrets),
        truncated: out.truncated,
        ...(spawnError !== undefined ? { error: spawnError } : {}),
        ...(pid !== undefined ? { pid } : {}),
      });
    };
    const streamClosed = (): void => {
      open -= 1;
      if (open === 0 && exit) finish();
    };
    for (const s of [child.stdout, child.stderr]) {
      if (!s) {
        open -= 1;
        continue;
      }
      s.on('data', (b: Buffer) => out.push(b));
      s.on('close', streamClosed);
      s.on('error', () => undefined);
    }
    child.on('error', (err) => {
      spawnError = err.message;
      exit ??= { code: null, signal: null };
      finish();
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      if (open === 0) finish();
      // A process left in the group may hold the pipes open: end it after a short drain.
      else drainTimer = setTimeout(finish, Math.min(o.killGraceMs, 1000));
    });
  });
}

/** A process as it was when started: pid, its start time in clock ticks since boot, and the boot. */
export interface ProcessIdentity {
  pid: number;
  startTicks: string;
  bootId: string;
}

function readStart(pid: number): string | undefined {
  try {
    // Field 22 of /proc/PID/stat, counted after the command name (which may hold spaces).
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The identity of a running process, or undefined when it cannot be read (not Linux, gone). */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  const startTicks = readStart(pid);
  return startTicks === undefined ? undefined : { pid, startTicks, bootId: bootId() };
}

/**
 * Kills the process group a previous agent left running (killed mid-step), but only when its
 * leader is still that very process: same boot, same start time. A pid reused by something
 * else (after a reboot, or much later) is never touched. Returns whether it killed.
 */
export function killLeftover(id: ProcessIdentity): boolean {
  if (id.bootId !== bootId() || readStart(id.pid) !== id.startTicks) return false;
  try {
    process.kill(-id.pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}
