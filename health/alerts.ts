/**
 * Alert rules over health metrics. PURE: no I/O, no timers; time comes with each evaluation, so
 * unit tests drive it with made-up clocks.
 *
 * INVARIANTS
 * - Per (rule, metric) at most one alert of each kind is active. A transition is returned exactly
 *   once: `raised` when it becomes active, `cleared` when it stops; nothing in between, however
 *   often the value crosses the thresholds (de-duplication).
 * - Threshold alerts have hysteresis: raised once the value has stayed beyond `raise` for
 *   `forMs` (every sample in that time, without a gap), cleared only once it is back beyond
 *   `clearAt`. A value between the two changes nothing while active, and resets a pending raise.
 * - Degradation alerts: a least-squares line over the last `windowMs` of samples predicts the
 *   hard threshold is reached within `horizonMs`, with a fit good enough (R^2) to be a trend and
 *   not noise. Cleared when the trend stops (the prediction goes beyond twice the horizon, the
 *   line turns, or the fit becomes noise), or once the threshold alert itself is raised.
 * - An active alert whose metric is no longer reported (a device removed, a sensor gone) is
 *   cleared after `staleMs` without a value.
 */
import type { Severity } from '../core/ports.js';
import { fitLine, timeToCross } from './trend.js';

export interface AlertRule {
  /** e.g. `memory`; its kebab-case form starts the alert codes (`memory-high`). */
  name: string;
  /** A metric name; `*` stands for one dotted segment (`disk.*.usedPct`). */
  metric: string;
  raiseAbove?: number;
  raiseBelow?: number;
  clearAt: number;
  forMs: number;
  /** Also watch the trend towards the raise threshold (degradation alerts). */
  trend?: boolean;
  severity?: Severity;
}

export interface DegradationSettings {
  windowMs: number;
  horizonMs: number;
  /** Samples needed in the window before a trend counts (default 10). */
  minPoints?: number;
  /** Least R^2 of the fit (default 0.6). */
  minR2?: number;
}

export type AlertKind = 'threshold' | 'degradation';

export interface ActiveAlert {
  key: string;
  kind: AlertKind;
  rule: string;
  code: string;
  metric: string;
  severity: Severity;
  /** The value when raised (and updated while active). */
  value: number;
  threshold: number;
  /** ms since the epoch when raised */
  since: number;
  /** Degradation: when the trend reaches the threshold (ms since the epoch). */
  predictedAt?: number;
}

export interface AlertTransition {
  type: 'raised' | 'cleared';
  alert: ActiveAlert;
  /** The value that caused the transition (undefined: cleared because the metric is gone). */
  value: number | undefined;
  at: number;
  message: string;
}

interface Tracked {
  rule: AlertRule;
  metric: string;
  pendingSince: number | undefined;
  lastSeen: number;
  points: [number, number][];
}

const kebab = (s: string): string => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

function pattern(metric: string): RegExp {
  const esc = metric.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${esc.join('[^.]+')}$`);
}

export function ruleDirection(rule: AlertRule): { dir: 1 | -1; raise: number } {
  if (rule.raiseAbove !== undefined) return { dir: 1, raise: rule.raiseAbove };
  if (rule.raiseBelow !== undefined) return { dir: -1, raise: rule.raiseBelow };
  throw new Error(`alert rule ${rule.name}: raiseAbove or raiseBelow is required`);
}

export function thresholdCode(rule: AlertRule): string {
  return `${kebab(rule.name)}-${ruleDirection(rule).dir === 1 ? 'high' : 'low'}`;
}

export function degradationCode(rule: AlertRule): string {
  return `${kebab(rule.name)}-degrading`;
}

const fmt = (v: number): string => String(Math.round(v * 10) / 10);

export class AlertEngine {
  private readonly rules: { rule: AlertRule; re: RegExp }[];
  private readonly byName = new Map<string, AlertRule>();
  /** When the first sample came: restored alerts go stale counting from then, not from their raise. */
  private firstAt: number | undefined;
  private readonly matches = new Map<string, AlertRule[]>();
  private readonly tracked = new Map<string, Tracked>();
  private readonly activeByKey = new Map<string, ActiveAlert>();
  private readonly staleMs: number;

  constructor(
    rules: readonly AlertRule[],
    private readonly degradation: DegradationSettings,
    opts: { staleMs?: number; restore?: readonly ActiveAlert[] } = {},
  ) {
    for (const r of rules) ruleDirection(r);
    this.rules = rules.map((rule) => ({ rule, re: pattern(rule.metric) }));
    for (const r of rules) this.byName.set(r.name, r);
    this.staleMs = opts.staleMs ?? 10 * 60_000;
    for (const a of opts.restore ?? []) if (rules.some((r) => r.name === a.rule)) this.activeByKey.set(a.key, { ...a });
  }

  active(): ActiveAlert[] {
    return [...this.activeByKey.values()].sort((a, b) => a.since - b.since);
  }

  /**
   * Feeds an old sample (from the store, after a restart) into the trend windows only: it raises
   * nothing, it only lets a degradation be judged without waiting a whole window again.
   */
  seed(at: number, metrics: Readonly<Record<string, number>>): void {
    for (const [metric, value] of Object.entries(metrics)) {
      if (!Number.isFinite(value)) continue;
      for (const rule of this.rulesFor(metric)) if (rule.trend) this.track(rule, metric, at).points.push([at, value]);
    }
  }

  /** Feeds one sample; returns the alerts raised and cleared by it. */
  evaluate(at: number, metrics: Readonly<Record<string, number>>): AlertTransition[] {
    const out: AlertTransition[] = [];
    this.firstAt ??= at;
    for (const [metric, value] of Object.entries(metrics)) {
      if (!Number.isFinite(value)) continue;
      for (const rule of this.rulesFor(metric)) {
        const t = this.track(rule, metric, at);
        t.lastSeen = at;
        this.threshold(t, value, at, out);
        if (rule.trend) this.trend(t, value, at, out);
      }
    }
    // Pending raises need every sample; a missing one resets them. Long-missing metrics clear.
    for (const t of this.tracked.values()) {
      if (t.lastSeen === at) continue;
      t.pendingSince = undefined;
      if (at - Math.max(t.lastSeen, this.firstAt) < this.staleMs) continue;
      for (const kind of ['threshold', 'degradation'] as const) {
        const a = this.activeByKey.get(this.key(kind, t.rule, t.metric));
        if (a) this.clear(a, undefined, at, `${t.metric} is no longer reported`, out);
      }
      this.tracked.delete(this.key('threshold', t.rule, t.metric));
    }
    // Restored alerts for metrics this process never saw (after a restart) also go stale.
    for (const a of [...this.activeByKey.values()]) {
      const rule = this.byName.get(a.rule);
      if (rule && !this.tracked.has(this.key('threshold', rule, a.metric)) && at - Math.max(a.since, this.firstAt) >= this.staleMs) {
        this.clear(a, undefined, at, `${a.metric} is no longer reported`, out);
      }
    }
    return out;
  }

  private rulesFor(metric: string): AlertRule[] {
    let rs = this.matches.get(metric);
    if (!rs) {
      rs = this.rules.filter((r) => r.re.test(metric)).map((r) => r.rule);
      this.matches.set(metric, rs);
    }
    return rs;
  }

  private key(kind: AlertKind, rule: AlertRule, metric: string): string {
    return `${kind}:${rule.name}:${metric}`;
  }

  private track(rule: AlertRule, metric: string, at: number): Tracked {
    const k = this.key('threshold', rule, metric);
    let t = this.tracked.get(k);
    if (!t) {
      t = { rule, metric, pendingSince: undefined, lastSeen: at, points: [] };
      this.tracked.set(k, t);
    }
    return t;
  }

  private threshold(t: Tracked, value: number, at: number, out: AlertTransition[]): void {
    const { rule, metric } = t;
    const { dir, raise } = ruleDirection(rule);
    const key = this.key('threshold', rule, metric);
    const active = this.activeByKey.get(key);
    if (active) {
      active.value = value;
      if (dir * (value - rule.clearAt) < 0) {
        this.clear(active, value, at, `${rule.name}: ${metric} back ${dir === 1 ? 'below' : 'above'} ${fmt(rule.clearAt)} (${fmt(value)})`, out);
      }
      return;
    }
    if (dir * (value - raise) <= 0) {
      t.pendingSince = undefined;
      return;
    }
    t.pendingSince ??= at;
    if (at - t.pendingSince < rule.forMs) return;
    t.pendingSince = undefined;
    const alert: ActiveAlert = { key, kind: 'threshold', rule: rule.name, code: thresholdCode(rule), metric, severity: rule.severity ?? 'warning', value, threshold: raise, since: at };
    this.activeByKey.set(key, alert);
    const dur = rule.forMs > 0 ? ` for ${Math.round(rule.forMs / 1000)} s` : '';
    out.push({ type: 'raised', alert, value, at, message: `${rule.name}: ${metric} ${dir === 1 ? 'above' : 'below'} ${fmt(raise)}${dur} (${fmt(value)})` });
    // The threshold is crossed: a prediction that it will be is moot.
    const deg = this.activeByKey.get(this.key('degradation', rule, metric));
    if (deg) this.clear(deg, value, at, `${rule.name}: ${metric} reached the threshold; superseded by ${alert.code}`, out);
  }

  private trend(t: Tracked, value: number, at: number, out: AlertTransition[]): void {
    const { rule, metric } = t;
    const d = this.degradation;
    t.points.push([at, value]);
    while (t.points.length > 0 && t.points[0]![0] < at - d.windowMs) t.points.shift();
    const key = this.key('degradation', rule, metric);
    const active = this.activeByKey.get(key);
    if (this.activeByKey.has(this.key('threshold', rule, metric))) return;
    const minPoints = d.minPoints ?? 10;
    const minR2 = d.minR2 ?? 0.6;
    const fit = t.points.length >= minPoints ? fitLine(t.points) : undefined;
    // Half a window of history at least: ten samples in a minute say nothing about an hour.
    const usable = fit !== undefined && fit.spanMs >= d.windowMs / 2;
    const { dir, raise } = ruleDirection(rule);
    const eta = usable ? timeToCross(fit, raise, dir, at) : undefined;
    if (active) {
      if (!usable) return;
      active.value = value;
      if (eta === undefined || eta > 2 * d.horizonMs || fit.r2 < minR2 / 2) {
        this.clear(active, value, at, `${rule.name}: ${metric} no longer trending towards ${fmt(raise)}`, out);
      } else {
        active.predictedAt = Math.round(at + eta);
      }
      return;
    }
    if (!usable || eta === undefined || eta > d.horizonMs || fit.r2 < minR2) return;
    const alert: ActiveAlert = {
      key,
      kind: 'degradation',
      rule: rule.name,
      code: degradationCode(rule),
      metric,
      severity: 'warning',
      value,
      threshold: raise,
      since: at,
      predictedAt: Math.round(at + eta),
    };
    this.activeByKey.set(key, alert);
    const hours = Math.round((eta / 3_600_000) * 10) / 10;
    out.push({ type: 'raised', alert, value, at, message: `${rule.name}: ${metric} (${fmt(value)}) trending towards ${fmt(raise)}, reached in about ${hours} h at this rate` });
  }

  private clear(a: ActiveAlert, value: number | undefined, at: number, message: string, out: AlertTransition[]): void {
    this.activeByKey.delete(a.key);
    out.push({ type: 'cleared', alert: a, value, at, message });
  }
}
