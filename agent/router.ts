/**
 * The command router: `~/cmd/{op}` in, `~/res/{id}` out, with the lifecycle of CONTRACT.md
 * section 2: accepted -> executing* -> successful | failed | cancelled, or rejected.
 *
 * INVARIANTS
 * - Every status is persisted (command row + outbox row, one transaction) before the work it
 *   announces starts, and published only once committed; so every command reaches exactly one
 *   terminal status, across restarts.
 * - A terminal status is final: no status is stored or published after it, whatever a handler
 *   reports late (the store refuses the write, and a finished run's progress() does nothing).
 * - Intake is group-committed: what each message leads to (an `accepted` or `rejected` row, a
 *   re-send of a known status) is staged and committed with the others of the same turn of the
 *   event loop (at most INTAKE_BATCH at once), so a flood costs one commit per batch, not one per
 *   message. The message is acknowledged to the broker (`ack(true)`) only after that commit;
 *   when it fails (disk full) it is not (`ack(false)`): the broker sends it again after the
 *   next connect, and nothing about it was published.
 * - Nothing on the path from the broker to the store throws on input: payloads are bounded in
 *   size and nesting (lib/json-payload.ts) and params are serialized before the commit.
 * - Secret parameters (an operation's redactParams) are stored redacted and held in memory for
 *   the run only; a command whose secrets a restart lost fails `interrupted`, never runs without them.
 * - A terminal status the store cannot commit is held in memory and committed (then published)
 *   when the store gate's retry succeeds; queued commands do not start meanwhile.
 * - A command id seen before is never executed again; its latest status is published again.
 * - One queue for everything exclusive (updates, rollbacks, config applies, procedures with side
 *   effects): at most one exclusive operation runs at a time; the others wait, highest priority
 *   first, then oldest first (priority and arrival are persisted with the `accepted` row, so a
 *   restart keeps the order); at most `maxQueued` exclusive ones wait, one more is `busy`.
 *   Non-exclusive operations run beside them. At most `maxConcurrent` run at once; at most
 *   `maxPending` wait or run.
 * - Commands come from the WMS (`~/cmd/{op}`) or, through submit(), from the CLI, the console, a
 *   schedule or the watchdog: the same lifecycle, codes, store, `~/res/{id}` and audit, with
 *   their origin recorded.
 * - A command a previous process left `executing` is resumed by its handler's `resume`, or
 *   failed with `interrupted` when the handler has none; one left `accepted` never started and
 *   is queued again.
 * - A handler that throws fails its command with `internal`; it never takes the router down.
 * - The update runner's watchdog (liveness(), abortStalled()): an operation that may still be
 *   cancelled and has reported no progress for `stallMs` is hung; the watchdog's restart aborts it
 *   through its signal and it fails with `stalled`. One past its point of no return is never
 *   touched (an activation is not interrupted). One that ignores the abort is failed with
 *   `stalled` after `stallGraceMs` and forgotten: whatever it returns later is dropped. One whose
 *   last step is `waiting` (an update waiting for its rollout moment) waits on purpose: not stalled.
 * - A command whose params carry a string `rolloutId` (fleet rollouts) has it as a top-level
 *   `rolloutId` in every status it gets, the rejection at arrival included.
 */
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { Db } from '../lib/sqlite.js';
import { EdgeError, errorCode, errorMessage } from '../lib/errors.js';
import type { Outbox } from './outbox.js';
import type { CommandStore, CommandRecord, NewCommandRow } from './command-store.js';
import { parseCommand } from './command-parse.js';
import type { StoreGate } from './store-gate.js';
import type { WalSync } from '../lib/wal-sync.js';
import type { CommandStatus, OperationContext, OperationHandler, OperationOutcome, Origin, Priority, Reason } from '../core/ports.js';

export interface RouterOptions {
  db: Db;
  store: CommandStore;
  outbox: Outbox;
  logger: Logger;
  clock: Clock;
  /** `~/res/{id}` for an id. */
  resultTopic(id: string): string;
  limits: { maxPayloadBytes: number; maxPending: number; maxConcurrent: number; retentionDays: number; maxQueued?: number };
  /** How long stop() waits for running operations (default 5 s); they stay resumable after it. */
  stopWaitMs?: number;
  /** No progress for this long while cancellable: the operation is stalled. Undefined: never. */
  stallMs?: number;
  /** How long a stalled operation has to end after its abort before it is failed without it (default 30 s). */
  stallGraceMs?: number;
  /** Told of every command that reached a terminal status (after it was persisted). */
  onFinished?(id: string, op: string, outcome: Exclude<OperationOutcome, { status: 'pending' }>): void;
  /** Records each terminal status in the audit trail, in the transaction that commits it. */
  audit?: (id: string, op: string, status: CommandStatus, reason: Reason | undefined, params: unknown, origin?: Origin) => void;
  /**
   * Whether a forgotten command's retained `~/res/{id}` is cleared (an empty retained publish,
   * in the transaction that forgets it): on MQTT 3.1.1, which has no message expiry.
   */
  clearRetained?: () => boolean;
  /** Told when the store cannot commit; retries what the router holds in memory. */
  gate?: StoreGate;
  /**
   * With a connection at synchronous = NORMAL: what a commit announces (the PUBACK, the start
   * of the work) waits for this to say the commit is durable, off the event loop.
   */
  sync?: WalSync;
}

/**
 * What became of a message, for the WMS link: true once what it led to is committed (send the
 * PUBACK), false when the store could not commit it (no PUBACK: the broker sends it again).
 */
export type Ack = (committed: boolean) => void;

/** One message's outcome, staged for the next intake commit. */
interface Staged {
  id: string;
  op: string;
  /** The command row to insert; undefined for a re-send of a known command's status. */
  row: NewCommandRow | undefined;
  message: string;
  exclusive: boolean;
  origin: Origin;
  /** Runs once committed. */
  after: () => void;
  ack: Ack | undefined;
  reason?: Reason;
}

type Saved = 'ok' | 'refused' | 'unsaved';

interface Running {
  id: string;
  op: string;
  exclusive: boolean;
  priority: Priority;
  origin: Origin;
  startedAt: number;
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
/** Staged messages committed at once at most; a flood is cut into commits of this size. */
const INTAKE_BATCH = 256;
/** The abort reason of a stalled operation; an operation may quote it in its own message. */
const STALL_ABORT_MESSAGE = 'the watchdog aborted it';

export interface StatusMessage {
  id: string;
  op: string;
  status: CommandStatus;
  ts: string;
  rolloutId?: string;
  progress?: { step: string; percent?: number; [detail: string]: string | number | undefined };
  reason?: Reason;
  result?: unknown;
}

/** An accepted command waiting for its turn. */
interface Waiting {
  rec: CommandRecord;
  handler: OperationHandler<unknown>;
  exclusive: boolean;
}

/** Options of a command that does not come from the WMS (Router.submit). */
export interface SubmitOptions {
  origin: Origin;
  /** Default: a new `{trigger}-{time}-{random}` id. */
  id?: string;
  priority?: Priority;
  /** ISO time. */
  expiresAt?: string;
}

/** One entry of the operation queue (queue()), for `edge-agent operations` and the console. */
export interface QueueEntry {
  id: string;
  op: string;
  state: 'running' | 'waiting';
  exclusive: boolean;
  priority: Priority;
  origin: Origin;
  since: string;
  step?: string | undefined;
  cancellable: boolean;
  /** 1 = next to start, among the waiting ones. */
  position?: number;
}

const PRIORITY_RANK: Record<Priority, number> = { low: 0, normal: 1, high: 2 };

/** Highest priority first, then oldest first; pure. */
export function queueOrder(a: { rec: Pick<CommandRecord, 'priority' | 'receivedAt'> }, b: { rec: Pick<CommandRecord, 'priority' | 'receivedAt'> }): number {
  return PRIORITY_RANK[b.rec.priority] - PRIORITY_RANK[a.rec.priority] || a.rec.receivedAt - b.rec.receivedAt;
}

export class Router {
  readonly name = 'router';
  private readonly handlers = new Map<string, OperationHandler<unknown>>();
  private readonly running = new Map<string, Running>();
  private readonly waiting: Waiting[] = [];
  private readonly statusListeners = new Set<(msg: StatusMessage) => void>();
  private readonly settled = new Set<Promise<void>>();
  private pruneTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private staged: Staged[] = [];
  /** Accepted and committed, waiting for the fsync before they queue: counted against the limits. */
  private syncing: Staged[] = [];
  private readonly stagedById = new Map<string, Staged>();
  private intakeScheduled: NodeJS.Immediate | undefined;
  /** Full params of running or queued commands whose stored params are redacted. */
  private readonly secretParams = new Map<string, unknown>();
  /** The `rolloutId` of unfinished commands that carry one, echoed in each of their statuses. */
  private readonly rollouts = new Map<string, string>();
  /** Terminal statuses decided but not yet committed (the store could not). */
  private readonly unsaved = new Map<string, { op: string; outcome: Exclude<OperationOutcome, { status: 'pending' }> }>();
  /** The store could not commit an `executing` status: nothing starts until it can. */
  private launchBlocked = false;
  /** Counters for status and diagnostics. `unacknowledged`: messages not acknowledged because the store could not commit. */
  readonly counters = { received: 0, rejected: 0, dropped: 0, duplicates: 0, executed: 0, unacknowledged: 0 };

  constructor(private readonly opts: RouterOptions) {}

  register<P>(handler: OperationHandler<P>): void {
    if (this.handlers.has(handler.op)) throw new Error(`operation ${handler.op} registered twice`);
    this.handlers.set(handler.op, handler as OperationHandler<unknown>);
  }

  ops(): string[] {
    return [...this.handlers.keys(), 'cancel'].sort();
  }

  /** Resumes what a previous process left unfinished; starts pruning old commands. */
  async start(): Promise<void> {
    this.stopping = false;
    this.opts.gate?.addRetry(() => this.retryUnsaved());
    for (const rec of this.opts.store.unfinished()) {
      this.noteRollout(rec.id, rec.params);
      const handler = this.handlers.get(rec.op);
      if (rec.redacted && !(handler?.resume && handler.resumesWithoutParams && rec.status === 'executing')) {
        this.finish(rec.id, rec.op, { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the command finished, and its secret parameters were kept in memory only; send it again with a new id' } });
      } else if (handler && rec.status === 'accepted') {
        this.waiting.push({ rec, handler, exclusive: this.isExclusive(handler, rec.params) });
      } else if (handler?.resume) {
        this.launch(rec, handler, true);
      } else {
        this.finish(rec.id, rec.op, { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped while the command was running' } });
      }
    }
    this.waiting.sort(queueOrder);
    this.pumpQueue();
    this.prune();
    this.pruneTimer = this.opts.clock.setInterval(() => this.prune(), 3600_000);
    // Housekeeping never keeps the process alive on its own.
    this.pruneTimer.unref();
  }

  /** Waits a bounded time for running operations; one cut short stays resumable at next start. */
  async stop(): Promise<void> {
    this.flushIntake();
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

  /** The operation queue: what runs, then what waits in the order it will start (at most `limit` waiting). */
  queue(limit = 100): QueueEntry[] {
    const iso = (ms: number): string => new Date(ms).toISOString();
    const running: QueueEntry[] = [...this.running.values()].map((r) => ({
      id: r.id, op: r.op, state: 'running', exclusive: r.exclusive, priority: r.priority, origin: r.origin, since: iso(r.startedAt), step: r.lastStep, cancellable: r.cancellable,
    }));
    const waiting: QueueEntry[] = this.waiting.slice(0, limit).map((w, i) => ({
      id: w.rec.id, op: w.rec.op, state: 'waiting', exclusive: w.exclusive, priority: w.rec.priority, origin: w.rec.origin, since: iso(w.rec.receivedAt), cancellable: true, position: i + 1,
    }));
    return [...running, ...waiting];
  }

  /** Told of every status written (after it was committed or queued for the group commit). */
  onStatus(listener: (msg: StatusMessage) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /**
   * A command that does not come from the WMS (the CLI through the admin socket, the console, a
   * schedule, the watchdog's triggers): the same intake as `~/cmd/{op}` (parse, codes, queue,
   * store, `~/res/{id}`, audit), with its origin kept. Returns the id; its statuses follow on
   * onStatus() and in the store.
   */
  submit(op: string, params: unknown, opts: SubmitOptions): string {
    const id = opts.id ?? `${opts.origin.trigger}-${this.opts.clock.now()}-${Math.random().toString(16).slice(2, 10)}`;
    const payload = Buffer.from(JSON.stringify({ id, params: params ?? {}, ...(opts.priority ? { priority: opts.priority } : {}), ...(opts.expiresAt ? { expiresAt: opts.expiresAt } : {}) }));
    this.counters.received++;
    try {
      this.intake(op, payload, () => undefined, opts.origin);
    } catch (err) {
      this.opts.logger.error({ err, op }, 'command handling failed');
    }
    return id;
  }

  private isExclusive(handler: OperationHandler<unknown>, params: unknown): boolean {
    const x = handler.exclusive;
    if (typeof x !== 'function') return !!x;
    try {
      return x(params);
    } catch {
      // Cannot tell: the safe side is to wait for the others.
      return true;
    }
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
    return [...this.running.values()].filter((r) => r.cancellable && !r.stalled && r.lastStep !== 'waiting' && now - r.aliveAt >= ms);
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

  /**
   * One message from `~/cmd/{op}`. Never throws. `ack` is called once: true when what the
   * message led to is committed (or nothing needed storing), false when the store could not
   * commit it.
   */
  handle(op: string, payload: Buffer, ack?: Ack): void {
    this.counters.received++;
    let acked = false;
    const once: Ack = (committed) => {
      if (acked) return;
      acked = true;
      try {
        ack?.(committed);
      } catch (err) {
        this.opts.logger.error({ err, op }, 'acknowledging a command failed');
      }
    };
    try {
      this.intake(op, payload, once);
    } catch (err) {
      this.opts.logger.error({ err, op }, 'command handling failed');
      once(true);
    }
  }

  /** Commits what is staged now (also what the next turn of the event loop does). */
  flushIntake(): void {
    if (this.intakeScheduled) {
      clearImmediate(this.intakeScheduled);
      this.intakeScheduled = undefined;
    }
    const batch = this.staged;
    if (batch.length === 0) return;
    this.staged = [];
    this.stagedById.clear();
    try {
      this.opts.outbox.commit(() => {
        for (const s of batch) if (s.row) this.opts.store.insertRow(s.row);
        for (const s of batch) if (s.row?.status === 'rejected') this.opts.audit?.(s.id, s.op, 'rejected', s.reason, undefined, s.origin);
        return batch.map((s) => ({ topic: this.opts.resultTopic(s.id), payload: s.message, kind: 'status' as const, retain: true }));
      });
    } catch (err) {
      this.storeFailed(err, 'command intake');
      this.counters.unacknowledged += batch.length;
      this.opts.logger.warn({ commands: batch.length, ids: batch.slice(0, 5).map((s) => s.id) }, 'commands not acknowledged: the store cannot commit; the broker sends them again after the next connect');
      for (const s of batch) {
        if (s.row?.status === 'accepted') this.rollouts.delete(s.id);
        s.ack?.(false);
      }
      return;
    }
    const accepted = batch.filter((s) => s.row?.status === 'accepted');
    this.syncing.push(...accepted);
    this.durable((ok) => {
      if (accepted.length > 0) this.syncing = this.syncing.filter((s) => !accepted.includes(s));
      // Committed but not known to be on disk: no PUBACK (the broker sends it again, and the
      // duplicate is answered from the store); the work goes on, as the store says it should.
      if (!ok) this.storeFailed(new Error('fsync of the store failed'), 'command intake');
      for (const s of batch) {
        try {
          s.after();
        } catch (err) {
          this.opts.logger.error({ err, id: s.id, op: s.op }, 'command intake step failed');
        }
        s.ack?.(ok);
      }
    });
  }

  /** Runs `cb` once what was committed so far is durable (at once without a WalSync: commits are). */
  private durable(cb: (ok: boolean) => void): void {
    if (this.opts.sync) this.opts.sync.after(cb);
    else cb(true);
  }

  private stage(s: Staged): void {
    this.staged.push(s);
    if (s.row) this.stagedById.set(s.id, s);
    if (this.staged.length >= INTAKE_BATCH) this.flushIntake();
    else this.intakeScheduled ??= setImmediate(() => this.flushIntake());
  }

  private intake(op: string, payload: Buffer, ack: Ack, from?: Origin): void {
    const { logger, store, clock } = this.opts;
    const verdict = parseCommand(op, payload, this.opts.limits.maxPayloadBytes, clock.now());
    if (verdict.kind === 'drop') {
      this.counters.dropped++;
      logger.warn({ op, reason: verdict.reason, bytes: payload.length }, verdict.message);
      return ack(true);
    }
    const id = verdict.kind === 'command' ? verdict.cmd.id : verdict.id;
    const known = this.stagedById.get(id)?.message ?? store.get(id)?.lastMessage;
    if (known !== undefined) {
      return this.stage({
        id, op, row: undefined, message: known, exclusive: false, ack, origin: from ?? { trigger: 'wms', actor: `wms:${id}` },
        after: () => {
          this.counters.duplicates++;
          logger.info({ id, op, status: (JSON.parse(known) as StatusMessage).status }, 'duplicate command id: publishing its latest status again');
        },
      });
    }
    const origin: Origin = from ?? { trigger: 'wms', actor: `wms:${id}` };
    if (verdict.kind === 'reject') return this.reject(id, op, verdict.code, verdict.message, ack, origin);
    const cmd = verdict.cmd;
    if (cmd.op === 'cancel') {
      const target = (cmd.params as { target?: unknown }).target;
      if (typeof target !== 'string') return this.reject(id, 'cancel', 'invalid-params', 'target: the id of the command to cancel is required', ack, origin);
      return this.accept({ id, op: 'cancel', stored: { target }, full: undefined, exclusive: false, expiresAt: cmd.expiresAt, priority: cmd.priority, origin }, ack, () => this.cancel(id, target));
    }
    const handler = this.handlers.get(cmd.op);
    if (!handler) return this.reject(id, op, 'unknown-op', `unknown operation "${op}"; known: ${this.ops().join(', ')}`, ack, origin);
    const parsed = handler.params.safeParse(cmd.params);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; ');
      return this.reject(id, op, 'invalid-params', problems, ack, origin);
    }
    if (this.stopping) return this.reject(id, op, 'shutting-down', 'the agent is shutting down; send the command again later', ack, origin);
    const full = parsed.data;
    let refusal: Reason | undefined;
    try {
      refusal = handler.admit?.(full, origin) ?? handler.check?.(full);
    } catch (err) {
      refusal = { code: errorCode(err) ?? 'internal', message: errorMessage(err) };
    }
    if (refusal) {
      const rolloutId = rolloutIdOf(full);
      return this.reject(id, op, refusal.code, refusal.message, ack, origin, refusal.details, rolloutId === undefined ? {} : { rolloutId });
    }
    const staged = [...this.syncing, ...this.staged.filter((s) => s.row?.status === 'accepted')];
    const pending = this.running.size + this.waiting.length + staged.length;
    if (pending >= this.opts.limits.maxPending) return this.reject(id, op, 'busy', `${pending} commands are waiting or running`, ack, origin);
    const exclusive = this.isExclusive(handler, full);
    if (exclusive) {
      const maxQueued = this.opts.limits.maxQueued ?? 0;
      const queued = this.waiting.filter((w) => w.exclusive).length + staged.filter((s) => s.exclusive).length;
      const runningOne = [...this.running.values()].find((r) => r.exclusive);
      if (runningOne && queued >= maxQueued) {
        return this.reject(id, op, 'busy', maxQueued === 0 ? `${runningOne.op} ${runningOne.id} is running` : `${runningOne.op} ${runningOne.id} is running and ${queued} exclusive operations wait (the queue holds ${maxQueued})`, ack, origin);
      }
      if (!runningOne && queued > maxQueued) return this.reject(id, op, 'busy', `${queued} exclusive operations wait (the queue holds ${maxQueued})`, ack, origin);
    }
    this.accept({ id, op, stored: handler.redactParams ? handler.redactParams(full) : full, full, exclusive, expiresAt: cmd.expiresAt, priority: cmd.priority, origin }, ack, (rec) => {
      this.counters.executed++;
      this.enqueue({ rec, handler, exclusive });
      this.pumpQueue();
    });
  }

  /** Into the waiting list at its place: highest priority first, then oldest first. */
  private enqueue(w: Waiting): void {
    let i = this.waiting.length;
    while (i > 0 && queueOrder(w, this.waiting[i - 1]!) < 0) i--;
    this.waiting.splice(i, 0, w);
  }

  /**
   * Stages an `accepted` row. `stored` is what is written of the params; `full`, when it differs
   * (secrets redacted), is held in memory for the run.
   */
  private accept(a: { id: string; op: string; stored: unknown; full: unknown; exclusive: boolean; expiresAt: number | undefined; priority: Priority; origin: Origin }, ack: Ack, then: (rec: CommandRecord) => void): void {
    const { id, op, stored, full, exclusive, expiresAt, priority, origin } = a;
    const paramsJson = JSON.stringify(stored ?? {});
    const redacted = full !== undefined && paramsJson !== JSON.stringify(full);
    this.noteRollout(id, full ?? stored);
    const message = this.statusMessage(id, op, 'accepted', {});
    const now = this.opts.clock.now();
    this.stage({
      id, op, message, exclusive, ack, origin,
      row: { id, op, status: 'accepted', paramsJson, redacted, lastMessage: message, now, expiresAt, priority, origin },
      after: () => {
        if (redacted) this.secretParams.set(id, full);
        this.emitStatus(message);
        then({ id, op, status: 'accepted', params: full ?? stored, data: undefined, lastMessage: message, receivedAt: now, updatedAt: now, redacted, priority, origin });
      },
    });
  }

  /**
   * Starts what may start: in queue order, each waiting command unless the concurrency bound is
   * reached (an `immediate` one starts anyway), or it is exclusive and an exclusive one runs (it
   * keeps its place; a non-exclusive one behind it may start).
   */
  private pumpQueue(): void {
    let i = 0;
    while (!this.stopping && !this.launchBlocked && i < this.waiting.length) {
      const next = this.waiting[i]!;
      const full = this.running.size >= this.opts.limits.maxConcurrent;
      if ((full && !next.handler.immediate) || (next.exclusive && [...this.running.values()].some((r) => r.exclusive))) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      if (this.launch(next.rec, next.handler, false, next.exclusive) === 'unsaved') {
        // Its `executing` status is not committed: it has not started. It starts when the store commits again.
        this.waiting.splice(i, 0, next);
        this.launchBlocked = true;
        return;
      }
    }
  }

  /** A rejection: its row (without params: a rejected command never needs them) and status, staged. */
  private reject(id: string, op: string, code: string, message: string, ack: Ack, origin: Origin, details?: unknown, extra: Partial<StatusMessage> = {}): void {
    const reason: Reason = details === undefined ? { code, message } : { code, message, details };
    const msg = this.statusMessage(id, op, 'rejected', { ...extra, reason });
    this.stage({
      id, op, message: msg, exclusive: false, ack, reason, origin,
      row: { id, op, status: 'rejected', paramsJson: null, redacted: false, lastMessage: msg, now: this.opts.clock.now(), expiresAt: undefined, origin },
      after: () => {
        this.counters.rejected++;
        this.emitStatus(msg);
        this.opts.logger.info({ id, op, code }, `command rejected: ${message}`);
      },
    });
  }

  /** A `cancel` whose `accepted` is committed. */
  private cancel(id: string, target: string): void {
    const queued = this.waiting.findIndex((w) => w.rec.id === target);
    if (queued >= 0) {
      const [w] = this.waiting.splice(queued, 1);
      this.finish(target, w!.rec.op, { status: 'cancelled', reason: { code: 'cancelled', message: `cancelled by command ${id} before it started` } });
      return this.finish(id, 'cancel', { status: 'successful', result: { target } });
    }
    const run = this.running.get(target);
    if (!run) {
      const known = this.unsaved.has(target) ? { status: this.unsaved.get(target)!.outcome.status } : this.opts.store.get(target);
      const message = known ? `command ${target} is already ${known.status}` : `no command ${target} is known`;
      return this.finish(id, 'cancel', { status: 'failed', reason: { code: 'unknown-target', message } });
    }
    if (!run.cancellable) {
      return this.finish(id, 'cancel', { status: 'failed', reason: { code: 'not-cancellable', message: `${run.op} ${target} is past its point of no return` } });
    }
    run.abort.abort(new EdgeError('cancelled', `cancelled by command ${id}`));
    this.finish(id, 'cancel', { status: 'successful', result: { target } });
  }

  /** Starts a command: 'unsaved' when its `executing` status could not be committed (then it has not started). */
  private launch(rec: CommandRecord, handler: OperationHandler<unknown>, resume: boolean, exclusive = this.isExclusive(handler, rec.params)): Saved {
    if (!resume) {
      const saved = this.setStatus(rec.id, rec.op, 'executing', {}, true);
      if (saved !== 'ok') {
        if (saved === 'refused') this.secretParams.delete(rec.id);
        return saved;
      }
    }
    const run: Running = {
      id: rec.id,
      op: rec.op,
      exclusive,
      priority: rec.priority,
      origin: rec.origin,
      startedAt: this.opts.clock.now(),
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
    // The work starts once its `executing` status is durable.
    const started = new Promise<void>((resolve) => (resume ? resolve() : this.durable(() => resolve())));
    const p = started
      .then((): Promise<OperationOutcome> | OperationOutcome => {
        if (run.abort.signal.aborted) return { status: 'cancelled', reason: { code: 'cancelled', message: errorMessage(run.abort.signal.reason) } };
        return resume && handler.resume ? handler.resume(ctx) : handler.execute(ctx);
      })
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
    return 'ok';
  }

  private context(rec: CommandRecord, run: Running): OperationContext<unknown> {
    const logger = this.opts.logger.child({ cmd: rec.id, op: rec.op });
    return {
      id: rec.id,
      op: rec.op,
      params: this.secretParams.get(rec.id) ?? rec.params,
      origin: rec.origin,
      priority: rec.priority,
      logger,
      signal: run.abort.signal,
      progress: (step, percent, detail) => {
        // A run that has ended (or was abandoned) reports nothing more: its terminal status is final.
        if (run.done || this.running.get(rec.id) !== run) return;
        const now = this.opts.clock.now();
        run.aliveAt = now;
        if (step === run.lastStep && now - run.lastProgressAt < PROGRESS_MIN_INTERVAL_MS) return;
        run.lastStep = step;
        run.lastProgressAt = now;
        this.setStatus(rec.id, rec.op, 'executing', { progress: { step, ...(percent === undefined ? {} : { percent }), ...detail } }, false);
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
    const saved = this.setStatus(id, op, outcome.status, extra, true);
    if (saved === 'unsaved') {
      // Published once committed (retryUnsaved); after a restart the command is resumed or interrupted instead.
      this.unsaved.set(id, { op, outcome });
      return;
    }
    this.unsaved.delete(id);
    this.secretParams.delete(id);
    this.rollouts.delete(id);
    if (saved === 'refused') return;
    this.opts.logger.info({ id, op, status: outcome.status, code: extra.reason?.code }, 'command finished');
    try {
      this.opts.onFinished?.(id, op, outcome);
    } catch (err) {
      this.opts.logger.error({ err, id, op }, 'onFinished listener failed');
    }
  }

  /** The store gate's retry: commits the terminal statuses held in memory, then lets the queue go on. */
  private retryUnsaved(): boolean {
    for (const [id, u] of [...this.unsaved]) this.finish(id, u.op, u.outcome);
    if (this.unsaved.size > 0) return false;
    this.launchBlocked = false;
    this.pumpQueue();
    return !this.launchBlocked;
  }

  /** Terminal statuses decided but not committed yet. */
  uncommitted(): number {
    return this.unsaved.size;
  }

  /**
   * Writes a status: the command row (refused once it has a terminal status) and its outbox row,
   * one transaction; `durable` commits now, otherwise the outbox row is group-committed.
   */
  private setStatus(id: string, op: string, status: CommandStatus, extra: Partial<StatusMessage>, durable: boolean): Saved {
    const message = this.statusMessage(id, op, status, extra);
    const msg = { topic: this.opts.resultTopic(id), payload: message, kind: 'status' as const, retain: true };
    const now = this.opts.clock.now();
    let refused = false;
    try {
      if (durable) {
        this.opts.outbox.commit(() => {
          refused = !this.opts.store.update(id, status, message, now);
          if (!refused && status !== 'executing' && status !== 'accepted') {
            const rec = this.opts.store.get(id);
            this.opts.audit?.(id, op, status, extra.reason, rec?.params, rec?.origin);
          }
          return refused ? [] : [msg];
        });
      } else {
        // Group-committed with the outbox row: progress may be lost in a power cut (a later status supersedes it).
        this.opts.outbox.enqueue(msg, () => {
          if (this.opts.store.update(id, status, message, now)) return true;
          this.opts.logger.warn({ id, op, status }, 'status refused: the command already has its terminal status');
          return false;
        });
      }
    } catch (err) {
      this.storeFailed(err, `${status} status of ${id}`);
      return 'unsaved';
    }
    if (refused) {
      this.opts.logger.warn({ id, op, status }, 'status refused: the command already has its terminal status');
      return 'refused';
    }
    this.emitStatus(message);
    return 'ok';
  }

  private emitStatus(message: string): void {
    if (this.statusListeners.size === 0) return;
    const msg = JSON.parse(message) as StatusMessage;
    for (const l of this.statusListeners) {
      try {
        l(msg);
      } catch (err) {
        this.opts.logger.error({ err }, 'a status listener failed');
      }
    }
  }

  private storeFailed(err: unknown, what: string): void {
    if (this.opts.gate) this.opts.gate.failed(err, what);
    else this.opts.logger.error({ err, what }, 'the state store cannot commit');
  }

  private statusMessage(id: string, op: string, status: CommandStatus, extra: Partial<StatusMessage>): string {
    const rolloutId = this.rollouts.get(id);
    const m: StatusMessage = { id, op, status, ts: new Date(this.opts.clock.now()).toISOString(), ...(rolloutId === undefined ? {} : { rolloutId }), ...extra };
    return JSON.stringify(m);
  }

  private noteRollout(id: string, params: unknown): void {
    const r = rolloutIdOf(params);
    if (r !== undefined) this.rollouts.set(id, r);
  }

  private prune(): void {
    const before = this.opts.clock.now() - this.opts.limits.retentionDays * 86_400_000;
    try {
      let n = 0;
      let cleared = 0;
      if (this.opts.clearRetained?.() === true) {
        this.opts.outbox.commit(() => {
          const ids = this.opts.store.prunableIds(before);
          n = this.opts.store.prune(before);
          cleared = ids.length;
          return ids.map((id) => ({ topic: this.opts.resultTopic(id), payload: '', kind: 'status' as const, retain: true }));
        });
      } else {
        n = this.opts.store.prune(before);
      }
      if (n > 0) this.opts.logger.info({ pruned: n, clearedRetained: cleared }, 'forgot old finished commands');
    } catch (err) {
      this.opts.logger.warn({ err }, 'pruning old commands failed; tried again in an hour');
    }
  }
}

/** A command's `rolloutId` param, when it has one (echoed in its statuses and events). */
export function rolloutIdOf(params: unknown): string | undefined {
  const r = params !== null && typeof params === 'object' ? (params as { rolloutId?: unknown }).rolloutId : undefined;
  return typeof r === 'string' ? r : undefined;
}

/** `{rolloutId}` to spread into a status or an event of the command, or nothing. */
export function rolloutField(params: unknown): { rolloutId?: string } {
  const r = rolloutIdOf(params);
  return r === undefined ? {} : { rolloutId: r };
}
