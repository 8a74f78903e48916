/**
 * The arithmetic of the PLC bridge bench (plc-bench.ts), pure: what a subscriber received in a
 * window turned into values per second, latency percentiles, the largest gap between
 * consecutive cycles of a topic, and the slope of an RSS series.
 */

/** One data message as the bench's subscriber received it. */
export interface DataRec {
  topic: string;
  seq: number;
  /** The poll cycle's grid time (the message's `ts`), epoch ms. */
  tick: number;
  /** Values in the message (tags for the bridge, registers for the reference). */
  n: number;
  /** Receive time, epoch ms with sub-ms precision. */
  at: number;
  historical: boolean;
}

/** Nearest-rank percentile (p in 0..100); NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export interface WindowStats {
  messages: number;
  values: number;
  valuesPerSec: number;
  latencyP50: number;
  latencyP99: number;
  latencyMax: number;
}

/** Live messages whose cycle lies in [from, to): "delivered" is what reached the subscriber. */
export function windowStats(recs: readonly DataRec[], from: number, to: number): WindowStats {
  const inWindow = recs.filter((r) => r.tick >= from && r.tick < to && !r.historical);
  const values = inWindow.reduce((sum, r) => sum + r.n, 0);
  const lat = inWindow.map((r) => r.at - r.tick);
  return {
    messages: inWindow.length,
    values,
    valuesPerSec: values / ((to - from) / 1000),
    latencyP50: percentile(lat, 50),
    latencyP99: percentile(lat, 99),
    latencyMax: lat.reduce((a, b) => Math.max(a, b), -Infinity),
  };
}

export interface GapStats {
  topics: number;
  /** The largest distance between consecutive seqs' cycles, in intervals (1: none missed). */
  maxGapIntervals: number;
  /** Holes in seq over all topics. */
  seqGaps: number;
  duplicates: number;
  /** The first few gaps of more than one interval: [topic, cycle before, cycle after] (ISO). */
  gaps: [string, string, string][];
}

/** As test/helpers/plc-data.ts gapReport (live and historical together, as the WMS sees them). */
export function gapStats(recs: readonly DataRec[], intervalMs: number): GapStats {
  const byTopic = new Map<string, Map<number, DataRec>>();
  let duplicates = 0;
  for (const r of recs) {
    let m = byTopic.get(r.topic);
    if (!m) byTopic.set(r.topic, (m = new Map()));
    if (m.has(r.seq)) duplicates++;
    else m.set(r.seq, r);
  }
  let maxGap = 0;
  let seqGaps = 0;
  const gaps: [string, string, string][] = [];
  for (const [topic, m] of byTopic) {
    const seqs = [...m.keys()].sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i]! !== seqs[i - 1]! + 1) seqGaps++;
      const a = m.get(seqs[i - 1]!)!.tick;
      const b = m.get(seqs[i]!)!.tick;
      maxGap = Math.max(maxGap, (b - a) / intervalMs);
      if (b - a > intervalMs && gaps.length < 10) gaps.push([topic, new Date(a).toISOString(), new Date(b).toISOString()]);
    }
  }
  return { topics: byTopic.size, maxGapIntervals: maxGap, seqGaps, duplicates, gaps };
}

export interface RssStats {
  startMB: number;
  endMB: number;
  maxMB: number;
  /** Least-squares slope over the window, MB per minute (flat: near 0). */
  slopeMBPerMin: number;
}

/** `samples`: [epoch ms, bytes], one a second. */
export function rssStats(samples: readonly (readonly [number, number])[]): RssStats {
  const MB = 1024 * 1024;
  if (samples.length === 0) return { startMB: NaN, endMB: NaN, maxMB: NaN, slopeMBPerMin: NaN };
  const xs = samples.map(([t]) => (t - samples[0]![0]) / 60_000);
  const ys = samples.map(([, b]) => b / MB);
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return { startMB: ys[0]!, endMB: ys[n - 1]!, maxMB: Math.max(...ys), slopeMBPerMin: den > 0 ? num / den : 0 };
}
