/**
 * The boot guard: the process systemd starts. It lives outside the slots (ROOT/guard/, put there
 * by ota/guard-install.ts), so a broken release cannot break it, and starts the active slot's
 * agent for ever:  node ROOT/guard/ota/boot-guard.js --root ROOT [--max-trial-starts 3]
 *   [--trial-timeout-ms 120000] [--node-flag X]... -- run --config FILE
 *
 * Each start: load ROOT/slots.json, apply guardStart() (a trial slot gets max-trial-starts
 * starts, then the committed slot boots), SAVE the result, only then spawn. While the active
 * slot is `trial` the guard polls slots.json; a trial not committed within trial-timeout-ms of
 * its start is stopped (SIGTERM, SIGKILL after --kill-grace-ms): a failed start, so a hung
 * release is rolled back like a crashing one. Agent exit 75 = "restart me now"; any other exit
 * restarts after a capped, jittered exponential backoff (reset after --backoff-reset-ms of
 * running). A committed slot is watched too: an unasked exit before --backoff-reset-ms of
 * running is a failed start (counted in slots.json); after --max-committed-failures of them
 * within --committed-failure-window-ms the slot is marked bad and the other slot boots, if it is
 * committed and not below the security floor. With no such slot the guard goes on starting the
 * one it has, slowly (its backoff, capped at --backoff-max-ms), for ever: someone may fix the
 * cause, and there is nothing else to run. SIGTERM/SIGINT go to the agent; the guard then exits with the agent's status. It
 * exits on its own only when slots.json is missing at its first start (78: not installed) or
 * on bad arguments (64); a corrupt or vanished file later is logged and retried.
 *
 * Runtime: a self-contained release (docs/releases.md) carries its own Node.js in
 * `runtime/bin/node`; the agent of such a slot runs on it, so a runtime change is updated,
 * health-gated and rolled back with the release (a runtime that does not start is a failed
 * start like any other). A slot without one runs on the guard's own runtime (process.execPath),
 * which lives outside the slots (ROOT/guard/runtime with the Debian package).
 *
 * Imports: node: builtins and ./slots.js only (GUARD_FILES). Logs: one pino-compatible JSON
 * line (level, ISO time, msg, as the agent's) per decision on stderr, `component: "boot-guard"`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearFailedStarts, committedExhausted, guardStart, loadSlots, otherSlot, recordFailedStart, saveSlots, SlotsError, usableFallback, type CommittedBound, type SlotName } from './slots.js';

/** The agent's "restart me" status (agent/main.ts EXIT_RESTART; the guard cannot import it). */
export const EXIT_RESTART = 75;
export const EXIT_NOT_INSTALLED = 78;
export const EXIT_USAGE = 64;

/** Numeric options and their defaults; each is also a flag: maxTrialStarts is --max-trial-starts. */
const DEFAULTS = {
  maxTrialStarts: 3,
  trialTimeoutMs: 120_000,
  pollMs: 500,
  killGraceMs: 15_000,
  backoffMinMs: 1000,
  backoffMaxMs: 30_000,
  backoffResetMs: 60_000,
  maxCommittedFailures: 5,
  committedFailureWindowMs: 300_000,
};
type NumericOption = keyof typeof DEFAULTS;
export type GuardOptions = typeof DEFAULTS & { root: string; nodeFlags: string[]; agentArgs: string[] };
const NUMERIC = new Map(Object.keys(DEFAULTS).map((k) => [`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, k as NumericOption]));

/** The Node.js a slot's agent runs on: the slot's own runtime when it has one, else the guard's. */
export function slotRuntime(root: string, slot: SlotName): string {
  const own = join(root, 'slots', slot, 'runtime', 'bin', 'node');
  return existsSync(own) ? own : process.execPath;
}

/** Pure. Throws an Error whose message is meant for a person. `--node-flag` takes the next word as is. */
export function parseGuardArgs(argv: readonly string[]): GuardOptions {
  const o: GuardOptions = { ...DEFAULTS, root: '', nodeFlags: [], agentArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      o.agentArgs = argv.slice(i + 1);
      break;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--root') o.root = resolve(value);
    else if (name === '--node-flag') o.nodeFlags.push(value);
    else {
      const key = NUMERIC.get(name);
      if (key === undefined) throw new Error(`unknown option ${JSON.stringify(name)}`);
      const n = Number(value);
      if (!Number.isInteger(n) || n < (key === 'maxTrialStarts' || key === 'pollMs' || key === 'maxCommittedFailures' ? 1 : 0)) throw new Error(`${name} must be a whole number, got ${JSON.stringify(value)}`);
      o[key] = n;
    }
  }
  if (!o.root) throw new Error('--root is required');
  return o;
}

/** Capped exponential backoff, jittered upwards by up to 25 % so restarts of many gateways spread. */
export function restartDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, minMs * Math.pow(2, Math.max(0, attempt)));
  return Math.round(Math.min(maxMs, exp * (1 + 0.25 * random())));
}

type Log = (level: 'info' | 'warn' | 'error', event: string, msg: string, fields?: Record<string, unknown>) => void;
const LEVELS = { info: 30, warn: 40, error: 50 } as const;

export function stderrLog(): Log {
  return (level, event, msg, fields = {}) => {
    process.stderr.write(JSON.stringify({ level: LEVELS[level], time: new Date().toISOString(), pid: process.pid, component: 'boot-guard', event, msg, ...fields }) + '\n');
  };
}

interface ChildOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  ranMs: number;
  /** Why the guard stopped it, when it did. */
  stoppedFor?: 'trial-timeout' | 'slot-changed' | 'guard-stop';
  sent?: NodeJS.Signals;
}

/** The guard's own status after a stop: the agent's, 0 when it died of the signal we forwarded. */
function exitStatus(out: ChildOutcome): number {
  if (out.code !== null) return out.code;
  if (out.signal === null) return 1;
  return out.signal === out.sent ? 0 : 128 + constants.signals[out.signal];
}

export class BootGuard {
  private attempt = 0;
  private stopSignal: NodeJS.Signals | undefined;
  private stopChild: ((why: 'guard-stop', sig: NodeJS.Signals) => void) | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly o: GuardOptions,
    private readonly log: Log,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** SIGTERM/SIGINT: forward to the agent, or end a backoff wait at once. */
  stop(sig: NodeJS.Signals): void {
    if (this.stopSignal) return;
    this.stopSignal = sig;
    this.log('info', 'stop', `${sig} received: stopping the agent`, { signal: sig, child: this.stopChild !== undefined });
    this.stopChild?.('guard-stop', sig);
    this.wake?.();
  }

  /** Runs until stopped; resolves with the guard's exit status. */
  async run(): Promise<number> {
    for (let first = true; ; first = false) {
      if (this.stopSignal) return 0;
      const d = this.decide(first);
      if (typeof d === 'number') return d;
      if (d === undefined) {
        await this.sleep(restartDelay(this.attempt++, this.o.backoffMinMs, this.o.backoffMaxMs));
        continue;
      }
      const out = await this.runChild(d.slot, d.trial);
      if (this.stopSignal) {
        const status = exitStatus(out);
        this.log('info', 'stopped', 'the agent stopped; the guard exits', { slot: d.slot, code: out.code, signal: out.signal, status });
        return status;
      }
      if (out.ranMs >= this.o.backoffResetMs) this.attempt = 0;
      const fields = { slot: d.slot, code: out.code, signal: out.signal, ranMs: out.ranMs };
      if (out.stoppedFor === 'trial-timeout' || out.stoppedFor === 'slot-changed') {
        const msg = out.stoppedFor === 'trial-timeout' ? `slot ${d.slot} was not committed within ${this.o.trialTimeoutMs} ms: a failed start` : `slot ${d.slot} is no longer the active trial`;
        this.log('warn', 'child-exit', msg, { ...fields, reason: out.stoppedFor, delayMs: 0 });
      } else if (out.code === EXIT_RESTART) {
        this.log('info', 'child-exit', 'the agent asked to be restarted', { ...fields, reason: 'restart-requested', delayMs: 0 });
      } else {
        const failedStart = !d.trial && out.ranMs < this.o.backoffResetMs;
        const next = failedStart ? this.noteFailedStart(d.slot) : 'backoff';
        // A fallback starts at once; anything else (no fallback included) waits its backoff.
        const delayMs = next === 'fallback' ? 0 : restartDelay(this.attempt++, this.o.backoffMinMs, this.o.backoffMaxMs);
        this.log('warn', 'child-exit', 'the agent exited unasked; restarting after a backoff', { ...fields, reason: 'crashed', delayMs, attempt: this.attempt, failedStart, next });
        await this.sleep(delayMs);
      }
      if (out.ranMs >= this.o.backoffResetMs && !d.trial) this.update((s) => clearFailedStarts(s, d.slot));
    }
  }

  private get committedBound(): CommittedBound {
    return { max: this.o.maxCommittedFailures, windowMs: this.o.committedFailureWindowMs };
  }

  /** Loads slots.json, applies `f`, saves when it changed; a failure is logged (the next start retries). */
  private update(f: (s: ReturnType<typeof loadSlots>) => ReturnType<typeof loadSlots>): ReturnType<typeof loadSlots> | undefined {
    try {
      const s = loadSlots(this.o.root);
      const next = f(s);
      if (next !== s) saveSlots(this.o.root, next);
      return next;
    } catch (err) {
      this.log('error', 'slots-unusable', `cannot update slots.json: ${err instanceof Error ? err.message : String(err)}`, { root: this.o.root });
      return undefined;
    }
  }

  /** Counts a failed start of the committed `slot`; says what the next start is. */
  private noteFailedStart(slot: SlotName): 'backoff' | 'fallback' | 'no-fallback' {
    const s = this.update((cur) => recordFailedStart(cur, slot, this.committedBound));
    const info = s?.slots[slot];
    if (!s || !info || s.active !== slot || !committedExhausted(info, this.committedBound)) return 'backoff';
    return usableFallback(s, otherSlot(slot)) ? 'fallback' : 'no-fallback';
  }

  /** Loads, decides, persists. A number is an exit status; undefined means "retry after a backoff". */
  private decide(first: boolean): { slot: SlotName; trial: boolean } | number | undefined {
    const root = this.o.root;
    try {
      const s = loadSlots(root);
      const d = guardStart(s, this.o.maxTrialStarts, new Date(), this.committedBound);
      // Persist before acting: a cut after this write and before the spawn costs one counted start.
      if (d.next !== s) saveSlots(root, d.next);
      const slot = d.next.active;
      const info = d.next.slots[slot];
      if (d.action === 'rolled-back') {
        this.attempt = 0;
        this.log('warn', 'rolled-back', `slot ${s.active} abandoned for ${slot}`, { from: s.active, slot, reason: d.reason, version: info.version });
      }
      if (d.reason === 'no-fallback' && info.state === 'committed') {
        this.log('error', 'no-fallback', `slot ${slot} keeps failing at start and the other slot cannot run (not committed, or below the security floor): retrying with a backoff of up to ${this.o.backoffMaxMs} ms`, {
          slot,
          version: info.version,
          failedStarts: info.failedStarts,
          other: d.next.slots[otherSlot(slot)].state,
        });
      }
      this.log('info', 'start', `starting slot ${slot}`, { slot, state: info.state, version: info.version, trialStarts: info.trialStarts, reason: d.reason });
      return { slot, trial: info.state === 'trial' };
    } catch (err) {
      const code = err instanceof SlotsError ? err.code : undefined;
      const msg = err instanceof Error ? err.message : String(err);
      if (first && code === 'not-installed') {
        this.log('error', 'not-installed', `edge-agent is not installed: ${msg}`, { code, root });
        return EXIT_NOT_INSTALLED;
      }
      this.log('error', 'slots-unusable', `cannot decide what to start; retrying: ${msg}`, { code, root, attempt: this.attempt });
      return undefined;
    }
  }

  private runChild(slot: SlotName, trial: boolean): Promise<ChildOutcome> {
    const o = this.o;
    const entry = join(o.root, 'slots', slot, 'dist', 'agent', 'cli', 'index.js');
    const node = slotRuntime(o.root, slot);
    const env: NodeJS.ProcessEnv = { ...this.env, EDGE_AGENT_SLOT: slot, EDGE_AGENT_ROOT: o.root, EDGE_AGENT_GUARD: '1' };
    // systemd's WATCHDOG_PID names the guard (the main PID); unset, the agent takes the
    // watchdog as its own (sd_watchdog_enabled(3)) and its pings count (NotifyAccess=all).
    delete env.WATCHDOG_PID;
    const started = Date.now();
    return new Promise((resolvePromise) => {
      let child: ChildProcess;
      let done = false;
      let stoppedFor: ChildOutcome['stoppedFor'];
      let sent: NodeJS.Signals | undefined;
      const timers: { kill?: NodeJS.Timeout; poll?: NodeJS.Timeout } = {};
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timers.kill);
        clearInterval(timers.poll);
        this.stopChild = undefined;
        resolvePromise({ code, signal, ranMs: Date.now() - started, ...(stoppedFor ? { stoppedFor } : {}), ...(sent ? { sent } : {}) });
      };
      const stopChild = (why: NonNullable<ChildOutcome['stoppedFor']>, sig: NodeJS.Signals = 'SIGTERM'): void => {
        if (stoppedFor || done) return;
        stoppedFor = why;
        sent = sig;
        clearInterval(timers.poll);
        child.kill(sig);
        timers.kill = setTimeout(() => {
          this.log('warn', 'kill', `the agent did not stop within ${o.killGraceMs} ms: SIGKILL`, { slot, childPid: child.pid, reason: why });
          child.kill('SIGKILL');
        }, o.killGraceMs);
      };
      try {
        child = spawn(node, [...o.nodeFlags, entry, ...o.agentArgs], { stdio: 'inherit', env });
      } catch (err) {
        this.log('error', 'spawn-failed', err instanceof Error ? err.message : String(err), { slot });
        finish(null, null);
        return;
      }
      this.stopChild = stopChild;
      this.log('info', 'spawned', `agent of slot ${slot} started`, { slot, childPid: child.pid, trial, node });
      child.once('error', (err) => {
        this.log('error', 'spawn-failed', err.message, { slot });
        finish(null, null);
      });
      child.once('exit', finish);
      if (!trial) return;
      timers.poll = setInterval(() => {
        try {
          const s = loadSlots(o.root);
          const state = s.slots[slot].state;
          if (s.active === slot && state === 'committed') {
            clearInterval(timers.poll);
            this.log('info', 'trial-committed', `slot ${slot} committed; the guard stops watching it`, { slot, version: s.slots[slot].version, ranMs: Date.now() - started });
            return;
          }
          if (s.active !== slot || state !== 'trial') {
            stopChild('slot-changed');
            return;
          }
        } catch (err) {
          this.log('warn', 'poll-failed', err instanceof Error ? err.message : String(err), { slot });
        }
        if (Date.now() - started >= o.trialTimeoutMs) stopChild('trial-timeout');
      }, o.pollMs);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        r();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        r();
      };
    });
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const log = stderrLog();
  let opts: GuardOptions;
  try {
    opts = parseGuardArgs(argv);
  } catch (err) {
    log('error', 'usage', `boot-guard: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_USAGE;
  }
  const guard = new BootGuard(opts, log, process.env);
  const onSignal = (sig: NodeJS.Signals): void => guard.stop(sig);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  log('info', 'guard-start', 'boot guard started', {
    root: opts.root,
    maxTrialStarts: opts.maxTrialStarts,
    trialTimeoutMs: opts.trialTimeoutMs,
    maxCommittedFailures: opts.maxCommittedFailures,
    committedFailureWindowMs: opts.committedFailureWindowMs,
  });
  return guard.run();
}

/** True when node runs this file (also through the ROOT/guard symlink), not when a test imports it. */
function isEntry(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(JSON.stringify({ level: 60, time: new Date().toISOString(), pid: process.pid, component: 'boot-guard', event: 'fatal', msg: String(err) }) + '\n');
      process.exit(70);
    },
  );
}
