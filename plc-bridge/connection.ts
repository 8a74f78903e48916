/**
 * The connection supervisor: one per device. It owns what a Modbus library does badly over months
 * of uptime: a deadline on every request, a fresh socket after `maxTimeouts` consecutive
 * timeouts (a half-open socket never answers: this is how it is found), reconnects with capped
 * exponential backoff and jitter, and a device that keeps failing skipped for `skipMs` so its
 * callers get an answer at once instead of waiting out a deadline each. Devices never share a
 * connection, a queue or a timer, so one bad PLC cannot slow the others.
 *
 * Invariants:
 * - at most one request per device is on the wire; requests run in order, except that a write
 *   goes ahead of queued reads (a WMS write should not wait behind a poll backlog);
 * - a request settles exactly once: answered, failed, or past its deadline; once past its
 *   deadline its late answer is ignored here, and the driver drops it by transaction id;
 * - a write is never retried; a write whose answer is lost rejects 'write-timeout' (its outcome
 *   is unknown, the WMS decides);
 * - every socket has a generation: callbacks of a replaced socket change nothing;
 * - while the link is down or the device is skipped, requests reject at once ('not-connected',
 *   'device-skipped'); nothing waits for a reconnect;
 * - stop() clears every timer, rejects what is queued and closes the socket.
 */
import { Backoff, type BackoffPolicy } from '../lib/backoff.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Area, DeviceConfig } from './config.js';
import type { Driver, DriverFactory } from './driver.js';
import { PlcError, isPlcCode } from './errors.js';
import { modbusDriverFactory } from './modbus-driver.js';
import type { WriteOp } from './write-plan.js';

export type LinkState = 'up' | 'down';

export interface DeviceConnectionOptions {
  device: DeviceConfig;
  logger: Logger;
  clock?: Clock;
  /** Defaults to the Modbus TCP driver. */
  driver?: DriverFactory;
  /** Jitter source for the backoff (tests pin it). */
  random?: () => number;
  backoff?: BackoffPolicy;
}

export interface ConnectionStats {
  link: LinkState;
  /** Requests put on the wire. */
  requests: number;
  timeouts: number;
  /** Connection attempts after the first. */
  reconnects: number;
  lastError?: string;
  /** Epoch ms until which requests are refused 'device-skipped'. */
  skippedUntil?: number;
}

/** PLCs usually come back within seconds; a cap of 10 s keeps a recovered one from waiting long. */
export const PLC_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 10_000, factor: 2, jitter: 1 };

interface Job {
  write: boolean;
  run(d: Driver): Promise<unknown>;
  resolve(v: unknown): void;
  reject(e: PlcError): void;
}

function toPlcError(err: unknown, fallback: 'invalid-response' | 'connection-refused'): PlcError {
  if (err instanceof PlcError) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  return new PlcError(typeof code === 'string' && isPlcCode(code) ? code : fallback, errorMessage(err));
}

export class DeviceConnection {
  private readonly device: DeviceConfig;
  private readonly clock: Clock;
  private readonly factory: DriverFactory;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private running = false;
  private driver: Driver | undefined;
  /** Bumped whenever a socket is given up; callbacks carry the generation they belong to. */
  private gen = 0;
  private state: LinkState = 'down';
  private error: string | undefined;
  private readonly queue: Job[] = [];
  private inFlight: Job | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private consecutiveTimeouts = 0;
  private consecutiveFailures = 0;
  private skippedUntil: number | undefined;
  private attempts = 0;
  private readonly counters = { requests: 0, timeouts: 0, reconnects: 0 };
  private readonly listeners = new Set<(state: LinkState, reason?: string) => void>();

  constructor(opts: DeviceConnectionOptions) {
    this.device = opts.device;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.factory = opts.driver ?? modbusDriverFactory({ logger: opts.logger });
    this.backoff = new Backoff(opts.backoff ?? PLC_BACKOFF, opts.random ?? Math.random);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.gen++;
    this.clearTimers();
    const stopped = new PlcError('not-connected', 'connection stopped');
    this.inFlight?.reject(stopped);
    this.inFlight = undefined;
    for (const j of this.queue.splice(0)) j.reject(stopped);
    const d = this.driver;
    this.driver = undefined;
    this.setLink('down', 'stopped');
    await d?.close().catch(() => undefined);
  }

  get link(): LinkState {
    return this.state;
  }

  get lastError(): string | undefined {
    return this.error;
  }

  onLink(listener: (state: LinkState, reason?: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stats(): ConnectionStats {
    const s: ConnectionStats = { link: this.state, ...this.counters };
    if (this.error !== undefined) s.lastError = this.error;
    if (this.skippedUntil !== undefined && this.skippedUntil > this.clock.now()) s.skippedUntil = this.skippedUntil;
    return s;
  }

  /**
   * One read with the device's deadline. Rejects PlcError 'timeout', 'modbus-exception'
   * (detail.exceptionCode), 'not-connected', 'device-skipped', 'connection-reset',
   * 'invalid-response'.
   */
  read(area: Area, start: number, count: number): Promise<number[] | boolean[]> {
    return this.enqueue<number[] | boolean[]>(false, (d) => (area === 'holding' || area === 'input' ? d.readRegisters(area, start, count) : d.readBits(area, start, count)));
  }

  /** One write, never retried: a lost answer rejects 'write-timeout' (outcome unknown). */
  write(op: WriteOp): Promise<void> {
    return this.enqueue(true, (d) => {
      switch (op.kind) {
        case 'registers':
          return d.writeRegisters(op.start, op.values);
        case 'coils':
          return d.writeCoils(op.start, op.values);
        case 'mask':
          return d.maskWriteRegister(op.address, op.andMask, op.orMask);
      }
    });
  }

  private enqueue<T>(write: boolean, run: (d: Driver) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!this.running) return reject(new PlcError('not-connected', 'connection stopped'));
      if (this.skippedUntil !== undefined) {
        const left = this.skippedUntil - this.clock.now();
        if (left > 0) return reject(new PlcError('device-skipped', `${this.device.name} failed ${this.device.skipAfterFailures} requests in a row: skipped for ${left} ms more`));
        this.skippedUntil = undefined;
      }
      if (this.state !== 'up' || !this.driver) return reject(new PlcError('not-connected', `${this.device.name} is not connected${this.error ? `: ${this.error}` : ''}`));
      const job: Job = { write, run, resolve: (v) => resolve(v as T), reject };
      const at = write ? this.queue.findIndex((j) => !j.write) : -1;
      if (at === -1) this.queue.push(job);
      else this.queue.splice(at, 0, job);
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || !this.driver || this.state !== 'up') return;
    const job = this.queue.shift();
    if (!job) return;
    const driver = this.driver;
    const gen = this.gen;
    this.inFlight = job;
    this.counters.requests++;
    this.deadline = this.clock.setTimeout(() => this.timedOut(job), this.device.timeoutMs);
    let p: Promise<unknown>;
    try {
      p = job.run(driver);
    } catch (err) {
      p = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    p.then(
      (v) => this.answered(job, v),
      (err: unknown) => this.failed(gen, job, toPlcError(err, 'invalid-response')),
    );
  }

  private settle(job: Job): boolean {
    if (job !== this.inFlight) return false;
    this.clock.clearTimeout(this.deadline);
    this.deadline = undefined;
    this.inFlight = undefined;
    return true;
  }

  /** The device answered (a value or a Modbus exception): it is alive. */
  private alive(): void {
    this.consecutiveTimeouts = 0;
    this.consecutiveFailures = 0;
    this.backoff.reset();
  }

  private answered(job: Job, v: unknown): void {
    if (!this.settle(job)) return;
    this.alive();
    job.resolve(v);
    this.pump();
  }

  private failed(gen: number, job: Job, err: PlcError): void {
    if (!this.settle(job)) return;
    this.error = err.message;
    if (err.code === 'modbus-exception') {
      this.alive();
      job.reject(err);
      this.pump();
    } else if (err.code === 'timeout') {
      this.afterTimeout(job);
    } else if (err.code === 'connection-reset') {
      job.reject(job.write ? new PlcError('write-timeout', `connection lost before the write was answered: outcome unknown (${err.message})`) : err);
      this.recordFailure();
      if (gen === this.gen) this.teardown(err);
    } else if (err.code === 'not-connected') {
      // The driver had no socket: nothing was sent, so even a write may be tried again.
      job.reject(err);
      if (gen === this.gen) this.teardown(err);
    } else {
      job.reject(err);
      this.recordFailure();
      this.pump();
    }
  }

  private timedOut(job: Job): void {
    if (!this.settle(job)) return;
    this.afterTimeout(job);
  }

  private afterTimeout(job: Job): void {
    const ms = this.device.timeoutMs;
    this.counters.timeouts++;
    this.consecutiveTimeouts++;
    this.error = `no answer within ${ms} ms`;
    job.reject(job.write ? new PlcError('write-timeout', `write not answered within ${ms} ms: outcome unknown`) : new PlcError('timeout', this.error));
    this.recordFailure();
    if (this.consecutiveTimeouts >= this.device.maxTimeouts) {
      this.log.warn({ timeouts: this.consecutiveTimeouts }, 'consecutive timeouts: replacing the socket');
      this.teardown(new PlcError('timeout', `${this.consecutiveTimeouts} consecutive timeouts`));
    } else {
      this.pump();
    }
  }

  /** Consecutive failed requests; at the limit the device is skipped for skipMs. */
  private recordFailure(): void {
    this.consecutiveFailures++;
    const { skipAfterFailures, skipMs } = this.device;
    if (this.consecutiveFailures < skipAfterFailures || skipMs <= 0) return;
    this.skippedUntil = this.clock.now() + skipMs;
    // After the window one failed probe is enough to skip again; one answer clears it.
    this.consecutiveFailures = skipAfterFailures - 1;
    this.log.warn({ failures: skipAfterFailures, skipMs }, 'device skipped');
    const skipped = new PlcError('device-skipped', `${this.device.name} skipped for ${skipMs} ms after ${skipAfterFailures} failed requests`);
    for (const j of this.queue.splice(0)) j.reject(skipped);
  }

  private connect(): void {
    if (!this.running) return;
    const gen = ++this.gen;
    if (this.attempts++ > 0) this.counters.reconnects++;
    let driver: Driver;
    try {
      driver = this.factory(this.device);
    } catch (err) {
      this.connectFailed(gen, undefined, toPlcError(err, 'connection-refused'));
      return;
    }
    this.driver = driver;
    const ms = this.device.connectTimeoutMs;
    this.connectTimer = this.clock.setTimeout(() => this.connectFailed(gen, driver, new PlcError('timeout', `connect not done within ${ms} ms`)), ms);
    driver.onClose((reason) => this.socketLost(gen, reason));
    driver.connect().then(
      () => this.connected(gen, driver),
      (err: unknown) => this.connectFailed(gen, driver, toPlcError(err, 'connection-refused')),
    );
  }

  private connected(gen: number, driver: Driver): void {
    if (gen !== this.gen || !this.running) {
      void driver.close().catch(() => undefined);
      return;
    }
    this.clock.clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.consecutiveTimeouts = 0;
    this.setLink('up');
    this.pump();
  }

  private connectFailed(gen: number, driver: Driver | undefined, err: PlcError): void {
    if (gen !== this.gen) return;
    if (driver) this.driver = driver;
    this.teardown(err);
  }

  private socketLost(gen: number, reason: PlcError): void {
    if (gen !== this.gen) return;
    if (this.inFlight) {
      const job = this.inFlight;
      this.settle(job);
      job.reject(job.write ? new PlcError('write-timeout', `connection lost before the write was answered: outcome unknown (${reason.message})`) : reason);
      this.recordFailure();
    }
    this.teardown(reason);
  }

  /** Gives up the current socket (if any), fails what waits, and schedules the next attempt. */
  private teardown(reason: PlcError): void {
    this.gen++;
    this.clearTimers();
    const d = this.driver;
    this.driver = undefined;
    void d?.close().catch(() => undefined);
    this.error = reason.message;
    const job = this.inFlight;
    this.inFlight = undefined;
    const down = new PlcError('not-connected', `${this.device.name} lost its connection: ${reason.message}`);
    job?.reject(down);
    for (const j of this.queue.splice(0)) j.reject(down);
    this.setLink('down', reason.code);
    if (!this.running) return;
    const delay = this.backoff.next();
    this.log.debug({ code: reason.code, err: reason, delayMs: delay }, 'reconnecting');
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  private clearTimers(): void {
    this.clock.clearTimeout(this.deadline);
    this.clock.clearTimeout(this.connectTimer);
    this.clock.clearTimeout(this.reconnectTimer);
    this.deadline = this.connectTimer = this.reconnectTimer = undefined;
  }

  private setLink(state: LinkState, reason?: string): void {
    if (state === this.state) return;
    this.state = state;
    if (state === 'up') this.log.info('link up');
    else this.log.warn({ reason, error: this.error }, 'link down');
    for (const l of this.listeners) {
      try {
        l(state, reason);
      } catch (err) {
        this.log.error({ err }, 'link listener failed');
      }
    }
  }
}
