/**
 * The procedure runner (CONTRACT.md section 6): drives one run of a procedure through the state
 * machine of run-state.ts, executing each step, its validation and retries, the rollback steps
 * and the success criteria, and writes the report. The operation queue (which run may start,
 * priorities, `busy`) is the router's; this module runs what the router started, and answers
 * pause, resume, cancel and confirm for the runs it drives.
 *
 * INVARIANTS
 * - The run's row is written (synchronous, durable) before any step that has side effects runs,
 *   naming that step; so after a power cut the run goes on at that step boundary, rolls back or
 *   ends `interrupted`, as its `onInterrupt` says, and never stays non-terminal (resume()).
 *   Steps without side effects are not each written: after a cut they simply run again.
 * - A dry run executes no step with side effects: those are reported `would-run`; checks,
 *   snapshots, logs run, waits are shortened, confirms are skipped; success criteria are not
 *   judged (they describe the state after a real run).
 * - Pause takes effect at a step boundary; cancel at the next boundary, or at once for a step
 *   that can be stopped (a command's process group is killed, a wait or confirm ends), then the
 *   rollback steps run. The deadline (maxDurationSec) is applied the same way. A rollback is
 *   never paused, cancelled or cut short by the deadline (each of its steps has its timeout).
 * - Every run ends with exactly one report, stored with the terminal row, announced on
 *   ~/events (`maintenance-report`, the summary when the report is large) and returned.
 * - Nothing a step does can throw out of the runner: an exception is that step's failure.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { errorCode, errorMessage } from '../lib/errors.js';
import { scrub } from '../lib/redact.js';
import type { AgentEvent } from '../core/ports.js';
import { BUILTIN_ACTIONS, isActionName, type ActionImpls } from './actions.js';
import { evaluateCheck, type Check, type MetricsSnapshot } from './checks.js';
import { BoundedOutput, killLeftover, processIdentity, runCommand } from './command-step.js';
import { substituteStep, substituteValue } from './params.js';
import { effectOf, initialRun, isTerminal, transition, type RunEvent, type RunShape, type RunState, type StepOutcome } from './run-state.js';
import type { ConditionReport, ReportSummary, RunRow, RunStore, StepReport } from './run-store.js';
import { stepHasSideEffects, type Condition, type ParamValue, type Procedure, type Step } from './schema.js';

export interface RunnerLimits {
  /** Bytes of output kept per step (command output, an http body). */
  maxOutputBytes: number;
  /** Between SIGTERM and SIGKILL of a command step's process group. */
  killGraceMs: number;
  /** Finished runs kept in the store. */
  maxReports: number;
  /** A report larger than this goes to ~/events as its summary. */
  reportEventBytes: number;
  /** A step's timeout when it sets none: action, http, command. */
  defaultStepTimeoutSec: number;
  /** Between the attempts of a step with `retries`. */
  retryDelayMs: number;
  /** How often a running run says it is alive (router's stall watchdog, progress). */
  heartbeatMs: number;
  /** A dry run's waits last at most this long. */
  dryRunWaitMaxMs: number;
  /** The CPU budget: the agent with its children at most this share of one core, averaged over the run (with `cpu` given). */
  maxCpuPct: number;
}

export const DEFAULT_RUNNER_LIMITS: RunnerLimits = {
  maxOutputBytes: 16 * 1024,
  killGraceMs: 5000,
  maxReports: 200,
  reportEventBytes: 32 * 1024,
  defaultStepTimeoutSec: 600,
  retryDelayMs: 1000,
  heartbeatMs: 15_000,
  dryRunWaitMaxMs: 1000,
  maxCpuPct: 25,
};

export interface RunnerDeps {
  store: RunStore;
  clock: Clock;
  logger: Logger;
  actions: ActionImpls;
  /** The metrics checks read (names as docs/maintenance.md lists them), read fresh. */
  metrics(): Promise<MetricsSnapshot>;
  /** What a snapshot step records: metrics and component states. */
  snapshot(): Promise<Record<string, unknown>>;
  event(ev: AgentEvent): void;
  /** A disruptive run (not a dry run) is running: ~/status says `maintenance` while one does. */
  setMaintenance?(on: boolean): void;
  /** Values masked in outputs and messages (the configuration's secrets). */
  secrets?(): readonly string[];
  limits?: Partial<RunnerLimits>;
  /** For http steps; the global fetch by default. */
  fetch?: typeof fetch;
  /**
   * The CPU the agent and its children used so far (ms), for the run's CPU budget
   * (limits.maxCpuPct); without it runs are not paced. `sleep` is the pacing's wait (tests give a
   * fake one that moves their clock).
   */
  cpu?: { usedMs: () => number | undefined; sleep?: (ms: number, signal: AbortSignal) => Promise<void> };
}

/** What starts a run (the `maintenance` operation, after its admission checks). */
export interface RunRequest {
  runId: string;
  procedure: Procedure;
  definitionSha256: string;
  file: string;
  params: Record<string, ParamValue>;
  dryRun: boolean;
  trigger: string;
  startedBy: string;
}

/** The caller's side of a run: cancel and progress (the router's command context). */
export interface RunControl {
  signal: AbortSignal;
  progress(step: string, percent?: number): void;
}

export type Report = Record<string, unknown> & { runId: string; state: RunState; ok: boolean; reason?: { code: string; message: string } };

export interface RunEnd {
  state: RunState;
  report: Report;
}

export type ControlAnswer = { ok: true; state: RunState; step: string | undefined } | { ok: false; code: 'not-running' | 'not-waiting' | 'not-pausable'; message: string };

/** A run this process drives. */
interface Live {
  row: RunRow;
  shape: RunShape;
  /** The running step's stop: `cancel` or `timeout`. */
  stepAbort: AbortController | undefined;
  currentStep: string | undefined;
  /** Wakes the loop while paused. */
  wake: (() => void) | undefined;
  pauseWaiters: ((a: ControlAnswer) => void)[];
  confirm: { step: string; message: string; expiresAt: number; answer(a: 'yes' | 'no'): void } | undefined;
  deadlinePassed: boolean;
  disruptive: boolean;
  /** The CPU budget's start in this process: the tree's CPU (ms) and the clock then; undefined when not paced. */
  budget: { cpu0: number; wall0: number; pacedMs: number; cpuPct: number } | undefined;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class Runner {
  private readonly live = new Map<string, Live>();
  private readonly limits: RunnerLimits;
  private maintenanceRuns = 0;

  constructor(private readonly d: RunnerDeps) {
    this.limits = { ...DEFAULT_RUNNER_LIMITS, ...(d.limits ?? {}) };
  }

  /** Starts a new run and drives it to its end. */
  async run(req: RunRequest, ctl: RunControl): Promise<RunEnd> {
    const now = this.d.clock.now();
    const row: RunRow = {
      runId: req.runId,
      procedure: req.procedure,
      definitionSha256: req.definitionSha256,
      file: req.file,
      trigger: req.trigger,
      startedBy: req.startedBy,
      dryRun: req.dryRun,
      params: req.params,
      record: initialRun(),
      steps: [],
      rollbackSteps: [],
      extra: {},
      startedAt: now,
      deadlineAt: now + req.procedure.maxDurationSec * 1000,
      endedAt: undefined,
      report: undefined,
    };
    this.d.store.insert(row);
    const live = this.track(row);
    this.d.logger.info({ run: row.runId, procedure: row.procedure.id, dryRun: row.dryRun, trigger: row.trigger, startedBy: row.startedBy, sha256: row.definitionSha256 }, 'procedure run starts');
    // Prerequisites first: a run whose prerequisites fail changes nothing.
    const pre = await this.conditions(row.procedure.prerequisites, row.params);
    row.extra.prerequisites = pre;
    const failed = pre.filter((c) => !c.ok);
    if (ctl.signal.aborted) this.apply(live, { type: 'cancel' });
    else if (failed.length > 0) this.apply(live, { type: 'prerequisites-failed', reason: `prerequisite not met: ${failed.map((c) => c.reason).join('; ')}` });
    else this.apply(live, { type: 'start' });
    this.save(live);
    return this.drive(live, ctl);
  }

  /**
   * A run a previous process left unfinished: its stored report when it ended, otherwise it
   * goes on as its `onInterrupt` says. undefined when no run with this id was ever written (the
   * process stopped before it started: the caller starts it).
   */
  async resume(runId: string, ctl: RunControl): Promise<RunEnd | undefined> {
    const row = this.d.store.get(runId);
    if (!row) return undefined;
    if (isTerminal(row.record.state)) return { state: row.record.state, report: (row.report ?? this.report(row)) as Report };
    const live = this.track(row);
    this.d.logger.warn({ run: runId, procedure: row.procedure.id, state: row.record.state, phase: row.record.phase, cursor: row.record.cursor, onInterrupt: row.procedure.onInterrupt }, 'procedure run interrupted by a restart: going on as onInterrupt says');
    this.stopLeftover(row);
    this.apply(live, { type: 'restarted', onInterrupt: row.procedure.onInterrupt });
    this.save(live);
    return this.drive(live, ctl);
  }

  /** Ends the unfinished runs whose command is not running any more (abandoned): `interrupted`. */
  sweep(active: (runId: string) => boolean): number {
    let n = 0;
    for (const row of this.d.store.unfinished()) {
      if (this.live.has(row.runId) || active(row.runId)) continue;
      const live: Live = this.liveOf(row);
      this.stopLeftover(row);
      this.apply(live, { type: 'restarted', onInterrupt: 'fail' });
      if (!isTerminal(live.row.record.state)) live.row.record = { ...live.row.record, state: 'interrupted', reason: { code: 'interrupted', message: 'its command is no longer running' } };
      this.end(live);
      n++;
    }
    return n;
  }

  /** The command step a killed agent left running: its process group is killed (if it is still that process). */
  private stopLeftover(row: RunRow): void {
    const r = row.extra.running;
    if (!r) return;
    const killed = killLeftover(r);
    this.d.logger.warn({ run: row.runId, pid: r.pid, killed }, killed ? 'killed the process group of the step the previous agent left running' : 'the step the previous agent left running is gone');
    delete row.extra.running;
  }

  pause(runId: string): Promise<ControlAnswer> {
    const live = this.live.get(runId);
    if (!live) return Promise.resolve(this.notRunning(runId));
    if (live.row.record.state === 'paused') return Promise.resolve({ ok: true, state: 'paused', step: live.currentStep });
    const refused = this.apply(live, { type: 'pause' });
    if (refused) return Promise.resolve({ ok: false, code: 'not-pausable', message: refused });
    this.d.logger.info({ run: runId, step: live.currentStep }, 'pause requested: at the next step boundary');
    return new Promise((resolve) => live.pauseWaiters.push(resolve));
  }

  resumeRun(runId: string): ControlAnswer {
    const live = this.live.get(runId);
    if (!live) return this.notRunning(runId);
    const wasPaused = live.row.record.state === 'paused';
    const refused = this.apply(live, { type: 'resume' });
    if (refused) return { ok: false, code: 'not-running', message: refused };
    if (wasPaused) {
      this.save(live);
      this.d.logger.info({ run: runId }, 'run resumed');
      live.wake?.();
    }
    return { ok: true, state: live.row.record.state, step: live.currentStep };
  }

  /** Whether the run waits for a confirm answer at this step. */
  waitingConfirm(runId: string, step: string): boolean {
    return this.live.get(runId)?.confirm?.step === step;
  }

  confirm(runId: string, step: string, answer: 'yes' | 'no'): ControlAnswer {
    const live = this.live.get(runId);
    if (!live?.confirm || live.confirm.step !== step) {
      const waiting = live?.confirm ? ` (it waits at step ${live.confirm.step})` : '';
      return { ok: false, code: 'not-waiting', message: `run ${runId} is not waiting for a confirmation at step ${step}${waiting}` };
    }
    live.confirm.answer(answer);
    return { ok: true, state: live.row.record.state, step };
  }

  /** The runs this process drives: for `edge-agent operations` and the console. */
  running(): { runId: string; procedure: string; state: RunState; phase: string; step: string | undefined; percent: number; dryRun: boolean; confirm?: { step: string; message: string; expiresAt: string } }[] {
    return [...this.live.values()].map((l) => ({
      runId: l.row.runId,
      procedure: l.row.procedure.id,
      state: l.row.record.state,
      phase: l.row.record.phase,
      step: l.currentStep,
      percent: this.percent(l),
      dryRun: l.row.dryRun,
      ...(l.confirm ? { confirm: { step: l.confirm.step, message: l.confirm.message, expiresAt: iso(l.confirm.expiresAt) } } : {}),
    }));
  }

  reports(limit: number): ReportSummary[] {
    return this.d.store.list(limit);
  }

  // --- the loop ----------------------------------------------------------------------------

  private track(row: RunRow): Live {
    const live = this.liveOf(row);
    this.live.set(row.runId, live);
    if (live.disruptive) {
      this.maintenanceRuns++;
      if (this.maintenanceRuns === 1) this.d.setMaintenance?.(true);
    }
    return live;
  }

  private liveOf(row: RunRow): Live {
    return {
      row,
      shape: { steps: row.procedure.steps.length, rollback: row.procedure.rollback.length },
      stepAbort: undefined,
      currentStep: undefined,
      wake: undefined,
      pauseWaiters: [],
      confirm: undefined,
      deadlinePassed: false,
      disruptive: row.procedure.disruptive && !row.dryRun,
      budget: undefined,
    };
  }

  private notRunning(runId: string): ControlAnswer {
    const row = this.d.store.get(runId);
    return { ok: false, code: 'not-running', message: row ? `run ${runId} is ${row.record.state}` : `no procedure run ${runId} is running` };
  }

  /** Applies an event; the refusal's reason, or undefined. */
  private apply(live: Live, ev: RunEvent): string | undefined {
    const t = transition(live.row.record, ev, live.shape);
    if (!t.ok) return t.reason;
    live.row.record = t.run;
    if (t.run.state === 'paused' || isTerminal(t.run.state) || t.run.phase === 'rollback') this.settlePauses(live);
    return undefined;
  }

  private settlePauses(live: Live): void {
    const state = live.row.record.state;
    const answer: ControlAnswer =
      state === 'paused' ? { ok: true, state, step: live.currentStep } : { ok: false, code: 'not-running', message: `the run ${isTerminal(state) ? `ended ${state}` : 'is rolling back'} before its next step boundary` };
    for (const w of live.pauseWaiters.splice(0)) w(answer);
  }

  private save(live: Live): void {
    // A terminal state is written once, with its report, by end(): the store refuses any write
    // after a terminal one, so writing it here first would lose the report.
    if (isTerminal(live.row.record.state) && live.row.report === undefined) return;
    this.d.store.save(live.row);
  }

  private percent(live: Live): number {
    const r = live.row.record;
    if (isTerminal(r.state)) return 100;
    if (r.phase === 'rollback') return 100;
    return live.shape.steps === 0 ? 100 : Math.round((Math.min(r.cursor, live.shape.steps) / live.shape.steps) * 100);
  }

  private async drive(live: Live, ctl: RunControl): Promise<RunEnd> {
    const { clock } = this.d;
    const row = live.row;
    const onCancel = (): void => {
      if (this.apply(live, { type: 'cancel' }) !== undefined) return;
      this.d.logger.info({ run: row.runId, step: live.currentStep }, 'cancel: stopping at the step boundary (a command step is stopped now), then rolling back');
      live.stepAbort?.abort('cancel');
      live.wake?.();
    };
    if (ctl.signal.aborted) onCancel();
    else ctl.signal.addEventListener('abort', onCancel, { once: true });
    const onDeadline = (): void => {
      live.deadlinePassed = true;
      if (live.row.record.phase === 'rollback' || isTerminal(live.row.record.state)) return;
      this.d.logger.warn({ run: row.runId, step: live.currentStep, maxDurationSec: row.procedure.maxDurationSec }, 'the run passed maxDurationSec: stopping it, then rolling back');
      live.stepAbort?.abort('timeout');
      live.wake?.();
    };
    const deadline = clock.setTimeout(onDeadline, Math.max(0, row.deadlineAt - clock.now()));
    const cpu0 = row.dryRun ? undefined : this.d.cpu?.usedMs();
    if (cpu0 !== undefined) live.budget = { cpu0, wall0: clock.now(), pacedMs: 0, cpuPct: 0 };
    const heartbeat = clock.setInterval(() => ctl.progress(live.currentStep ?? row.record.state, this.percent(live)), this.limits.heartbeatMs);
    try {
      for (;;) {
        if (live.deadlinePassed && live.row.record.phase === 'steps' && !isTerminal(live.row.record.state)) {
          if (this.apply(live, { type: 'deadline' }) === undefined) this.save(live);
        }
        const eff = effectOf(live.row.record, live.shape);
        if (eff.kind === 'finished') break;
        if (eff.kind === 'wait') {
          await this.waitWhilePaused(live);
          continue;
        }
        if (eff.kind === 'check-criteria') {
          await this.checkCriteria(live);
          continue;
        }
        await this.runStep(live, eff.phase, eff.index, ctl);
        // Between steps (not rollback steps: those restore a safe state as soon as they can).
        if (eff.phase === 'steps' && live.row.record.state === 'running' && live.row.record.phase === 'steps' && !live.row.record.cancelRequested && !live.row.record.pauseRequested && !live.deadlinePassed) {
          const abort = new AbortController();
          live.stepAbort = abort;
          await this.pace(live, abort.signal);
          live.stepAbort = undefined;
        }
      }
    } finally {
      clock.clearTimeout(deadline);
      clock.clearInterval(heartbeat);
      ctl.signal.removeEventListener('abort', onCancel);
    }
    return this.end(live);
  }

  private async waitWhilePaused(live: Live): Promise<void> {
    if (live.row.record.state !== 'paused') return;
    this.save(live);
    this.d.logger.info({ run: live.row.runId, next: live.row.procedure.steps[live.row.record.cursor]?.id }, 'run paused at a step boundary');
    this.settlePauses(live);
    await new Promise<void>((resolve) => {
      live.wake = resolve;
    });
    live.wake = undefined;
  }

  private async checkCriteria(live: Live): Promise<void> {
    const row = live.row;
    if (row.dryRun) {
      this.apply(live, { type: 'criteria-checked', ok: true });
      return;
    }
    const res = await this.conditions(row.procedure.successCriteria, row.params);
    row.extra.successCriteria = res;
    const bad = res.filter((c) => !c.ok);
    this.apply(live, { type: 'criteria-checked', ok: bad.length === 0, reason: bad.length > 0 ? `success criteria not met: ${bad.map((c) => c.reason).join('; ')}` : undefined });
  }

  private async conditions(list: readonly Condition[], params: Record<string, ParamValue>): Promise<ConditionReport[]> {
    if (list.length === 0) return [];
    const metrics = await this.metricsOrEmpty();
    return list.map((c) => {
      const r = evaluateCheck(substituteValue(c.check, params) as Check, metrics);
      return { name: c.name, ok: r.ok, reason: r.reason };
    });
  }

  private async metricsOrEmpty(): Promise<MetricsSnapshot> {
    try {
      return await this.d.metrics();
    } catch (err) {
      this.d.logger.warn({ err }, 'reading the metrics for a check failed: every check is unknown');
      return {};
    }
  }

  private async runStep(live: Live, phase: 'steps' | 'rollback', index: number, ctl: RunControl): Promise<void> {
    const row = live.row;
    const raw = (phase === 'steps' ? row.procedure.steps : row.procedure.rollback)[index]!;
    const step = substituteStep(raw, row.params);
    const reports = phase === 'steps' ? row.steps : row.rollbackSteps;
    const side = stepHasSideEffects(step);
    live.currentStep = step.id;
    ctl.progress(step.id, this.percent(live));
    const base = { id: step.id, ...(step.name ? { name: step.name } : {}), type: step.type };
    let rep: StepReport;
    if (row.dryRun && side) {
      rep = { ...base, outcome: 'would-run', message: 'dry run: this step has side effects and was not executed' };
    } else if (row.dryRun && step.type === 'confirm') {
      rep = { ...base, outcome: 'skipped', message: 'dry run: nobody is asked' };
    } else {
      // Written before a step that changes anything: after a power cut the run knows where it was.
      if (side) this.save(live);
      rep = await this.attempts(live, step, base);
    }
    reports[index] = rep;
    const outcome: StepOutcome = rep.outcome === 'would-run' || rep.outcome === 'skipped' ? 'ok' : rep.outcome;
    const stateBefore = row.record.state;
    if (live.deadlinePassed && phase === 'steps') {
      // The deadline stopped it (or came while it ran): the run rolls back as timed out.
      this.apply(live, { type: 'deadline' });
    } else {
      const refused = this.apply(live, { type: 'step-done', outcome, onFailure: step.onFailure });
      if (refused) {
        this.d.logger.error({ run: row.runId, step: step.id, refused }, 'internal: the run state refused a step outcome; failing the run');
        row.record = { ...row.record, state: 'failed', reason: { code: 'internal', message: refused } };
      }
    }
    live.currentStep = undefined;
    if (side || outcome !== 'ok' || row.record.state !== stateBefore || row.record.phase !== phase) this.save(live);
  }

  /**
   * The CPU budget: while the agent with its children used more than limits.maxCpuPct of one core
   * since the run started (in this process), sleeps until the average is back under it, in
   * slices of at most a second, until `signal` (cancel, deadline, the step's timeout) stops it.
   * The sleep counts toward maxDurationSec like any other time of the run.
   */
  private async pace(live: Live, signal: AbortSignal): Promise<void> {
    const b = live.budget;
    const cpu = this.d.cpu;
    if (!b || !cpu) return;
    const { clock } = this.d;
    const max = this.limits.maxCpuPct;
    const doze = cpu.sleep ?? ((ms: number, s: AbortSignal) => sleep(ms, undefined, { signal: s }).catch(() => undefined));
    while (!signal.aborted) {
      const used = cpu.usedMs();
      if (used === undefined) return;
      const elapsed = clock.now() - b.wall0;
      b.cpuPct = elapsed > 0 ? ((used - b.cpu0) * 100) / elapsed : 0;
      // The wall time at which the CPU used so far is `max` % of it.
      const owed = ((used - b.cpu0) * 100) / max - elapsed;
      if (owed <= 1) return;
      const ms = Math.min(1000, Math.ceil(owed));
      const t0 = clock.now();
      await doze(ms, signal);
      b.pacedMs += clock.now() - t0;
    }
  }

  /** A step with its retries and validation; never throws. */
  private async attempts(live: Live, step: Step, base: Pick<StepReport, 'id' | 'name' | 'type'>): Promise<StepReport> {
    const started = this.d.clock.now();
    let rep: StepReport = { ...base, outcome: 'failed' };
    const tries = step.retries + 1;
    for (let attempt = 1; attempt <= tries; attempt++) {
      const abort = new AbortController();
      live.stepAbort = abort;
      if (live.row.record.cancelRequested && live.row.record.phase === 'steps') abort.abort('cancel');
      else if (live.deadlinePassed && live.row.record.phase === 'steps') abort.abort('timeout');
      let res: Omit<StepReport, 'id' | 'name' | 'type'>;
      try {
        res = await this.execute(live, step, abort.signal);
      } catch (err) {
        res = { outcome: 'failed', message: `${errorCode(err) ?? 'error'}: ${errorMessage(err)}` };
      }
      if (res.outcome === 'ok' && step.validate) {
        const metrics = await this.metricsOrEmpty();
        const v = evaluateCheck(step.validate.check, metrics);
        res = { ...res, validation: { ok: v.ok, reason: v.reason }, ...(v.ok ? {} : { outcome: 'failed' as const, message: `validation failed: ${v.reason}` }) };
      }
      live.stepAbort = undefined;
      rep = { ...base, ...res, startedAt: iso(started), elapsedMs: this.d.clock.now() - started, ...(tries > 1 ? { attempts: attempt } : {}) };
      if (rep.outcome === 'ok' || rep.outcome === 'cancelled' || abort.signal.aborted || attempt === tries) break;
      this.d.logger.warn({ run: live.row.runId, step: step.id, attempt, outcome: rep.outcome, message: rep.message }, 'step failed: trying again');
      await sleep(this.limits.retryDelayMs).catch(() => undefined);
      if (live.row.record.cancelRequested || live.deadlinePassed) break;
    }
    if (rep.message) rep.message = this.mask(rep.message);
    return rep;
  }

  private mask(text: string): string {
    return scrub(text, this.d.secrets?.() ?? []);
  }

  /** The outcome when a step's own stop fired: `cancel` or `timeout`. */
  private stopped(signal: AbortSignal): 'cancelled' | 'timeout' {
    return signal.reason === 'cancel' ? 'cancelled' : 'timeout';
  }

  /** Runs `fn` bounded by the step's timeout (its own controller), stopping it on the step's signal. */
  private async bounded<T>(signal: AbortSignal, timeoutSec: number, fn: (signal: AbortSignal) => Promise<T>): Promise<{ value: T } | { stopped: 'cancelled' | 'timeout' }> {
    const inner = new AbortController();
    const timer = this.d.clock.setTimeout(() => inner.abort('timeout'), timeoutSec * 1000);
    const forward = (): void => inner.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    try {
      const stoppedP = new Promise<{ stopped: 'cancelled' | 'timeout' }>((resolve) => {
        if (inner.signal.aborted) resolve({ stopped: this.stopped(inner.signal) });
        else inner.signal.addEventListener('abort', () => resolve({ stopped: this.stopped(inner.signal) }), { once: true });
      });
      return await Promise.race([fn(inner.signal).then((value) => ({ value })), stoppedP]);
    } finally {
      this.d.clock.clearTimeout(timer);
      signal.removeEventListener('abort', forward);
    }
  }

  private async execute(live: Live, step: Step, signal: AbortSignal): Promise<Omit<StepReport, 'id' | 'name' | 'type'>> {
    const row = live.row;
    const log = this.d.logger.child({ run: row.runId, procedure: row.procedure.id, step: step.id });
    const timeoutSec = step.timeoutSec ?? this.limits.defaultStepTimeoutSec;
    switch (step.type) {
      case 'log':
        log.info({ message: this.mask(step.message) }, 'procedure log step');
        return { outcome: 'ok', output: this.mask(step.message) };
      case 'check': {
        const v = evaluateCheck(step.check, await this.metricsOrEmpty());
        return { outcome: v.ok ? 'ok' : 'failed', message: v.reason };
      }
      case 'snapshot': {
        const snap = await this.d.snapshot();
        const metrics = (snap.metrics ?? {}) as Record<string, unknown>;
        const data = step.metrics ? { ...snap, metrics: Object.fromEntries(step.metrics.map((m) => [m, metrics[m] ?? null])) } : snap;
        return { outcome: 'ok', data };
      }
      case 'wait': {
        const ms = row.dryRun ? Math.min(step.seconds * 1000, this.limits.dryRunWaitMaxMs) : step.seconds * 1000;
        if (signal.aborted) return { outcome: this.stopped(signal) };
        const r = await this.bounded(signal, Math.max(timeoutSec, step.seconds + 1), (s) => sleep(ms, undefined, { signal: s }).catch(() => undefined));
        return 'stopped' in r ? { outcome: r.stopped, message: `stopped while waiting (${r.stopped})` } : { outcome: 'ok', ...(row.dryRun && ms < step.seconds * 1000 ? { message: `dry run: waited ${ms} ms instead of ${step.seconds} s` } : {}) };
      }
      case 'notify':
        this.d.event({ type: 'maintenance', severity: step.severity, code: step.code, message: this.mask(step.message), runId: row.runId, procedure: row.procedure.id, step: step.id });
        return { outcome: 'ok', message: `sent ${step.code} to the WMS` };
      case 'confirm':
        return this.confirmStep(live, step, signal, log);
      case 'command': {
        const r = await runCommand({
          argv: step.argv as [string, ...string[]],
          okExitCodes: step.okExitCodes,
          timeoutMs: timeoutSec * 1000,
          killGraceMs: this.limits.killGraceMs,
          maxOutputBytes: this.limits.maxOutputBytes,
          secrets: this.d.secrets?.() ?? [],
          signal,
          // Recorded (durably) while it runs: an agent killed now leaves it behind, and the next
          // one stops it before the run goes on.
          onStart: (pid) => {
            const id = processIdentity(pid);
            if (!id) return;
            row.extra.running = id;
            this.save(live);
          },
        });
        if (row.extra.running) {
          delete row.extra.running;
          this.save(live);
        }
        const outcome = r.outcome === 'cancelled' && signal.reason === 'timeout' ? 'timeout' : r.outcome;
        return {
          outcome,
          exitCode: r.exitCode,
          output: r.output,
          ...(r.error ? { message: r.error } : r.signal ? { message: `ended by ${r.signal}` } : outcome === 'failed' ? { message: `exit code ${r.exitCode} is not in okExitCodes ${JSON.stringify(step.okExitCodes)}` } : {}),
        };
      }
      case 'action': {
        if (!isActionName(step.action)) return { outcome: 'failed', message: `action-unavailable: no built-in action ${step.action}` };
        const impl = this.d.actions[step.action];
        if (!impl) return { outcome: 'failed', message: `action-unavailable: this agent does not provide ${step.action} here` };
        const args = BUILTIN_ACTIONS[step.action].with.safeParse(step.with);
        if (!args.success) return { outcome: 'failed', message: `invalid-params: ${args.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
        const r = await this.bounded(signal, timeoutSec, (s) => impl(args.data as Record<string, unknown>, { runId: row.runId, signal: s, logger: log, pace: () => this.pace(live, s) }));
        if ('stopped' in r) return { outcome: r.stopped, message: `the action was stopped (${r.stopped === 'timeout' ? `timeout after ${timeoutSec} s` : 'cancelled'})` };
        return { outcome: r.value.ok ? 'ok' : 'failed', message: r.value.message, ...(r.value.details ? { data: r.value.details } : {}) };
      }
      case 'http':
        return this.httpStep(step, signal, Math.min(timeoutSec, 300));
    }
  }

  private async confirmStep(live: Live, step: Extract<Step, { type: 'confirm' }>, signal: AbortSignal, log: Logger): Promise<Omit<StepReport, 'id' | 'name' | 'type'>> {
    const row = live.row;
    const expiresAt = this.d.clock.now() + step.ttlSec * 1000;
    let answer: (a: 'yes' | 'no') => void = () => undefined;
    const answered = new Promise<'yes' | 'no'>((resolve) => (answer = resolve));
    live.confirm = { step: step.id, message: this.mask(step.message), expiresAt, answer: (a) => answer(a) };
    this.d.event({ type: 'maintenance', severity: 'info', code: 'confirm-requested', message: this.mask(step.message), runId: row.runId, procedure: row.procedure.id, step: step.id, expiresAt: iso(expiresAt) });
    log.info({ ttlSec: step.ttlSec }, 'waiting for a confirmation');
    try {
      const r = await this.bounded(signal, step.ttlSec, () => answered);
      if ('stopped' in r) return r.stopped === 'timeout' && !signal.aborted ? { outcome: 'timeout', message: `no answer within ${step.ttlSec} s` } : { outcome: r.stopped, message: `stopped while waiting for a confirmation (${r.stopped})` };
      return r.value === 'yes' ? { outcome: 'ok', message: 'answered yes' } : { outcome: 'failed', message: 'answered no' };
    } finally {
      live.confirm = undefined;
    }
  }

  private async httpStep(step: Extract<Step, { type: 'http' }>, signal: AbortSignal, timeoutSec: number): Promise<Omit<StepReport, 'id' | 'name' | 'type'>> {
    const doFetch = this.d.fetch ?? fetch;
    let url: URL;
    try {
      url = new URL(step.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      return { outcome: 'failed', message: `invalid-params: ${JSON.stringify(step.url)} is not an http(s) URL` };
    }
    const shown = `${url.origin}${url.pathname}`;
    const r = await this.bounded(signal, timeoutSec, async (s) => {
      const res = await doFetch(url, {
        method: step.method,
        headers: { ...(step.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(step.headers ?? {}) },
        ...(step.body !== undefined ? { body: JSON.stringify(step.body) } : {}),
        signal: s,
        redirect: 'manual',
      });
      const out = new BoundedOutput(this.limits.maxOutputBytes);
      const reader = res.body?.getReader();
      if (reader) {
        let kept = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          out.push(Buffer.from(value));
          kept += value.length;
          if (kept > this.limits.maxOutputBytes * 4) {
            await reader.cancel();
            break;
          }
        }
      }
      return { status: res.status, body: out.text(this.d.secrets?.() ?? []) };
    }).catch((err: unknown) => ({ error: errorMessage(err) }));
    if ('error' in r) return { outcome: 'failed', message: `${step.method} ${shown}: ${r.error}` };
    if ('stopped' in r) return { outcome: r.stopped, message: `${step.method} ${shown} stopped (${r.stopped})` };
    const expect = step.expectStatus === undefined ? undefined : Array.isArray(step.expectStatus) ? step.expectStatus : [step.expectStatus];
    const ok = expect ? expect.includes(r.value.status) : r.value.status >= 200 && r.value.status < 300;
    return { outcome: ok ? 'ok' : 'failed', output: this.mask(r.value.body), message: `${step.method} ${shown} answered ${r.value.status}${ok ? '' : ` (expected ${expect ? expect.join(' or ') : '2xx'})`}` };
  }

  // --- the end --------------------------------------------------------------------------------

  private end(live: Live): RunEnd {
    const row = live.row;
    row.endedAt = this.d.clock.now();
    const b = live.budget;
    const used = b ? this.d.cpu?.usedMs() : undefined;
    if (b && used !== undefined) {
      const elapsed = row.endedAt - b.wall0;
      row.extra.cpu = { maxCpuPct: this.limits.maxCpuPct, cpuPct: elapsed > 0 ? Math.round(((used - b.cpu0) * 1000) / elapsed) / 10 : 0, pacedMs: (row.extra.cpu?.pacedMs ?? 0) + b.pacedMs };
    }
    const report = this.report(row);
    row.report = report;
    if (!this.d.store.save(row)) this.d.logger.warn({ run: row.runId }, 'the run was already terminal in the store: its report stays as it was');
    if (this.live.get(row.runId) === live) {
      this.live.delete(row.runId);
      if (live.disruptive) {
        this.maintenanceRuns--;
        if (this.maintenanceRuns === 0) this.d.setMaintenance?.(false);
      }
    }
    this.settlePauses(live);
    live.confirm = undefined;
    const text = JSON.stringify(report);
    const large = Buffer.byteLength(text) > this.limits.reportEventBytes;
    this.d.event({
      type: 'maintenance-report',
      severity: report.ok ? 'info' : 'warning',
      code: `maintenance-${report.state}`,
      message: `${row.procedure.id} ${report.state}${report.reason && !report.ok ? `: ${report.reason.message}` : ''}${row.dryRun ? ' (dry run)' : ''}`,
      runId: row.runId,
      procedure: row.procedure.id,
      ...(large ? { summary: summarize(report), truncated: true } : { report }),
    });
    this.d.logger.info({ run: row.runId, procedure: row.procedure.id, state: report.state, code: report.reason?.code, elapsedMs: report.elapsedMs }, 'procedure run ended');
    try {
      this.d.store.prune(this.limits.maxReports);
    } catch (err) {
      this.d.logger.warn({ err }, 'pruning old maintenance reports failed');
    }
    return { state: report.state, report };
  }

  /** The report of a run (CONTRACT.md section 6); pure over the row. */
  report(row: RunRow): Report {
    return buildReport(row);
  }
}

/** The report of a run, from its row. Steps not reached are `skipped`. Pure. */
export function buildReport(row: RunRow): Report {
  const p = row.procedure;
  const steps: StepReport[] = p.steps.map((s, i) => row.steps[i] ?? { id: s.id, ...(s.name ? { name: s.name } : {}), type: s.type, outcome: 'skipped' });
  const count = (o: StepReport['outcome'][]): number => steps.filter((s) => o.includes(s.outcome)).length;
  const state = row.record.state;
  const ok = state === 'succeeded';
  const endedAt = row.endedAt ?? row.startedAt;
  const criteria = row.extra.successCriteria;
  return {
    runId: row.runId,
    procedure: p.id,
    name: p.name,
    category: p.category,
    severity: p.severity,
    file: row.file,
    definitionSha256: row.definitionSha256,
    trigger: row.trigger,
    startedBy: row.startedBy,
    dryRun: row.dryRun,
    params: row.params,
    state,
    ok,
    ...(row.record.reason && state !== 'succeeded' ? { reason: row.record.reason } : {}),
    startedAt: iso(row.startedAt),
    endedAt: iso(endedAt),
    elapsedMs: endedAt - row.startedAt,
    stepsTotal: p.steps.length,
    stepsOk: count(['ok']),
    stepsFailed: count(['failed', 'timeout', 'cancelled']),
    stepsSkipped: count(['skipped', 'would-run']),
    stepsWouldRun: count(['would-run']),
    steps,
    prerequisites: row.extra.prerequisites ?? [],
    successCriteriaOk: row.dryRun || criteria === undefined ? null : criteria.every((c) => c.ok),
    successCriteria: criteria ?? [],
    ...(row.extra.cpu ? { cpu: row.extra.cpu } : {}),
    rollback: { executed: row.rollbackSteps.length > 0, ...(row.record.rollbackCause ? { cause: row.record.rollbackCause } : {}), steps: row.rollbackSteps },
  };
}

/** A report without outputs and step data: what ~/events carries for a large one. */
export function summarize(report: Report): Record<string, unknown> {
  const strip = (s: StepReport): StepReport => {
    const rest = { ...s };
    delete rest.output;
    delete rest.data;
    return rest;
  };
  const r = report as Report & { steps: StepReport[]; rollback: { executed: boolean; steps: StepReport[] } };
  return { ...report, steps: r.steps.map(strip), rollback: { ...r.rollback, steps: r.rollback.steps.map(strip) } };
}
