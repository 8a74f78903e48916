/**
 * The PLC bridge's throughput, CPU, memory, latency, write latency and handover gap (`--only
 * plc`), each next to a reference measured in the same run.
 *
 * Processes: the simulated PLCs in one child (`demo/plc-sim.js --devices N --churn TAGS`: every
 * register changes on every read, so report by exception reports every value every cycle),
 * mosquitto (bench/broker.ts), the bridge as a child (`edge-agent plc-bridge` with
 * `--max-semi-space-size=1`, as the agent and the unit start it), the reference poller as a child
 * with the same flag (plc-child.ts), and in this process
 * one subscriber and one publisher (plc-sub.ts).
 *
 * Per interval (1 s, then 100 ms): first the reference, then the bridge, each polling every
 * device's holding registers 0..tags-1 (8 reads of 125 for 1,000 tags). After start-up and 2 s
 * of settling, a window aligned to a whole second: utime+stime from /proc/PID/stat at its ends,
 * VmRSS every second, every data message whose cycle lies in the window counted (values and
 * `ts` -> receive latency). During the bridge's window plain probe messages of the size of one
 * data message go publisher -> broker -> subscriber every 100 ms: the latency reference under
 * the same load. After the window, sequential writes (`set` -> terminal `~/res/{id}` with
 * `result.readBack`; the reference: FC6 + FC3 read-back + publish). At 100 ms, still under load,
 * then N handovers (`upgrade` on the running bridge, as test/integration/plc-handover.test.ts) and the
 * largest distance between consecutive cycles of a group topic, in intervals, across them.
 * The agent-update gap is not measured here (the bridge keeps running through an agent update;
 * the lead measures it on the agent side).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { rpcRequest } from '../lib/rpc.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DIST, rssOf, sleep, spawnNode, type NodeChild, type Rss } from './proc.js';
import { BRIDGE_NODE_FLAGS } from '../plc-bridge/node-flags.js';
import { PlcRecorder, type PlcTopics } from './plc-sub.js';
import { gapStats, percentile, rssStats, windowStats, type GapStats, type RssStats, type WindowStats } from './plc-stats.js';

/** How the agent (recovery-wiring.ts) and edge-plc-bridge.service start the bridge; the reference gets the same. */
const NODE_FLAGS = [...BRIDGE_NODE_FLAGS];
import type { BenchResults } from './report.js';

const USER_HZ = 100;
const GATEWAY = 'bench-plc';
const SET_ADDRESS = 5000;
const SETTLE_MS = 2000;
const CLI = join(DIST, 'agent', 'cli', 'index.js');
const TOPICS: PlcTopics = { bridgeData: `edge/${GATEWAY}/plc/`, bridgeRes: `edge/${GATEWAY}/res/`, ref: 'bench-ref' };

export interface PlcSizes {
  devices: number;
  tags: number;
  intervals: number[];
  windowMs: number;
  refWindowMs: number;
  writes: number;
  handovers: number;
}

export function plcSizes(quick: boolean, minutes: number | undefined): PlcSizes {
  if (minutes !== undefined && !(minutes > 0)) throw new Error('--plc-minutes must be a positive number');
  const windowMs = minutes !== undefined ? minutes * 60_000 : quick ? 10_000 : 60_000;
  return quick
    ? { devices: 2, tags: 100, intervals: [1000, 100], windowMs, refWindowMs: Math.min(windowMs, 10_000), writes: 20, handovers: 1 }
    : { devices: 20, tags: 1000, intervals: [1000, 100], windowMs, refWindowMs: Math.min(windowMs, 60_000), writes: 200, handovers: 3 };
}

/** One subject (the bridge or the reference) at one interval. */
export interface Side {
  windowMs: number;
  stats: WindowStats;
  gap: GapStats;
  cpuPct: number;
  rss: RssStats;
  /** Largest RssAnon (heap, malloc) and RssFile (mostly the node binary) samples, MB. */
  anonMaxMB: number;
  fileMaxMB: number;
  writeMs: number[];
  writesFailed: number;
}

export interface PlcRun {
  intervalMs: number;
  bridge: Side;
  reference: Side;
  probeMs: number[];
  overruns: number;
}

export interface HandoverResult {
  gap: GapStats;
  /** When each successor answered `active` (ISO), to set next to the gaps. */
  activeAt: string[];
  /** Spawn of the successor -> it answers `active`. */
  takeoverMs: number[];
  oldExitCodes: (number | string)[];
}

export interface PlcResults {
  sizes: PlcSizes;
  runs: PlcRun[];
  handover: HandoverResult | undefined;
  broker: BenchResults['broker'];
}

interface Ctx {
  sizes: PlcSizes;
  broker: BenchBroker;
  rec: PlcRecorder;
  ports: number[];
  dir: string;
  children: NodeChild[];
  log: (s: string) => void;
}

function cpuTicks(pid: number): number {
  // proc(5): fields after the command's closing parenthesis; utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

const nextSecond = (t: number): number => (Math.floor(t / 1000) + 1) * 1000;
const sleepUntil = (t: number): Promise<void> => sleep(Math.max(0, t - Date.now()));

function bridgeConfig(ctx: Ctx, dir: string, intervalMs: number): string {
  const tags = Array.from({ length: ctx.sizes.tags }, (_, i) => ({ name: `r${i}`, area: 'holding', address: i, type: 'uint16' }));
  const devices = ctx.ports.map((port, i) => ({
    name: `plc${String(i).padStart(2, '0')}`,
    host: '127.0.0.1',
    port,
    groups: [
      { name: 'data', intervalMs, tags },
      ...(i === 0 ? [{ name: 'cmd', intervalMs: 1000, tags: [{ name: 'setpoint', area: 'holding', address: SET_ADDRESS, type: 'uint16', access: 'read-write' }] }] : []),
    ],
  }));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'plc-bridge.yaml');
  // No memory budget: past 90 % of it the bridge hands over to a fresh instance of itself, and a
  // window must measure one process (its RSS is reported as it is, against the goal).
  const memory = { rssBytes: 0, heapBytes: 0 };
  writeFileSync(path, stringify({ gatewayId: GATEWAY, dataDir: join(dir, 'data'), mqtt: { url: ctx.broker.url }, memory, devices }));
  return path;
}

async function startSim(ctx: Omit<Ctx, 'ports'>): Promise<number[]> {
  const sim = spawnNode(join(DIST, 'demo', 'plc-sim.js'), ['--devices', String(ctx.sizes.devices), '--churn', String(ctx.sizes.tags)]);
  ctx.children.push(sim);
  await waitFor(() => {
    if (sim.hasExited()) throw new Error(`plc-sim exited\n${sim.tail()}`);
    return sim.stdout().includes('\n');
  }, 'the simulated PLCs listening');
  return (JSON.parse(sim.stdout().split('\n')[0]!) as { ports: number[] }).ports;
}

/** Every device has published at least twice since `since`. */
async function flowing(ctx: Ctx, prefix: string, since: number, child: NodeChild): Promise<void> {
  await waitFor(
    () => {
      if (child.hasExited()) throw new Error(`${prefix} publisher exited\n${child.tail()}`);
      const per = new Map<string, number>();
      for (const r of ctx.rec.of(prefix)) if (r.at >= since) per.set(r.topic, (per.get(r.topic) ?? 0) + 1);
      return per.size === ctx.sizes.devices && [...per.values()].every((n) => n >= 2);
    },
    `data from all ${ctx.sizes.devices} devices on ${prefix}`,
    60_000,
  );
}

/** The measurement window: CPU, RSS every second, and what the subscriber got for its cycles. */
async function measureWindow(ctx: Ctx, child: NodeChild, prefix: string, intervalMs: number, windowMs: number, probe: boolean): Promise<Omit<Side, 'writeMs' | 'writesFailed'> & { probeMs: number[] }> {
  const pid = child.pid;
  const t0 = nextSecond(Date.now() + 100);
  const t1 = t0 + windowMs;
  await sleepUntil(t0);
  const c0 = cpuTicks(pid);
  const w0 = Date.now();
  const rss: [number, number][] = [];
  let anonMax = 0;
  let fileMax = 0;
  let died = false;
  const sample = (): void => {
    if (died || child.hasExited()) {
      died = true;
      return;
    }
    let r: Rss;
    try {
      r = rssOf(pid);
    } catch {
      // Gone between the check and the read (reaped before its 'exit' event).
      died = true;
      return;
    }
    rss.push([Date.now(), r.total]);
    anonMax = Math.max(anonMax, r.anon);
    fileMax = Math.max(fileMax, r.file);
  };
  sample();
  const sampler = setInterval(sample, 1000);
  if (probe) ctx.rec.startProbes(ctx.rec.sampleBytes || 1024);
  try {
    await sleepUntil(t1);
  } finally {
    clearInterval(sampler);
  }
  if (died || child.hasExited()) throw new Error(`pid ${pid} exited during the measurement window\n${child.tail()}`);
  const c1 = cpuTicks(pid);
  const w1 = Date.now();
  sample();
  const probeMs = ctx.rec.stopProbes();
  // Late deliveries of the window's last cycles: until every topic shows a cycle at or after its end.
  await waitFor(
    () => {
      const last = new Map<string, number>();
      for (const r of ctx.rec.of(prefix)) last.set(r.topic, Math.max(last.get(r.topic) ?? 0, r.tick));
      return [...last.values()].every((t) => t >= t1 - intervalMs);
    },
    'the window delivered',
    10_000,
  ).catch(() => ctx.log(`plc: ${prefix}: some cycles of the window were not delivered within 10 s`));
  const recs = ctx.rec.of(prefix).filter((r) => r.tick >= t0 && r.tick < t1);
  const gap = gapStats(recs, intervalMs);
  if (gap.gaps.length > 0) ctx.log(`plc: ${prefix}: cycles missed in the window [topic, before, after]: ${JSON.stringify(gap.gaps)}`);
  return {
    windowMs,
    stats: windowStats(recs, t0, t1),
    gap,
    cpuPct: ((c1 - c0) / USER_HZ / ((w1 - w0) / 1000)) * 100,
    rss: rssStats(rss),
    anonMaxMB: anonMax / (1024 * 1024),
    fileMaxMB: fileMax / (1024 * 1024),
    probeMs,
  };
}

async function writes(ctx: Ctx, make: (i: number) => { topic: string; id: string; body: Record<string, unknown> }): Promise<{ writeMs: number[]; writesFailed: number }> {
  const writeMs: number[] = [];
  let writesFailed = 0;
  let timeouts = 0;
  for (let i = 0; i < ctx.sizes.writes; i++) {
    const w = make(i);
    const r = await ctx.rec.write(w.topic, w.id, w.body);
    writeMs.push(r.ms);
    if (r.status !== 'successful') writesFailed++;
    if (r.status === 'timeout' && ++timeouts >= 5) throw new Error(`plc: 5 writes got no terminal answer (last: ${w.topic} ${w.id})`);
    // Not back to back: a WMS's writes do not line up with the end of the previous one.
    await sleep(5 + (i % 7) * 3);
  }
  return { writeMs, writesFailed };
}

async function referenceRun(ctx: Ctx, intervalMs: number): Promise<Side> {
  ctx.rec.clear();
  const args = ['--url', ctx.broker.url, '--protocol', String(ctx.broker.protocolVersion), '--ports', ctx.ports.join(','), '--tags', String(ctx.sizes.tags)];
  const since = Date.now();
  // --no-delay: the reference does what the bridge does not yet (TCP_NODELAY on its MQTT socket), so
  // its write latency shows what a poll-and-publish program gets from this broker.
  const child = spawnNode(join(DIST, 'bench', 'plc-child.js'), [...args, '--interval', String(intervalMs), '--topic', TOPICS.ref, '--set-address', String(SET_ADDRESS), '--no-delay'], NODE_FLAGS);
  ctx.children.push(child);
  try {
    await flowing(ctx, `${TOPICS.ref}/data/`, since, child);
    await sleep(SETTLE_MS);
    const w = await measureWindow(ctx, child, `${TOPICS.ref}/data/`, intervalMs, ctx.sizes.refWindowMs, false);
    const ws = await writes(ctx, (i) => ({ topic: `${TOPICS.ref}/set`, id: `r${intervalMs}-${i}`, body: { id: `r${intervalMs}-${i}`, device: 0, value: i + 1 } }));
    return { ...w, ...ws };
  } finally {
    await child.stop();
  }
}

async function active(socket: string, child: NodeChild, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      if (child.hasExited()) throw new Error(`bridge ${child.pid} exited\n${child.tail()}`);
      const p = (await rpcRequest(socket, 'ping', {}, 2000).catch(() => undefined)) as { pid?: number; role?: string } | undefined;
      return p?.pid === child.pid && p.role === 'active';
    },
    `bridge ${child.pid} active`,
    timeoutMs,
  );
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `upgrade` on the running bridge (the only way to a handover): the pid of the successor it started. */
async function upgradeTo(socket: string, cli: string): Promise<number> {
  const before = ((await rpcRequest(socket, 'ping', {}, 2000).catch(() => undefined)) as { pid?: number } | undefined)?.pid;
  try {
    return ((await rpcRequest(socket, 'upgrade', { cli }, 90_000)) as { pid: number }).pid;
  } catch {
    // The old bridge may exit before its answer is out: who answers `ping` now is what counts.
    let pid: number | undefined;
    await waitFor(
      async () => {
        const p = (await rpcRequest(socket, 'ping', {}, 2000).catch(() => undefined)) as { pid?: number; role?: string } | undefined;
        if (p?.role === 'active' && p.pid !== undefined && p.pid !== before) pid = p.pid;
        return pid !== undefined;
      },
      'the successor active',
      30_000,
    );
    return pid!;
  }
}

async function handovers(ctx: Ctx, socket: string, first: NodeChild, intervalMs: number): Promise<{ stopCurrent: () => Promise<void>; result: HandoverResult }> {
  ctx.rec.clear();
  const from = Date.now();
  const takeoverMs: number[] = [];
  const activeAt: string[] = [];
  const oldExitCodes: (number | string)[] = [];
  let current = first.pid;
  for (let i = 0; i < ctx.sizes.handovers; i++) {
    await sleep(2000);
    const t = Date.now();
    // The running bridge starts its successor itself (issue #12: nothing else may take over).
    const next = await upgradeTo(socket, CLI);
    takeoverMs.push(Date.now() - t);
    activeAt.push(new Date().toISOString());
    const old = current;
    oldExitCodes.push(
      i === 0 ? await Promise.race([first.exited, sleep(30_000).then(() => 'still running after 30 s')]) : await waitFor(() => !pidAlive(old), `bridge ${old} to exit`, 30_000).then(() => 'exited', () => 'still running after 30 s'),
    );
    current = next;
    ctx.log(`plc: handover ${i + 1}/${ctx.sizes.handovers}: ${takeoverMs.at(-1)} ms to active, old instance exited ${String(oldExitCodes.at(-1))}`);
  }
  await sleep(2000);
  const to = Date.now() - 1000;
  const recs = ctx.rec.of(TOPICS.bridgeData).filter((r) => r.tick >= from && r.tick < to);
  const gap = gapStats(recs, intervalMs);
  if (gap.gaps.length > 0) ctx.log(`plc: handover gaps [topic, before, after]: ${JSON.stringify(gap.gaps)}; successors active at ${activeAt.join(', ')}`);
  const last = current;
  const stopCurrent = async (): Promise<void> => {
    if (last === first.pid || !pidAlive(last)) return;
    process.kill(last, 'SIGTERM');
    await waitFor(() => !pidAlive(last), `bridge ${last} to stop`, 15_000).catch(() => process.kill(last, 'SIGKILL'));
  };
  return { stopCurrent, result: { gap, activeAt, takeoverMs, oldExitCodes } };
}

async function bridgeRun(ctx: Ctx, intervalMs: number, withHandovers: boolean): Promise<{ side: Side; probeMs: number[]; overruns: number; handover: HandoverResult | undefined }> {
  ctx.rec.clear();
  const dir = join(ctx.dir, `bridge-${intervalMs}`);
  const config = bridgeConfig(ctx, dir, intervalMs);
  const socket = join(dir, 'data', 'plc-bridge.sock');
  const since = Date.now();
  const bridge = spawnNode(CLI, ['plc-bridge', '--config', config], NODE_FLAGS);
  let stopSuccessor = async (): Promise<void> => undefined;
  ctx.children.push(bridge);
  try {
    await active(socket, bridge, 60_000);
    await flowing(ctx, TOPICS.bridgeData, since, bridge);
    await sleep(SETTLE_MS);
    const { probeMs, ...w } = await measureWindow(ctx, bridge, TOPICS.bridgeData, intervalMs, ctx.sizes.windowMs, true);
    const status = (await rpcRequest(socket, 'status', {}, 5000)) as { groups?: Record<string, { overruns: number }> };
    const overruns = Object.values(status.groups ?? {}).reduce((s, g) => s + g.overruns, 0);
    const ws = await writes(ctx, (i) => {
      const id = `b${intervalMs}-${i}`;
      return { topic: `${TOPICS.bridgeData}plc00/set`, id, body: { id, tags: { setpoint: i + 1 } } };
    });
    let handover: HandoverResult | undefined;
    if (withHandovers && ctx.sizes.handovers > 0) {
      const h = await handovers(ctx, socket, bridge, intervalMs);
      stopSuccessor = h.stopCurrent;
      handover = h.result;
    }
    return { side: { ...w, ...ws }, probeMs, overruns, handover };
  } finally {
    await bridge.stop();
    await stopSuccessor();
  }
}

export const intervalLabel = (ms: number): string => (ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`);

export async function plcPhase(opts: { quick: boolean; minutes: number | undefined; prefer: 'mosquitto' | 'aedes' | undefined }, log: (s: string) => void): Promise<PlcResults> {
  const sizes = plcSizes(opts.quick, opts.minutes);
  const broker = await startBenchBroker(opts.prefer);
  const note = broker.kind === 'mosquitto' ? 'real broker' : 'mosquitto is not installed: in-process aedes';
  const dir = mkdtempSync(join(tmpdir(), 'bench-plc-'));
  const children: NodeChild[] = [];
  const rec = new PlcRecorder({ url: broker.url, protocolVersion: broker.protocolVersion, topics: TOPICS });
  log(`plc: broker ${broker.version}; ${sizes.devices} devices x ${sizes.tags} tags, windows of ${sizes.windowMs / 1000} s (reference ${sizes.refWindowMs / 1000} s)`);
  try {
    await rec.start();
    const ports = await startSim({ sizes, broker, rec, dir, children, log });
    const ctx: Ctx = { sizes, broker, rec, ports, dir, children, log };
    const runs: PlcRun[] = [];
    let handover: HandoverResult | undefined;
    for (const intervalMs of sizes.intervals) {
      const reference = await referenceRun(ctx, intervalMs);
      const b = await bridgeRun(ctx, intervalMs, intervalMs === Math.min(...sizes.intervals));
      handover ??= b.handover;
      runs.push({ intervalMs, bridge: b.side, reference, probeMs: b.probeMs, overruns: b.overruns });
      const f = (s: Side): string =>
        `${Math.round(s.stats.valuesPerSec)} values/s, CPU ${s.cpuPct.toFixed(1)} %, RSS max ${s.rss.maxMB.toFixed(1)} MB, latency p99 ${s.stats.latencyP99.toFixed(1)} ms, write p99 ${percentile(s.writeMs, 99).toFixed(1)} ms`;
      log(`plc ${intervalLabel(intervalMs)}: bridge ${f(b.side)}; reference ${f(reference)}`);
    }
    return { sizes, runs, handover, broker: { kind: broker.kind, version: broker.version, note } };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await rec.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
