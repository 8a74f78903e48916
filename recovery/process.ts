/**
 * A managed child process: spawned DETACHED in its own session (so it outlives an agent that is
 * killed with -9 or restarted for an update), argv array (no shell), stdout and stderr appended to
 * `{dir}/{name}.log`, and `{dir}/{name}.pid` written atomically. After an agent restart the next
 * agent ADOPTS the process from its pid file, once it has checked that the pid is still the
 * process that was started (same boot, same start time, same command line), so a recycled pid is
 * never signalled. Stop: SIGTERM (and SIGCONT, so a stopped process gets it), SIGKILL after a grace
 * period, to the whole process group.
 *
 * The systemd variant (a unit by name) is recovery/systemd-unit.ts; both implement Handle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../lib/atomic.js';
import type { Logger } from '../lib/log.js';
import { errorMessage } from '../lib/errors.js';
import { RecoveryError } from './errors.js';
import { tailLines } from './log-tail.js';

export interface ExitInfo {
  exitCode?: number | undefined;
  signal?: string | undefined;
}

/** What adopt() found: `rebooted` means the pid file is from before the last boot (not a failure). */
export type AdoptResult = 'adopted' | 'none' | 'gone' | 'rebooted';

/** What the supervisor needs of any supervised thing. */
export interface Handle {
  readonly kind: 'process' | 'systemd' | 'in-process';
  start(): Promise<void>;
  adopt(hintPid?: number): Promise<AdoptResult>;
  alive(): Promise<boolean>;
  /** Stops it for a restart: TERM, then KILL after graceMs. Resolves once it is gone. */
  kill(graceMs: number): Promise<void>;
  pid(): number | undefined;
  /** Called when the process exits on its own (our own child only: at once, with its status). */
  onExit(fn: (e: ExitInfo) => void): void;
  lastExit(): Promise<ExitInfo | undefined>;
  lastLog(lines: number): Promise<string[]>;
  /** Housekeeping on the supervisor's loop (log rotation). */
  maintain(): void;
}

interface PidFile {
  pid: number;
  argv: string[];
  /** /proc/PID/stat field 22: guards against a recycled pid running the same command. */
  startTicks: number;
  bootId: string;
  startedAt: string;
}

export interface ManagedProcessOptions {
  name: string;
  argv: [string, ...string[]];
  /** Where the pid file and the log live (`{dataDir}/recovery`). */
  dir: string;
  cwd?: string | undefined;
  env?: NodeJS.ProcessEnv;
  logMaxBytes: number;
  logger: Logger;
}

/** The environment of a child: ours without what belongs to our own systemd unit. */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  // A child that pinged our watchdog would keep a hung agent alive; the fault hooks are ours.
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'EDGE_AGENT_FAULT']) delete out[k];
  return out;
}

export function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The command line of a live process, or undefined (gone, or a zombie, whose cmdline is empty). */
export function procCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw.length === 0) return undefined;
    return raw.replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

/** Start time in clock ticks and state of a process, from /proc/PID/stat (after the `(comm)`). */
export function procStat(pid: number): { state: string; startTicks: number } | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return { state: rest[0] ?? '?', startTicks: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie. */
export function pidAlive(pid: number): boolean {
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export class ManagedProcess implements Handle {
  readonly kind = 'process' as const;
  private child: ChildProcess | undefined;
  private current: number | undefined;
  private exit: ExitInfo | undefined;
  private exitFns: ((e: ExitInfo) => void)[] = [];
  private readonly pidPath: string;
  readonly logPath: string;

  constructor(private readonly opts: ManagedProcessOptions) {
    this.pidPath = join(opts.dir, `${opts.name}.pid`);
    this.logPath = join(opts.dir, `${opts.name}.log`);
  }

  pid(): number | undefined {
    return this.current;
  }

  onExit(fn: (e: ExitInfo) => void): void {
    this.exitFns.push(fn);
  }

  async lastExit(): Promise<ExitInfo | undefined> {
    return this.exit;
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.dir, { recursive: true, mode: 0o750 });
    this.rotateLog();
    const [cmd, ...args] = this.opts.argv;
    const fd = openSync(this.logPath, 'a', 0o640);
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], cwd: this.opts.cwd, env: childEnv(this.opts.env ?? process.env) });
    } finally {
      closeSync(fd);
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (err) => reject(new RecoveryError('spawn-failed', `cannot start ${this.opts.argv.join(' ')}: ${err.message}`, { cause: err })));
    });
    child.unref();
    // Later errors (a signal that could not be sent) must not be unhandled 'error' events.
    child.on('error', (err) => this.opts.logger.warn({ err }, 'child process error'));
    this.child = child;
    this.current = pid;
    this.exit = undefined;
    child.once('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.exit = { exitCode: code ?? undefined, signal: signal ?? undefined };
      for (const fn of this.exitFns) fn(this.exit);
    });
    const st = procStat(pid);
    const file: PidFile = { pid, argv: [...this.opts.argv], startTicks: st?.startTicks ?? 0, bootId: readBootId(), startedAt: new Date().toISOString() };
    writeJsonAtomic(this.pidPath, file);
    this.opts.logger.info({ pid, argv: this.opts.argv }, 'started');
  }

  /**
   * Takes over the process a previous agent started, from the pid file; or `hintPid` (what the
   * component's heartbeat reported) when there is no usable pid file.
   */
  async adopt(hintPid?: number): Promise<AdoptResult> {
    let file: PidFile | undefined;
    try {
      file = readJsonFile(this.pidPath) as PidFile | undefined;
    } catch (err) {
      this.opts.logger.warn({ err, path: this.pidPath }, 'unreadable pid file: ignored');
    }
    if (file && typeof file.pid === 'number' && Array.isArray(file.argv)) {
      if (file.bootId !== readBootId()) return 'rebooted';
      const st = procStat(file.pid);
      const cmd = procCmdline(file.pid);
      if (st && st.state !== 'Z' && cmd && sameArgv(cmd, file.argv) && (file.startTicks === 0 || st.startTicks === file.startTicks)) {
        this.current = file.pid;
        this.opts.logger.info({ pid: file.pid }, 'adopted the running process');
        return 'adopted';
      }
      if (hintPid === undefined) return 'gone';
    }
    if (hintPid !== undefined && pidAlive(hintPid)) {
      const cmd = procCmdline(hintPid) ?? [];
      const file2: PidFile = { pid: hintPid, argv: cmd, startTicks: procStat(hintPid)?.startTicks ?? 0, bootId: readBootId(), startedAt: new Date().toISOString() };
      writeJsonAtomic(this.pidPath, file2);
      this.current = hintPid;
      this.opts.logger.info({ pid: hintPid }, 'adopted a process started by someone else (its heartbeat named it)');
      return 'adopted';
    }
    return file ? 'gone' : 'none';
  }

  async alive(): Promise<boolean> {
    if (this.child) return true;
    return this.current !== undefined && pidAlive(this.current);
  }

  async kill(graceMs: number): Promise<void> {
    const pid = this.current;
    if (pid === undefined) return;
    const child = this.child;
    // An exit we cause is not a failure: the supervisor no longer listens to this child.
    this.child = undefined;
    const gone = (): boolean => !pidAlive(pid);
    if (!gone()) {
      this.signal(pid, 'SIGTERM');
      this.signal(pid, 'SIGCONT');
      const deadline = Date.now() + graceMs;
      while (!gone() && Date.now() < deadline) await sleep(20);
      if (!gone()) {
        this.opts.logger.warn({ pid, graceMs }, 'did not stop after SIGTERM: SIGKILL');
        this.signal(pid, 'SIGKILL');
        const hard = Date.now() + 5000;
        while (!gone() && Date.now() < hard) await sleep(10);
      }
    }
    if (child) await waitExit(child);
    this.current = undefined;
    try {
      unlinkSync(this.pidPath);
    } catch {
      /* already gone */
    }
  }

  async lastLog(lines: number): Promise<string[]> {
    return tailLines(this.logPath, lines);
  }

  maintain(): void {
    this.rotateLog();
  }

  /**
   * Copy-then-truncate: the child holds the file open with O_APPEND, so after the truncation its
   * next write lands at the new end; one older generation (`.1`) is kept.
   */
  private rotateLog(): void {
    try {
      if (statSync(this.logPath).size <= this.opts.logMaxBytes) return;
      copyFileSync(this.logPath, `${this.logPath}.1`);
      truncateSync(this.logPath, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.logger.warn({ err: errorMessage(err) }, 'log rotation failed');
    }
  }

  /** To the process group (detached: the group is the pid) so its own children go too. */
  private signal(pid: number, sig: NodeJS.Signals): void {
    try {
      process.kill(-pid, sig);
      return;
    } catch {
      /* not a group leader (adopted from a heartbeat): the process alone */
    }
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Our own child must be reaped (its 'exit' seen) before the pid can be considered free. */
function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 2000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
