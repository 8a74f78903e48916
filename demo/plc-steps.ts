/**
 * The demo's PLC steps (CONTRACT.md section 3), played by the WMS against the bridge the agent's
 * watchdog started:
 *
 *  P1. the bridge is up: `~/plc/status` online, values of both groups arrive;
 *  P2. a write to `~/plc/{device}/set` of a tag of each writable kind, answered on `~/res/{id}`
 *      with the values read back from the PLC;
 *  P3. a write to a read-only tag, rejected before the PLC is touched;
 *
 * and, at the end, the data report: per group topic, the messages, seq gaps and the largest
 * interval between consecutive cycles, through the agent's restart and both updates (each of
 * which hands the bridge over to another release's code). A seq gap or a bridge restart fails
 * the demo.
 */
import { topicSummaries, type DataMsg } from './plc-gaps.js';
import type { BridgeWatch } from './plc.js';
import { slotOf } from './plc.js';
import { dataTopic, formatValue } from './plc-view.js';
import { expectStatus, print, say } from './ui.js';
import { brief, type Received, type WmsSim } from './wms-sim.js';

const UP_MS = 20_000;
const WRITE_MS = 5_000;

export interface PlcDemo {
  sim: WmsSim;
  watch: BridgeWatch;
  device: string;
  /** The slot whose code the bridge should run now. */
  slot: string;
  /** The bridge process that ran it when last checked. */
  pid?: number;
}

/** P1: the bridge the agent started is up and data flows from every group. */
export async function demoPlcUp(d: PlcDemo, after: number): Promise<string[]> {
  const { sim, device } = d;
  say(`== P1. the PLC bridge: the agent's watchdog started it (detached); the WMS subscribes to ~/plc/#`);
  await sim.waitFor('~/plc/status online', (m) => m.sub === 'plc/status' && m.payload.state === 'online', UP_MS, after);
  for (const group of ['fast', 'slow']) {
    await sim.waitFor(`data on ~/plc/${device}/${group}`, (m) => m.sub === `plc/${device}/${group}`, UP_MS, after);
  }
  const p = await d.watch.waitSlot(d.slot, UP_MS);
  d.pid = p.pid;
  print(`   bridge pid ${p.pid} runs slot ${d.slot}'s code (v${p.version}); values are summed up once a second below`);
  return [`PLC bridge pid ${p.pid} started by the agent's watchdog; ~/plc/status online; data from ${device}/fast and ${device}/slow`];
}

/** P2 and P3: a write with its read-back, a write to a read-only tag. */
export async function demoPlcWrites(d: PlcDemo): Promise<string[]> {
  const { sim, device } = d;
  say(`== P2. a write from the WMS: setpoint, a coil, a bit in a register and a string, read back after writing`);
  const tags = { setpoint: 1200, enable: true, jam: true, label: 'LANE-7' };
  let mark = sim.mark();
  await sim.set(device, { id: 'w-1', tags });
  const w1 = await sim.terminal('w-1', WRITE_MS, mark);
  expectStatus(w1, 'successful');
  const readBack = ((w1.result ?? {}) as { readBack?: Record<string, unknown> }).readBack ?? {};
  for (const [tag, want] of Object.entries(tags)) {
    if (readBack[tag] !== want) throw new Error(`w-1: ${tag} read back as ${brief(readBack[tag])}, written ${String(want)}`);
  }
  mark = sim.mark();
  await sim.waitFor(`setpoint ${tags.setpoint} in the slow group's data`, (m) => m.sub === `plc/${device}/slow` && (m.payload.values as Record<string, { v?: unknown }> | undefined)?.setpoint?.v === tags.setpoint, UP_MS, mark);
  print(`   read back ${Object.entries(readBack).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ')}; the next poll publishes it too`);

  say('== P3. a write to a read-only tag: rejected before the PLC is touched');
  mark = sim.mark();
  await sim.set(device, { id: 'w-2', tags: { counter: 0 } });
  expectStatus(await sim.terminal('w-2', WRITE_MS, mark), 'rejected', 'read-only');
  return ['PLC write w-1: successful, read back as written', 'PLC write w-2 to a read-only tag: rejected read-only'];
}

/** The bridge now runs `slot`'s code (after an update: handed over, maybe more than once); the summary line. */
export async function expectBridgeSlot(d: PlcDemo, slot: string, timeoutMs: number): Promise<string> {
  const p = await d.watch.waitSlot(slot, timeoutMs);
  const h = d.watch.history;
  const since = h.slice(Math.max(0, h.findIndex((b) => b.pid === d.pid)));
  const chain = since.map((b) => `pid ${b.pid} (slot ${String(slotOf(b))}, v${b.version})`).join(' → ');
  d.slot = slot;
  d.pid = p.pid;
  print(`   PLC bridge handovers: ${since.length > 1 ? chain : `none, still pid ${p.pid}`}`);
  return `PLC bridge handed over ${since.length - 1} time(s), now pid ${p.pid} on slot ${slot}'s code`;
}

function dataMessages(received: readonly Received[]): DataMsg[] {
  return received
    .filter((m) => dataTopic(m.sub))
    .map((m) => {
      const p = m.payload as { seq?: unknown; ts?: unknown; historical?: unknown; values?: unknown };
      return { topic: m.sub, seq: Number(p.seq), tick: Date.parse(String(p.ts)), historical: p.historical === true, values: (p.values ?? {}) as DataMsg['values'] };
    });
}

/** Prints the data report; returns what is wrong with the stream (empty: nothing). */
export function plcReport(sim: WmsSim, intervals: Record<string, number>): { problems: string[]; summary: string } {
  say('== PLC data report: every group topic, as the WMS received it (live and historical)');
  const rows = topicSummaries(dataMessages(sim.received));
  const problems: string[] = [];
  print(`   ${'topic'.padEnd(20)} ${'messages'.padStart(8)} ${'historical'.padStart(10)}  ${'seq'.padEnd(11)} ${'seq gaps'.padStart(8)} ${'restarts'.padStart(8)}  largest interval gap`);
  for (const r of rows) {
    const interval = intervals[r.topic.split('/').at(-1) ?? ''];
    print(
      `   ${r.topic.padEnd(20)} ${String(r.messages).padStart(8)} ${String(r.historical).padStart(10)}  ${`${r.firstSeq}..${r.lastSeq}`.padEnd(11)} ${String(r.seqGaps.length).padStart(8)} ${String(r.restarts).padStart(8)}  ${r.largestGapMs} ms${interval ? ` (poll interval ${interval} ms)` : ''}`,
    );
    if (r.seqGaps.length > 0) problems.push(`${r.topic}: seq gaps ${r.seqGaps.map(([a, b]) => `${a}->${b}`).join(', ')}`);
    if (r.restarts > 0) problems.push(`${r.topic}: the bridge restarted ${r.restarts} time(s) (seq began again at 1)`);
    if (r.duplicates > 0) print(`   ${r.topic}: ${r.duplicates} seq received twice (QoS 1 is at-least-once)`);
  }
  if (rows.length === 0) problems.push('no PLC data arrived');
  const messages = rows.reduce((n, r) => n + r.messages, 0);
  return { problems, summary: `PLC data: ${messages} messages on ${rows.length} topics, no seq gap through the restart, the updates and the bridge handovers` };
}
