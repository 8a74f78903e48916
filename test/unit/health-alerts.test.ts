/**
 * health/alerts.ts: thresholds with duration and hysteresis raise exactly one alert and clear it
 * exactly once however often the value crosses; degradation is found on a steady synthetic
 * growth and not on noise or a flat line. Time is made up: samples every 10 s from T0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertEngine, thresholdCode, type AlertRule, type AlertTransition } from '../../health/alerts.js';
import { fitLine, timeToCross } from '../../health/trend.js';
import { prng } from '../helpers/util.js';

const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);
const STEP = 10_000;
const HOUR = 3_600_000;
const memory: AlertRule = { name: 'memory', metric: 'mem.usedPct', raiseAbove: 90, clearAt: 85, forMs: 60_000, trend: true };
const DEG = { windowMs: HOUR, horizonMs: 6 * HOUR };

/** Feeds values of one metric, one per STEP from `start`; returns every transition. */
function feed(engine: AlertEngine, metric: string, values: readonly number[], start = T0): AlertTransition[] {
  return values.flatMap((v, i) => engine.evaluate(start + i * STEP, { [metric]: v }));
}

const kinds = (ts: AlertTransition[]): string[] => ts.map((t) => `${t.type} ${t.alert.code}`);

test('crossing up and down around the threshold many times: exactly one alert and one clear', () => {
  const e = new AlertEngine([memory], DEG);
  const values = [
    // Flapping around 90, never above it for a whole minute: nothing.
    ...Array.from({ length: 60 }, (_, i) => (i % 3 === 2 ? 89 : 91)),
    // Above for 70 s: raised once.
    ...Array.from({ length: 8 }, () => 93),
    // Crossing 90 again and again, never below 85: still that one alert.
    ...Array.from({ length: 60 }, (_, i) => (i % 2 ? 86 : 97)),
    // Below 85: cleared once.
    84,
    // Flapping between the two thresholds, and above 90 for less than a minute: nothing.
    ...Array.from({ length: 60 }, (_, i) => (i % 4 === 0 ? 92 : i % 2 ? 84 : 88)),
  ];
  const ts = feed(e, 'mem.usedPct', values);
  assert.deepEqual(kinds(ts), ['raised memory-high', 'cleared memory-high']);
  const [raised, cleared] = ts;
  assert.equal(raised!.alert.metric, 'mem.usedPct');
  assert.equal(raised!.alert.threshold, 90);
  assert.equal(raised!.value, 93);
  // The first sample above 90 of the long run is at index 60; a minute later (index 66) it is raised.
  assert.equal(raised!.at, T0 + 66 * STEP);
  assert.equal(cleared!.value, 84);
  assert.equal(cleared!.at, T0 + 128 * STEP);
  assert.deepEqual(e.active(), []);
});

test('forMs 0 raises on the first sample beyond; values between clear and raise keep it active', () => {
  const e = new AlertEngine([{ ...memory, forMs: 0, trend: false }], DEG);
  const ts = feed(e, 'mem.usedPct', [80, 91, 89, 91, 86, 95, 85.5, 84.9, 91]);
  assert.deepEqual(kinds(ts), ['raised memory-high', 'cleared memory-high', 'raised memory-high']);
  assert.equal(e.active().length, 1);
});

test('a missing sample resets a pending raise; a metric gone for staleMs clears its alert', () => {
  const e = new AlertEngine([{ ...memory, trend: false }], DEG, { staleMs: 5 * 60_000 });
  const ts: AlertTransition[] = [];
  for (let i = 0; i < 5; i++) ts.push(...e.evaluate(T0 + i * STEP, { 'mem.usedPct': 95 }));
  ts.push(...e.evaluate(T0 + 5 * STEP, {}));
  for (let i = 6; i < 12; i++) ts.push(...e.evaluate(T0 + i * STEP, { 'mem.usedPct': 95 }));
  assert.equal(ts.length, 0, 'the gap restarted the minute');
  ts.push(...e.evaluate(T0 + 12 * STEP, { 'mem.usedPct': 95 }));
  assert.deepEqual(kinds(ts), ['raised memory-high']);
  for (let i = 13; i < 13 + 29; i++) ts.push(...e.evaluate(T0 + i * STEP, {}));
  assert.equal(ts.length, 1, 'not stale before 5 minutes');
  ts.push(...e.evaluate(T0 + 43 * STEP, {}));
  assert.deepEqual(kinds(ts), ['raised memory-high', 'cleared memory-high']);
  assert.equal(ts[1]!.value, undefined);
  assert.match(ts[1]!.message, /no longer reported/);
});

test('wildcard rules keep one alert per matching metric; codes are kebab-case with -high/-low', () => {
  const disk: AlertRule = { name: 'disk', metric: 'disk.*.usedPct', raiseAbove: 90, clearAt: 85, forMs: 0 };
  const lag: AlertRule = { name: 'eventLoopLag', metric: 'agent.loopLagMs', raiseAbove: 500, clearAt: 100, forMs: 0 };
  const low: AlertRule = { name: 'batteryCharge', metric: 'battery.pct', raiseBelow: 10, clearAt: 20, forMs: 0 };
  assert.equal(thresholdCode(lag), 'event-loop-lag-high');
  assert.equal(thresholdCode(low), 'battery-charge-low');
  const e = new AlertEngine([disk, lag, low], DEG);
  const ts = e.evaluate(T0, { 'disk.data.usedPct': 95, 'disk.slot.usedPct': 91, 'disk.data.freeMB': 1, 'agent.loopLagMs': 600, 'battery.pct': 5 });
  assert.deepEqual(ts.map((t) => `${t.alert.code} ${t.alert.metric}`).sort(), [
    'battery-charge-low battery.pct',
    'disk-high disk.data.usedPct',
    'disk-high disk.slot.usedPct',
    'event-loop-lag-high agent.loopLagMs',
  ]);
  const cleared = e.evaluate(T0 + STEP, { 'disk.data.usedPct': 80, 'disk.slot.usedPct': 88, 'agent.loopLagMs': 600, 'battery.pct': 15 });
  assert.deepEqual(cleared.map((t) => `${t.type} ${t.alert.metric}`), ['cleared disk.data.usedPct']);
  assert.deepEqual(e.evaluate(T0 + 2 * STEP, { 'battery.pct': 21 }).map((t) => `${t.type} ${t.alert.code}`), ['cleared battery-charge-low']);
});

test('restored active alerts are not raised again, and clear when the value is back', () => {
  const first = new AlertEngine([{ ...memory, forMs: 0 }], DEG);
  feed(first, 'mem.usedPct', [95]);
  const restored = new AlertEngine([{ ...memory, forMs: 0 }], DEG, { restore: first.active() });
  assert.deepEqual(feed(restored, 'mem.usedPct', [96, 97, 88], T0 + HOUR), []);
  assert.deepEqual(kinds(feed(restored, 'mem.usedPct', [80], T0 + 2 * HOUR)), ['cleared memory-high']);
});

test('degradation: a steady synthetic growth is reported once, before the threshold, and cleared when it stops', () => {
  const rnd = prng(42);
  const e = new AlertEngine([memory], DEG);
  // 50 % rising 4 points an hour with +-0.5 noise: 90 % is 10 h away at first, 6 h away at 66 %.
  const rising = Array.from({ length: 6 * 360 }, (_, i) => 50 + (4 * i * STEP) / HOUR + (rnd() - 0.5));
  const ts = feed(e, 'mem.usedPct', rising);
  assert.deepEqual(kinds(ts), ['raised memory-degrading']);
  const d = ts[0]!;
  assert.equal(d.alert.kind, 'degradation');
  assert.ok(d.value! > 62 && d.value! < 70, `raised at ${d.value}, about 6 h before 90 %`);
  assert.ok(d.value! < 90, 'before the hard threshold');
  const eta = d.alert.predictedAt! - d.at;
  assert.ok(eta > 5 * HOUR && eta <= 6 * HOUR, `predicted ${eta / HOUR} h ahead`);
  // The growth stops: flat (with the same noise) for two hours; the trend alert clears once.
  const last = rising[rising.length - 1]!;
  const flat = Array.from({ length: 720 }, () => last + (rnd() - 0.5));
  const after = feed(e, 'mem.usedPct', flat, T0 + rising.length * STEP);
  assert.deepEqual(kinds(after), ['cleared memory-degrading']);
});

test('degradation: nothing on noise, on a flat line, or with too little history', () => {
  const rnd = prng(7);
  const noisy = new AlertEngine([memory], DEG);
  assert.deepEqual(feed(noisy, 'mem.usedPct', Array.from({ length: 3 * 360 }, () => 80 + (rnd() - 0.5) * 8)), []);
  const flat = new AlertEngine([memory], DEG);
  assert.deepEqual(feed(flat, 'mem.usedPct', Array.from({ length: 720 }, () => 89)), []);
  // A steep climb over ten minutes: not half a window of evidence yet, so no prediction.
  const young = new AlertEngine([memory], DEG);
  assert.deepEqual(feed(young, 'mem.usedPct', Array.from({ length: 60 }, (_, i) => 50 + i * 0.3)), []);
});

test('degradation is superseded by the threshold alert it predicted', () => {
  const e = new AlertEngine([{ ...memory, forMs: 0 }], DEG);
  const ts = feed(e, 'mem.usedPct', Array.from({ length: 1400 }, (_, i) => 60 + (10 * i * STEP) / HOUR));
  assert.deepEqual(kinds(ts), ['raised memory-degrading', 'raised memory-high', 'cleared memory-degrading']);
  assert.ok(ts[0]!.at < ts[1]!.at);
});

test('seeded history lets the trend be judged at once after a restart', () => {
  const e = new AlertEngine([memory], DEG);
  for (let i = 0; i < 360; i++) e.seed(T0 + i * STEP, { 'mem.usedPct': 70 + (5 * i * STEP) / HOUR });
  const ts = feed(e, 'mem.usedPct', [75.1], T0 + 360 * STEP);
  assert.deepEqual(kinds(ts), ['raised memory-degrading']);
});

test('fitLine and timeToCross', () => {
  const fit = fitLine([
    [T0, 10],
    [T0 + 1000, 12],
    [T0 + 2000, 14],
  ]);
  assert.ok(fit);
  assert.equal(fit.slope, 0.002);
  assert.equal(fit.r2, 1);
  assert.equal(fit.valueAt(T0 + 3000), 16);
  assert.equal(timeToCross(fit, 20, 1, T0 + 2000), 3000);
  assert.equal(timeToCross(fit, 0, -1, T0 + 2000), undefined);
  assert.equal(timeToCross(fit, 5, 1, T0 + 2000), 0);
  assert.equal(fitLine([[T0, 1]]), undefined);
});
