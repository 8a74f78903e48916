/**
 * Checks on the PLC bridge's data stream as the WMS receives it (pure): per group topic, the
 * union of live and replayed messages must have every seq exactly once in a session, and
 * consecutive cycles should be one poll interval apart. The demo prints this as its data report;
 * the integration tests assert on it (test/helpers/plc-data.ts re-exports it).
 */

export interface DataMsg {
  topic: string;
  seq: number;
  /** The poll cycle's grid time (ms). */
  tick: number;
  historical: boolean;
  values: Record<string, { v: unknown; q: string; ts: string; reason?: string }>;
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
  const r: GapReport = { topics: 0, messages: msgs.length, duplicates: 0, seqGaps: [], tickGaps: [], historicalDisorder: 0 };
  const byTopic = groupByTopic(msgs);
  r.topics = byTopic.size;
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

/** One line of the demo's data report. */
export interface TopicSummary {
  topic: string;
  messages: number;
  historical: number;
  firstSeq: number;
  lastSeq: number;
  /** Holes in seq within a session: [after, before]. */
  seqGaps: [number, number][];
  duplicates: number;
  /** New sessions after the first (a live seq 1 again: the bridge restarted, not handed over). */
  restarts: number;
  /** The largest distance between the grid times of consecutive seqs (ms). */
  largestGapMs: number;
}

/** Per topic, in order of first appearance; a session is cut at each live seq 1 after the first message. */
export function topicSummaries(msgs: readonly DataMsg[]): TopicSummary[] {
  const out: TopicSummary[] = [];
  for (const [topic, list] of groupByTopic(msgs)) {
    const sessions: DataMsg[][] = [[]];
    for (const [i, m] of list.entries()) {
      if (i > 0 && !m.historical && m.seq === 1) sessions.push([]);
      sessions.at(-1)!.push(m);
    }
    const s: TopicSummary = { topic, messages: list.length, historical: list.filter((m) => m.historical).length, firstSeq: list[0]!.seq, lastSeq: list.at(-1)!.seq, seqGaps: [], duplicates: 0, restarts: sessions.length - 1, largestGapMs: 0 };
    for (const session of sessions) {
      const r = gapReport(session, Infinity);
      s.duplicates += r.duplicates;
      s.seqGaps.push(...r.seqGaps.map(([, a, b]): [number, number] => [a, b]));
      const ticks = new Map(session.map((m) => [m.seq, m.tick]));
      const seqs = [...ticks.keys()].sort((a, b) => a - b);
      for (let i = 1; i < seqs.length; i++) s.largestGapMs = Math.max(s.largestGapMs, ticks.get(seqs[i]!)! - ticks.get(seqs[i - 1]!)!);
    }
    out.push(s);
  }
  return out;
}

function groupByTopic(msgs: readonly DataMsg[]): Map<string, DataMsg[]> {
  const byTopic = new Map<string, DataMsg[]>();
  for (const m of msgs) {
    const list = byTopic.get(m.topic);
    if (list) list.push(m);
    else byTopic.set(m.topic, [m]);
  }
  return byTopic;
}
