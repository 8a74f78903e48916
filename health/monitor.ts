/**
 * The health monitor: samples every `sampleIntervalMs`, keeps the history, evaluates the alert
 * rules, sends `alert` / `alert-cleared` events and publishes the `~/health` snapshot every
 * `publishIntervalMs`, and early when an alert changes or a value moves into another bucket
 * (a 10-point band of a percentage, a link going up or down).
 *
 * INVARIANTS
 * - One sample at a time: the next is scheduled when the previous has finished, so a slow
 *   statfs can delay sampling but never pile samples up.
 * - Every transition the alert engine returns becomes exactly one event, and the stored set of
 *   active alerts is updated in the same turn, before the next sample.
 * - stop() clears the timer, waits for a sample in progress, ends the sampler's histogram and
 *   writes the buffered history; nothing of the monitor runs after it resolves.
 * - Liveness for the watchdog: hung when no sample finished (well or not) within 3 sample
 *   intervals plus HUNG_MARGIN_MS; dead when the chain of samples broke (neither a timer nor a
 *   sample pending while started). restart() waits for a stuck sample only a bounded time; a
 *   sample of an earlier start that finishes late schedules nothing (`gen`).
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { AgentEvent, Component } from '../core/ports.js';
import type { ActiveAlert, AlertEngine, AlertTransition } from './alerts.js';
import type { HealthHistory } from './history.js';
import type { Metrics, Sample } from './sampler.js';

export interface AlertView {
  code: string;
  kind: ActiveAlert['kind'];
  severity: ActiveAlert['severity'];
  metric: string;
  value: number;
  threshold: number;
  since: string;
  predictedAt?: string;
}

/** The `~/health` payload (docs/asyncapi.yaml HealthSnapshot). */
export interface HealthSnapshot {
  ts: string;
  uptimeSec: number;
  metrics: Metrics;
  alerts: AlertView[];
  components?: Record<string, string>;
}

export interface HealthMonitorOptions {
  sampler: { start(): void; stop(): void; sample(): Promise<Sample> };
  history: HealthHistory;
  engine: AlertEngine;
  clock: Clock;
  logger: Logger;
  sampleIntervalMs: number;
  publishIntervalMs: number;
  /** How often buffered history is written; default six samples, at most a minute. */
  flushIntervalMs?: number;
  event(ev: AgentEvent): void;
  publish(snapshot: HealthSnapshot): void;
  /** Component states for the snapshot, e.g. {"wms-link": "running"}. */
  components?(): Record<string, string>;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Slack on top of 3 sample intervals: a sample waits up to 2 s for the PLC bridge, statfs can be slow. */
export const HUNG_MARGIN_MS = 10_000;

export function alertView(a: ActiveAlert): AlertView {
  const v: AlertView = { code: a.code, kind: a.kind, severity: a.severity, metric: a.metric, value: a.value, threshold: a.threshold, since: iso(a.since) };
  if (a.predictedAt !== undefined) v.predictedAt = iso(a.predictedAt);
  return v;
}

/** The band a value falls in, for early publishing; undefined for metrics that move too freely to matter. */
export function bucketOf(metric: string, v: number): number | undefined {
  if (/\.(up|connected|synced|mqttConnected)$/.test(metric)) return v;
  if (/^(mem|swap|disk)\..*Pct$/.test(metric) || metric === 'temp.maxC') return Math.floor(v / 10);
  return undefined;
}

/** Whether any bucketed metric is in another bucket (or appeared, or went away). Pure. */
export function bucketsChanged(prev: Readonly<Metrics> | undefined, cur: Readonly<Metrics>): boolean {
  if (!prev) return true;
  const names = new Set([...Object.keys(prev), ...Object.keys(cur)]);
  for (const n of names) {
    const a = prev[n] === undefined ? undefined : bucketOf(n, prev[n]);
    const b = cur[n] === undefined ? undefined : bucketOf(n, cur[n]);
    if (a !== b) return true;
  }
  return false;
}

export function transitionEvent(t: AlertTransition): AgentEvent {
  const a = t.alert;
  const base = { code: a.code, message: t.message, metric: a.metric, kind: a.kind, threshold: a.threshold, ...(t.value !== undefined ? { value: t.value } : {}) };
  if (t.type === 'raised') {
    return { type: 'alert', severity: a.severity, ...base, ...(a.predictedAt !== undefined ? { predictedAt: iso(a.predictedAt) } : {}) };
  }
  return { type: 'alert-cleared', severity: 'info', ...base, raisedAt: iso(a.since) };
}

export class HealthMonitor implements Component {
  readonly name = 'health';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  /** Which start() the scheduled samples belong to. */
  private gen = 0;
  private lastDoneAt = 0;
  /** stop() was called: a restart in progress must not start the monitor again. */
  private closed = false;
  private lastFlush = 0;
  private lastPublishAt = 0;
  private lastPublished: Metrics | undefined;
  private snapshot: HealthSnapshot | undefined;
  private readonly flushMs: number;

  constructor(private readonly opts: HealthMonitorOptions) {
    this.flushMs = opts.flushIntervalMs ?? Math.min(60_000, 6 * opts.sampleIntervalMs);
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.closed = false;
    this.gen++;
    this.opts.sampler.start();
    this.lastFlush = this.opts.clock.now();
    this.lastDoneAt = this.opts.clock.now();
    // The first sample at once: it primes the CPU counters, and `status` has numbers right away.
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.closed = true;
    await this.halt(undefined);
  }

  /** The watchdog's restart; a sample that is stuck is waited for at most one sample interval. */
  async restart(): Promise<void> {
    await this.halt(this.opts.sampleIntervalMs);
    if (!this.closed) await this.start();
  }

  hungAfterMs(): number {
    return 3 * this.opts.sampleIntervalMs + HUNG_MARGIN_MS;
  }

  liveness(): 'healthy' | 'hung' | 'dead' {
    if (this.stopped) return 'healthy';
    if (this.timer === undefined && this.running === undefined) return 'dead';
    return this.opts.clock.now() - this.lastDoneAt > this.hungAfterMs() ? 'hung' : 'healthy';
  }

  private async halt(waitMs: number | undefined): Promise<void> {
    this.stopped = true;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (waitMs === undefined) {
      await this.running;
    } else if (this.running) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.running, new Promise<void>((r) => (t = this.opts.clock.setTimeout(r, waitMs)))]);
      this.opts.clock.clearTimeout(t);
    }
    this.opts.sampler.stop();
    try {
      this.opts.history.flush(this.opts.clock.now());
    } catch (err) {
      this.opts.logger.warn({ err }, 'cannot write the last health samples');
    }
  }

  activeAlerts(): AlertView[] {
    return this.opts.engine.active().map(alertView);
  }

  lastSnapshot(): HealthSnapshot | undefined {
    return this.snapshot;
  }

  /** A sample taken now (the maintenance runner's checks want current values, not the last period's). */
  async sampleNow(): Promise<Metrics> {
    return (await this.opts.sampler.sample()).metrics;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    const gen = this.gen;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      const run: Promise<void> = this.tick().finally(() => {
        if (this.running === run) this.running = undefined;
        if (gen !== this.gen) return;
        this.lastDoneAt = this.opts.clock.now();
        this.schedule(this.opts.sampleIntervalMs);
      });
      this.running = run;
    }, ms);
  }

  /** One sample: history, alerts, events, and the snapshot when it is due. */
  async tick(): Promise<void> {
    const { opts } = this;
    let s: Sample;
    try {
      s = await opts.sampler.sample();
    } catch (err) {
      opts.logger.warn({ err }, 'health sample failed');
      return;
    }
    try {
      opts.history.record(s.ts, s.metrics);
      const transitions = opts.engine.evaluate(s.ts, s.metrics);
      for (const t of transitions) {
        opts.logger[t.type === 'raised' ? 'warn' : 'info']({ code: t.alert.code, metric: t.alert.metric, value: t.value, threshold: t.alert.threshold }, t.message);
        opts.event(transitionEvent(t));
      }
      if (transitions.length > 0) opts.history.saveAlerts(opts.engine.active());
      const now = opts.clock.now();
      if (now - this.lastFlush >= this.flushMs) {
        this.lastFlush = now;
        opts.history.flush(now);
      }
      this.snapshot = {
        ts: iso(s.ts),
        uptimeSec: s.info.uptimeSec ?? 0,
        metrics: s.metrics,
        alerts: this.activeAlerts(),
        ...(opts.components ? { components: opts.components() } : {}),
      };
      const due = now - this.lastPublishAt >= opts.publishIntervalMs;
      if (due || transitions.length > 0 || bucketsChanged(this.lastPublished, s.metrics)) {
        this.lastPublishAt = now;
        this.lastPublished = s.metrics;
        opts.publish(this.snapshot);
      }
    } catch (err) {
      opts.logger.error({ err }, 'health evaluation failed');
    }
  }
}
