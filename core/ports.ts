/**
 * The seams between the agent's core and the capabilities plugged into it (ota/, health/,
 * recovery/). Capabilities implement these interfaces; agent/main.ts wires them. Nothing here
 * knows about MQTT topics: the WMS link maps these calls onto the contract's topics.
 */
import type { z } from 'zod';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';

/** Every long-lived component has start() and stop(); stop() releases everything start() made. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export type AgentState = 'online' | 'updating' | 'maintenance' | 'offline';

export type Severity = 'info' | 'warning' | 'critical';

/** A message for `~/events`: alerts raised and cleared, incidents, recoveries, maintenance, update outcomes. */
export interface AgentEvent {
  type: string;
  severity: Severity;
  code: string;
  message: string;
  [extra: string]: unknown;
}

/** What capabilities may send to the WMS. Durable where the contract says QoS 1. */
export interface WmsPublisher {
  /** Queued in the durable outbox, delivered at least once, in order. */
  event(ev: AgentEvent): void;
  /** QoS 0 snapshot on `~/health`; dropped while disconnected. */
  health(snapshot: Record<string, unknown>): void;
  /** Sets the retained `~/status` state (`online`, `updating`, `maintenance`). */
  setState(state: Exclude<AgentState, 'offline'>): void;
}

export type CommandStatus = 'accepted' | 'executing' | 'successful' | 'failed' | 'cancelled' | 'rejected';
export const TERMINAL_STATUSES: readonly CommandStatus[] = ['successful', 'failed', 'cancelled', 'rejected'];

export interface Reason {
  code: string;
  message: string;
  /** Particulars a client can act on, e.g. `invalid-config`'s list of `{path, message}`. */
  details?: unknown;
}

export interface Progress {
  step: string;
  percent?: number;
}

export type OperationOutcome =
  | { status: 'successful'; result?: unknown }
  | { status: 'failed'; reason: Reason; result?: unknown }
  | { status: 'cancelled'; reason?: Reason; result?: unknown }
  /**
   * The operation goes on in another process (the update restarts into the new slot); the
   * terminal status will come from `resume` in that process. The router records nothing final.
   */
  | { status: 'pending' };

/**
 * Who started a command. `wms` for `~/cmd/{op}`; the others come through Router.submit: `local`
 * (the admin socket: the CLI), `console` (the web console), `schedule`, `incident`, `alert`.
 */
export interface Origin {
  trigger: 'wms' | 'local' | 'console' | 'schedule' | 'incident' | 'alert';
  /** `wms:{id}` for the WMS; otherwise who: `local`, `console:{session}`, `schedule:{procedure}`, ... */
  actor: string;
}

/** Exclusive operations wait highest priority first, then oldest first (CONTRACT.md section 2). */
export const PRIORITIES = ['low', 'normal', 'high'] as const;
export type Priority = (typeof PRIORITIES)[number];

export interface OperationContext<P> {
  readonly id: string;
  readonly op: string;
  readonly params: P;
  readonly origin: Origin;
  readonly priority: Priority;
  readonly logger: Logger;
  /** Aborted when a `cancel` for this command arrives while it is cancellable. */
  readonly signal: AbortSignal;
  /**
   * Publishes an `executing` status with progress (rate-limited by the router). `detail` adds
   * fields to `progress` (e.g. `startsAt` of an update that waits for its moment).
   */
  progress(step: string, percent?: number, detail?: Record<string, string | number>): void;
  /** Whether `cancel` may still stop the operation; false once past its point of no return. */
  setCancellable(cancellable: boolean): void;
  /** Operation-private data, persisted durably with the command (for resume after a restart). */
  saveData(data: unknown): void;
  loadData(): unknown;
}

export interface OperationHandler<P = unknown> {
  readonly op: string;
  readonly params: z.ZodType<P>;
  /**
   * At most one exclusive operation runs at a time; the others wait in one queue by priority, and
   * a full queue answers `busy`. A function decides per command (a read-only procedure is not).
   */
  readonly exclusive?: boolean | ((params: P) => boolean);
  /**
   * Checked at intake after the params' schema: a reason rejects the command (`rejected`, never
   * executed) with its code; undefined admits it. Must be quick and must not throw.
   */
  admit?(params: P, origin: Origin): Reason | undefined;
  /**
   * Starts at once, beside everything and outside the `maxConcurrent` bound: the controls of
   * other operations (pause, resume, confirm) must not wait behind what they control.
   */
  readonly immediate?: boolean;
  /**
   * What of the params may be stored: secrets (credentials, a pre-signed URL's query) replaced.
   * The router stores this, holds the full params in memory for the run only, and fails the
   * command `interrupted` when a restart lost them. Without it the params are stored as they are.
   */
  redactParams?(params: P): unknown;
  /**
   * `resume` needs none of the params (what it needs it persisted with saveData before the
   * restart): a command whose stored params are redacted is resumed, not failed `interrupted`.
   */
  readonly resumesWithoutParams?: boolean;
  /**
   * Checked at intake, after `params` parsed: a Reason rejects the command (never executed) with
   * that code, e.g. `conflict` or `invalid-config`. Synchronous and cheap; never throws.
   */
  check?(params: P): Reason | undefined;
  execute(ctx: OperationContext<P>): Promise<OperationOutcome>;
  /**
   * Called at start for a command of this op that a previous process left non-terminal.
   * Without it the command is failed with code `interrupted`.
   */
  resume?(ctx: OperationContext<P>): Promise<OperationOutcome>;
}

/** A component's own view of its health, for status, diagnostics and the watchdog. */
export interface ComponentHealth {
  name: string;
  state: 'starting' | 'running' | 'degraded' | 'failed' | 'stopped';
  detail?: string;
  [extra: string]: unknown;
}

/** A command as the history shows it (agent/command-store.ts owns the table). */
export interface CommandSummary {
  id: string;
  op: string;
  status: CommandStatus;
  receivedAt: number;
  updatedAt: number;
  /** The latest status message, as published (JSON). */
  lastMessage: string;
}

/**
 * What capabilities read of the tables the daemon's own parts own (the outbox, the commands);
 * agent/store-reader.ts implements it with their code, so the queries stay next to the tables.
 */
export interface AgentStoreReader {
  outboxStats(db: Db): { depth: number; bytes: number; oldestCreatedAt: number | undefined };
  recentCommands(db: Db, limit: number): CommandSummary[];
}
