/**
 * The command router: `~/cmd/{op}` in, `~/res/{id}` out, with the lifecycle of CONTRACT.md
 * section 2: accepted -> executing* -> successful | failed | cancelled, or rejected.
 *
 * INVARIANTS
 * - Every status is persisted (command row + outbox row, one transaction) before the work it
 *   announces starts; so every command reaches exactly one terminal status, across restarts.
 * - A command id seen before is never executed again; its latest status is published again.
 * - At most one `exclusive` operation is accepted and unfinished at a time; at most `maxConcurrent`
 *   run at once, the others wait in order (persisted as `accepted`); at most `maxPending` wait or run.
 * - A command a previous process left `executing` is resumed by its handler's `resume`, or
 *   failed with `interrupted` when the handler has none; one left `accepted` never started and
 *   is queued again.
 * - A handler that throws fails its command with `internal`; it never takes the router down.
 * - The update runner's watchdog (liveness(), abortStalled()): an operation that may still be
 *   cancelled and has reported no progress for `stallMs` is hung; the watchdog's restart aborts it
 *   through its signal and it fails with `stalled`. One past its point of no return is never
 *   touched (an activation is not interrupted). One that ignores the abort is failed with
 *   `stalled` after `stallGraceMs` and forgotten: whatever it returns later is dropped.
 */
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { Db } from '../lib/sqlite.js';
import { EdgeError, errorCode, errorMessage } from '../lib/errors.js';
import type { Outbox } from './outbox.js';
import type { CommandStore, CommandRecord } from './command-store.js';
import { parseCommand, type CommandCode } from './command-parse.js';
import type { CommandStatus, OperationContext, OperationHandler, OperationOutcome, Reason } from '../core/ports.js';

export interface RouterOptions {
  db: Db;
  store: CommandStore;
  outbox: Outbox;
  logger: Logger;
  clock: Clock;
  /** `~/res/{id}` for an id. */
  resultTopic(id: string): string;
  limits: { maxPayloadBytes: number; maxPending: number; maxConcurrent: number; retentionDays: number };
  /** How long stop() waits for running operations (default 5 s); they stay resumable after it. */
  stopWaitMs?: number;
  /** No progress for this long while cancellable: the operation is stalled. Undefined: never. */
  stallMs?: number;
  /** How long a stalled operation has to end after its abort before it is failed without it (default 30 s). */
  stallGraceMs?: number;
  /** Told of every command that reached a terminal status (after it was persisted). */
  onFinished?(id: string, op: string, outcome: Exclude<OperationOutcome, { status: 'pending' }>): void;
}

interface Running {
  id: string;
  op: string;
  exclusive: boolean;
  abort: AbortController;
  cancellable: boolean;
  lastProgressAt: number;
  lastStep: string | undefined;
  /** Launched, or last called progress() (also when the call was rate-limited). */
  aliveAt: number;
  /** Aborted by the watchdog: its outcome becomes `stalled`. */
  stalled: boolean;
  giveUp: NodeJS.Timeout | undefined;
  /** Its terminal status is recorded (an abandoned stalled one): a late outcome is dropped. */
  done: boolean;
}

const PROGRESS_MIN_INTERVAL_MS = 500;
/** The abort reason of a stalled operation; an operation may quote it in its own message. */
const STALL_ABORT_MESSAGE = 'the watchdog aborted it';

export interface StatusMessage {
  id: string;
  op: string;
  status: CommandStatus;
  ts: string;
  progress?: { step: string; percent?: number };
  reason?: Reason;
  result?: unknown;
}

export class Router {
  readonly name = 'router';
  private readonly handlers = new Map<string, OperationHandler<unknown>>();
  private readonly running = new Map<string, Running>();
  private readonly waiting: { rec: CommandRecord; handler: OperationHandler<unknown> }[] = [];
  private readonly settled = new Set<Promise<void>>();
  private pruneTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Counters for status and diagnostics. */
  readonly counters = { received: 0, rejected: 0, dropped: 0, duplicates: 0, executed: 0 };

  constructor(private readonly opts: RouterOptions) {}

  register<P>(handler: OperationHandler<P>): void {
    if (this.handlers.has(handler.op)) throw new Error(`operation ${handler.op} registered twice`);
    this.handlers.set(handler.op, handler);
  }

  ops(): string[] {
    return [...this.handlers.keys(), 'cancel'].sort();
  }

  /** Resumes what a previous process left unfinished; starts pruning old commands. */
  async start(): Promise<void> {
    this.stopping = false;
    for (const rec of this.opts.store.unfinished()) {
      const handler = this.handlers.get(rec.op);
      if (handler && rec.status === 'accepted') {
        this.waiting.push({ rec, handler });
      } else if (handler?.resume) {
        this.launch(rec, handler, true);
      } else {
        this.finish(rec.id, rec.op, { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped while the command was running' } });
      }
    }
    this.pumpQueue();
    this.prune();
    this.pruneTimer = this.opts.clock.setInterval(() => this.prune(), 3600_000);
    // Housekeeping never keeps the process alive on its own.
    this.pruneTimer.unref();
  }

  /** Waits a bounded time for running operations; one cut short stays resumable at next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.opts.clock.clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
    for (const r of this.running.values()) this.opts.clock.clearTimeout(r.giveUp);
    if (this.settled.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = this.opts.clock.setTimeout(resolve, this.opts.stopWaitMs ?? 5000)));
    await Promise.race([Promise.allSettled([...this.settled]), bound]);
    this.opts.clock.clearTimeout(timer);
  }

  current(): { id: string; op: string; cancellable: boolean; step: string | undefined }[] {
    const running = [...this.running.values()].map((r) => ({ id: r.id, op: r.op, cancellable: r.cancellable, step: r.lastStep }));
    // Bounded: a report that listed a thousand queued commands would make every diagnostics
    // result (and its stored and sent statuses) grow with the queue. queued() gives the count.
    const queued = this.waiting.slice(0, 10).map((w) => ({ id: w.rec.id, op: w.rec.op, cancellable: true, step: 'queued' }));
    return [...running, ...queued];
  }

  /** `hung` while an operation is stalled (see the invariants); for the watchdog's `update-runner`. */
  liveness(): 'healthy' | 'hung' {
    return this.stalledRuns().length > 0 ? 'hung' : 'healthy';
  }

  /** The watchdog's restart of the update runner: aborts the stalled operations, nothing else. */
  async abortStalled(): Promise<void> {
    const ms = this.opts.stallMs ?? 0;
    for (const run of this.stalledRuns()) {
      run.stalled = true;
      this.opts.logger.warn({ id: run.id, op: run.op, step: run.lastStep, stallMs: ms }, 'operation stalled: aborting it');
      run.abort.abort(new EdgeError('stalled', STALL_ABORT_MESSAGE));
      run.giveUp = this.opts.clock.setTimeout(() => this.abandon(run), this.opts.stallGraceMs ?? 30_000);
    }
  }

  private stalledRuns(): Running[] {
    const ms = this.opts.stallMs;
    if (ms === undefined) return [];
    const now = this.opts.clock.now();
    return [...this.running.values()].filter((r) => r.cancellable && !r.stalled && now - r.aliveAt >= ms);
  }

  private stalledReason(run: Running, detail: string | undefined): Reason {
    const ms = this.opts.stallMs ?? 0;
    return { code: 'stalled', message: `${run.op} made no progress for ${Math.round(ms / 1000)} s (last step: ${run.lastStep ?? 'none'}): ${detail ?? STALL_ABORT_MESSAGE}` };
  }

  /** A stalled operation did not end after its abort: failed without it, and the queue goes on. */
  private abandon(run: Running): void {
    if (run.done || this.running.get(run.id) !== run) return;
    run.done = true;
    this.running.delete(run.id);
    this.opts.logger.error({ id: run.id, op: run.op }, 'stalled operation did not end after its abort: failed without it');
    this.finish(run.id, run.op, { status: 'failed', reason: this.stalledReason(run, `${STALL_ABORT_MESSAGE}, but it did not stop`) });
    this.pumpQueue();
  }

  /** Commands accepted and waiting for their turn. */
  queued(): number {
    return this.waiting.length;
  }

  /** One message from `~/cmd/{op}`. Never throws. */
  handle(op: string, payload: Buffer): void {
    this.counters.received++;
    try {
      this.handleUnsafe(op, payload);
    } catch (err) {
      this.opts.logger.error({ err, op }, 'command handling failed');
    }
  }

  private handleUnsafe(op: string, payload: Buffer): void {
    const { logger, store, clock } = this.opts;
    const verdict = parseCommand(op, payload, this.opts.limits.maxPayloadBytes, clock.now());
    if (verdict.kind === 'drop') {
      this.counters.dropped++;
      logger.warn({ op, reason: verdict.reason, bytes: payload.length }, verdict.message);
      return;
    }
    const id = verdict.kind === 'command' ? verdict.cmd.id : verdict.id;
    const seen = store.get(id);
    if (seen) {
      this.counters.duplicates++;
      logger.info({ id, op, status: seen.status }, 'duplicate command id: publishing its latest status again');
      this.opts.outbox.enqueueNow({ topic: this.opts.resultTopic(id), payload: seen.lastMessage, kind: 'status', retain: true });
      return;
    }
    if (verdict.kind === 'reject') return this.reject(id, op, verdict.code, verdict.message, undefined);
    const cmd = verdict.cmd;
    if (cmd.op === 'cancel') return this.cancel(cmd.id, cmd.params);
    const handler = this.handlers.get(cmd.op);
    if (!handler) return this.reject(id, op, 'unknown-op', `unknown operation "${op}"; known: ${this.ops().join(', ')}`, cmd.params);
    const parsed = handler.params.safeParse(cmd.params);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; ');
      return this.reject(id, op, 'invalid-params', problems, cmd.params);
    }
    if (this.stopping) return this.reject(id, op, 'shutting-down', 'the agent is shutting down; send the command again later', cmd.params);
    const pending = this.running.size + this.waiting.length;
    if (pending >= this.opts.limits.maxPending) return this.reject(id, op, 'busy', `${pending} commands are waiting or running`, cmd.params);
    if (handler.exclusive) {
      const other = [...this.running.values()].find((r) => r.exclusive) ?? this.waiting.find((w) => w.handler.exclusive)?.rec;
      if (other) return this.reject(id, op, 'busy', `${other.op} ${other.id} is running`, cmd.params);
    }
    const message = this.statusMessage(id, op, 'accepted', {});
    this.opts.db.transaction(() => {
      store.insert({ id, op, status: 'accepted', params: parsed.data, lastMessage: message, now: clock.now(), expiresAt: cmd.expiresAt });
      this.publish(id, message, true);
    })();
    this.counters.executed++;
    const rec = store.get(id);
    if (rec) this.waiting.push({ rec, handler });
    this.pumpQueue();
  }

  private pumpQueue(): void {
    while (!this.stopping && this.running.size < this.opts.limits.maxConcurrent) {
      const next = this.waiting.shift();
      if (!next) return;
      this.launch(next.rec, next.handler, false);
    }
  }

  private reject(id: string, op: string, code: CommandCode, message: string, params: unknown): void {
    this.counters.rejected++;
    this.opts.logger.info({ id, op, code }, `command rejected: ${message}`);
    const msg = this.statusMessage(id, op, 'rejected', { reason: { code, message } });
    this.opts.db.transaction(() => {
      this.opts.store.insert({ id, op, status: 'rejected', params, lastMessage: msg, now: this.opts.clock.now(), expiresAt: undefined });
      this.publish(id, msg, true);
    })();
  }

  private cancel(id: string, params: unknown): void {
    const target = (params as { target?: unknown }).target;
    if (typeof target !== 'string') return this.reject(id, 'cancel', 'invalid-params', 'target: the id of the command to cancel is required', params);
    const accepted = this.statusMessage(id, 'cancel', 'accepted', {});
    this.opts.db.transaction(() => {
      this.opts.store.insert({ id, op: 'cancel', status: 'accepted', params, lastMessage: accepted, now: this.opts.clock.now(), expiresAt: undefined });
      this.publish(id, accepted, true);
    })();
    const queued = this.waiting.findIndex((w) => w.rec.id === target);
    if (queued >= 0) {
      const [w] = this.waiting.splice(queued, 1);
      this.finish(target, w!.rec.op, { status: 'cancelled', reason: { code: 'cancelled', message: `cancelled by command ${id} before it started` } });
      return this.finish(id, 'cancel', { status: 'successful', result: { target } });
    }
    const run = this.running.get(target);
    if (!run) {
      const known = this.opts.store.get(target);
      const message = known ? `command ${target} is already ${known.status}` : `no command ${target} is known`;
      return this.finish(id, 'cancel', { status: 'failed', reason: { code: 'unknown-target', message } });
    }
    if (!run.cancellable) {
      return this.finish(id, 'cancel', { status: 'failed', reason: { code: 'not-cancellable', message: `${run.op} ${target} is past its point of no return` } });
    }
    run.abort.abort(new EdgeError('cancelled', `cancelled by command ${id}`));
    this.finish(id, 'cancel', { status: 'successful', result: { target } });
  }

  private launch(rec: CommandRecord, handler: OperationHandler<unknown>, resume: boolean): void {
    const run: Running = {
      id: rec.id,
      op: rec.op,
      exclusive: !!handler.exclusive,
      abort: new AbortController(),
      cancellable: true,
      lastProgressAt: 0,
      lastStep: undefined,
      aliveAt: this.opts.clock.now(),
      stalled: false,
      giveUp: undefined,
      done: false,
    };
    this.running.set(rec.id, run);
    const ctx = this.context(rec, run);
    const p = (async (): Promise<OperationOutcome> => {
      if (!resume) this.setStatus(rec.id, rec.op, 'executing', {}, true);
      return resume && handler.resume ? handler.resume(ctx) : handler.execute(ctx);
    })()
      .catch((err: unknown): OperationOutcome => {
        if (run.abort.signal.aborted) return { status: 'cancelled', reason: { code: 'cancelled', message: errorMessage(err) } };
        ctx.logger.error({ err }, 'operation failed unexpectedly');
        const code = errorCode(err) ?? 'internal';
        return { status: 'failed', reason: { code, message: errorMessage(err) } };
      })
      .then((outcome) => {
        this.opts.clock.clearTimeout(run.giveUp);
        if (run.done) {
          this.opts.logger.warn({ id: rec.id, op: rec.op, status: outcome.status }, 'an abandoned stalled operation ended late: its outcome is dropped');
          return;
        }
        this.running.delete(rec.id);
        // Aborted as stalled and ended without success: the cancellation was the watchdog's.
        const stalled = run.stalled && (outcome.status === 'failed' || outcome.status === 'cancelled');
        const final: OperationOutcome = stalled ? { status: 'failed', reason: this.stalledReason(run, 'reason' in outcome ? outcome.reason?.message : undefined) } : outcome;
        if (final.status !== 'pending') this.finish(rec.id, rec.op, final);
        this.pumpQueue();
      });
    const settled: Promise<void> = p.then(() => {
      this.settled.delete(settled);
    });
    this.settled.add(settled);
  }

  private context(rec: CommandRecord, run: Running): OperationContext<unknown> {
    const logger = this.opts.logger.child({ cmd: rec.id, op: rec.op });
    return {
      id: rec.id,
      op: rec.op,
      params: rec.params,
      logger,
      signal: run.abort.signal,
      progress: (step, percent) => {
        const now = this.opts.clock.now();
        run.aliveAt = now;
        if (step === run.lastStep && now - run.lastProgressAt < PROGRESS_MIN_INTERVAL_MS) return;
        run.lastStep = step;
        run.lastProgressAt = now;
        this.setStatus(rec.id, rec.op, 'executing', { progress: percent === undefined ? { step } : { step, percent } }, false);
      },
      setCancellable: (c) => {
        run.cancellable = c;
      },
      saveData: (data) => this.opts.store.saveData(rec.id, data),
      loadData: () => this.opts.store.get(rec.id)?.data,
    };
  }

  private finish(id: string, op: string, outcome: Exclude<OperationOutcome, { status: 'pending' }>): void {
    const extra: Partial<StatusMessage> = {};
    if ('reason' in outcome && outcome.reason) extra.reason = outcome.reason;
    if (outcome.result !== undefined) extra.result = outcome.result;
    this.setStatus(id, op, outcome.status, extra, true);
    this.opts.logger.info({ id, op, status: outcome.status, code: extra.reason?.code }, 'command finished');
    try {
      this.opts.onFinished?.(id, op, outcome);
    } catch (err) {
      this.opts.logger.error({ err, id, op }, 'onFinished listener failed');
    }
  }

  private setStatus(id: string, op: string, status: CommandStatus, extra: Partial<StatusMessage>, durable: boolean): void {
    const message = this.statusMessage(id, op, status, extra);
    this.opts.db.transaction(() => {
      this.opts.store.update(id, status, message, this.opts.clock.now());
      this.publish(id, message, durable);
    })();
  }

  private publish(id: string, message: string, durable: boolean): void {
    const msg = { topic: this.opts.resultTopic(id), payload: message, kind: 'status' as const, retain: true };
    if (durable) this.opts.outbox.enqueueNow(msg);
    else this.opts.outbox.enqueue(msg);
  }

  private statusMessage(id: string, op: string, status: CommandStatus, extra: Partial<StatusMessage>): string {
    const m: StatusMessage = { id, op, status, ts: new Date(this.opts.clock.now()).toISOString(), ...extra };
    return JSON.stringify(m);
  }

  private prune(): void {
    const before = this.opts.clock.now() - this.opts.limits.retentionDays * 86_400_000;
    const n = this.opts.store.prune(before);
    if (n > 0) this.opts.logger.info({ pruned: n }, 'forgot old finished commands');
  }
}
