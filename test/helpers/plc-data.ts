/**
 * Checks on the bridge's data stream as the WMS receives it: per group topic, the union of live
 * and replayed messages must have every seq exactly once in a session, and consecutive cycles
 * must be one poll interval apart (no missed interval).
 */
import type { Received } from './util.js';

export interface DataMsg {
  topic: string;
  seq: number;
  tick: number;
  historical: boolean;
  values: Record<string, { v: unknown; q: string; ts: string; reason?: string }>;
}

export function dataMessages(got: readonly Received[], prefix: string): DataMsg[] {
  return got
    .filter((m) => m.topic.startsWith(prefix) && !m.topic.endsWith('/status') && !m.topic.endsWith('/set'))
    .map((m) => {
      const p = m.payload as { seq: number; ts: string; historical?: boolean; values: DataMsg['values'] };
      return { topic: m.topic, seq: p.seq, tick: Date.parse(p.ts), historical: p.historical === true, values: p.values };
    });
}

export interface GapReport {
  topics: number;
  messages: number;
  duplicates: number;
  /** Holes in seq: [topic, after, before]. */
  seqGaps: [string, number, number][];
  /** Cycles further apart than one interval: [topic, fromIso, toIso]. */
  tickGaps: [string, string, string][];
  /** Historical messages out of order (seq not increasing in arrival order). */
  historicalDisorder: number;
}

/** Assumes one session (seq starting anywhere, increasing by one) per topic. */
export function gapReport(msgs: readonly DataMsg[], intervalMs: number): GapReport {
  const byTopic = new Map<string, DataMsg[]>();
  for (const m of msgs) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), m]);
  const r: GapReport = { topics: byTopic.size, messages: msgs.length, duplicates: 0, seqGaps: [], tickGaps: [], historicalDisorder: 0 };
  for (const [topic, list] of byTopic) {
    let lastHist = -Infinity;
    for (const m of list) {
      if (!m.historical) continue;
      if (m.seq < lastHist) r.historicalDisorder++;
      lastHist = m.seq;
    }
    const bySeq = new Map<number, DataMsg>();
    for (const m of list) {
      if (bySeq.has(m.seq)) r.duplicates++;
      else bySeq.set(m.seq, m);
    }
    const seqs = [...bySeq.keys()].sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      const a = seqs[i - 1]!;
      const b = seqs[i]!;
      if (b !== a + 1) r.seqGaps.push([topic, a, b]);
      const ta = bySeq.get(a)!.tick;
      const tb = bySeq.get(b)!.tick;
      if (tb - ta > intervalMs) r.tickGaps.push([topic, new Date(ta).toISOString(), new Date(tb).toISOString()]);
    }
  }
  return r;
}
