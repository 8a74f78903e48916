/**
 * Checks on the bridge's data stream as the WMS receives it: per group topic, the union of live
 * and replayed messages must have every seq exactly once in a session, and consecutive cycles
 * must be one poll interval apart (no missed interval). The pure check lives in demo/plc-gaps.ts,
 * which the demo's data report uses too; this file turns received messages into its input.
 */
import type { DataMsg } from '../../demo/plc-gaps.js';
import type { Received } from './util.js';

export { gapReport, type DataMsg, type GapReport } from '../../demo/plc-gaps.js';

export function dataMessages(got: readonly Received[], prefix: string): DataMsg[] {
  return got
    .filter((m) => m.topic.startsWith(prefix) && !m.topic.endsWith('/status') && !m.topic.endsWith('/set'))
    .map((m) => {
      const p = m.payload as { seq: number; ts: string; historical?: boolean; values: DataMsg['values'] };
      return { topic: m.topic, seq: p.seq, tick: Date.parse(p.ts), historical: p.historical === true, values: p.values };
    });
}
