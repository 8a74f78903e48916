/**
 * The gateway the maintenance bench measures (bench/maintenance-bench.ts,
 * bench/maintenance-builtin-bench.ts): a real agent on a real broker whose PLC bridge polls
 * simulated PLCs, the figures of a window (cycle gaps, `status` answer times, CPU of the agent
 * and its descendants, peak RSS, event-loop lag), and the end of it all, the PLC bridge the agent
 * started detached included.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { openDatabase } from '../lib/sqlite.js';
import { adminRequest } from '../core/admin.js';
import { validateProcedureText } from '../maintenance/validate.js';
import { waitFor, type BenchBroker } from './broker.js';
import { DIST, rssOf, sleep, spawnNode, type NodeChild } from './proc.js';
import { PlcRecorder } from './plc-sub.js';
import { gapStats, percentile } from './plc-stats.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const USER_HZ = 100;
export const GW = 'bench-maint';
export const MB = 1024 * 1024;
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export interface WindowFigures {
  ms: number;
  maxGapIntervals: number;
  seqGaps: number;
  statusP50: number;
  statusP99: number;
  statusMax: number;
  statusAsked: number;
  statusFailed: number;
  cpuPct: number;
  load1: number;
  /** The agent's own event-loop lag over the window (admin method `event-loop`). */
  lagP99: number;
  lagMax: number;
  /** When (from the window's start) a status answer took over 100 ms, and how long. */
  slow: string[];
  /** The agent's largest VmRSS seen in the window (sampled with each status answer), MB. */
  rssPeakMB: number;
  /** Cycles further apart than one interval (live messages): [topic, from, to], at most 10. */
  gaps: [string, string, string][];
  /** Seq gaps left once the replayed (historical) messages are counted too: data lost, not just late. */
  seqGapsWithReplay: number;
}

// ---------------------------------------------------------------------------------------------
// 2. store-optimize + store-backup under PLC load

/** utime+stime+cutime+cstime of a process (fields 14-17 of /proc/PID/stat); 0 when it is gone. */
function ticksOf(pid: number): { ticks: number; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

/** CPU ticks of `root` and every live descendant (a reaped one is in its parent's cutime/cstime). */
function treeTicks(root: number): number {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const t = ticksOf(Number(name));
    if (!t) continue;
    parent.set(Number(name), t.ppid);
    ticks.set(Number(name), t.ticks);
  }
  let sum = 0;
  for (const [pid, t] of ticks) {
    let p: number | undefined = pid;
    for (let depth = 0; p !== undefined && depth < 16; depth++) {
      if (p === root) {
        sum += t;
        break;
      }
      p = parent.get(p);
    }
  }
  return sum;
}

/** ~`mb` MB store at `path` (created as the agent creates it), `keepPct` of it still in use. */
export function bigStore(path: string, mb: number, keepPct: number): void {
  const db = openDatabase(path);
  try {
    db.exec('CREATE TABLE bench_scratch(id INTEGER PRIMARY KEY, b BLOB NOT NULL)');
    const rows = Math.round((mb * MB) / 4096);
    const ins = db.prepare('INSERT INTO bench_scratch(b) VALUES (randomblob(3900))');
    for (let i = 0; i < rows; i += 5000) db.transaction(() => { for (let k = 0; k < 5000 && i + k < rows; k++) ins.run(); })();
    const every = Math.max(1, Math.round(100 / keepPct));
    db.prepare('DELETE FROM bench_scratch WHERE id % ? != 0').run(every);
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

export const fileMB = (p: string): number => statSync(p).size / MB;

export interface Ctx {
  socket: string;
  agentPid: number;
  rec: PlcRecorder;
  intervalMs: number;
}

/** Measures from now until `until` resolves: status answers every 50 ms, CPU of the tree, cycle gaps. */
export async function measure(ctx: Ctx, until: Promise<unknown>): Promise<WindowFigures> {
  await adminRequest(ctx.socket, 'event-loop', { reset: true }, 5000);
  const from = Date.now();
  const c0 = treeTicks(ctx.agentPid);
  const w0 = performance.now();
  const lat: number[] = [];
  const slow: string[] = [];
  let failed = 0;
  let rssPeak = 0;
  let done = false;
  void until.finally(() => (done = true));
  while (!done) {
    const t = performance.now();
    try {
      rssPeak = Math.max(rssPeak, rssOf(ctx.agentPid).total);
    } catch {
      // the agent is gone: the status request below fails too
    }
    try {
      await adminRequest(ctx.socket, 'status', {}, 5000);
      lat.push(performance.now() - t);
      if (lat.at(-1)! > 100) slow.push(`+${((t - w0) / 1000).toFixed(2)} s: ${lat.at(-1)!.toFixed(0)} ms`);
    } catch {
      failed++;
    }
    const next = t + 50 - performance.now();
    if (next > 0 && !done) await Promise.race([sleep(next), until]);
  }
  const ms = performance.now() - w0;
  const c1 = treeTicks(ctx.agentPid);
  const to = Date.now();
  const lag = (await adminRequest(ctx.socket, 'event-loop', { reset: true }, 5000)) as { p99Ms: number; maxMs: number };
  // Late deliveries of the window's last cycles.
  await sleep(1000);
  const recs = ctx.rec.of(`edge/${GW}/plc/`).filter((r) => r.tick >= from && r.tick < to && !r.historical);
  const gap = gapStats(recs, ctx.intervalMs);
  const withReplay = gapStats(ctx.rec.of(`edge/${GW}/plc/`).filter((r) => r.tick >= from && r.tick < to), ctx.intervalMs);
  return {
    ms,
    maxGapIntervals: gap.maxGapIntervals,
    seqGaps: gap.seqGaps,
    statusP50: percentile(lat, 50),
    statusP99: percentile(lat, 99),
    statusMax: lat.length > 0 ? Math.max(...lat) : NaN,
    statusAsked: lat.length + failed,
    statusFailed: failed,
    cpuPct: ((c1 - c0) / USER_HZ / (ms / 1000)) * 100,
    load1: loadavg()[0]!,
    lagP99: lag.p99Ms,
    lagMax: lag.maxMs,
    slow,
    rssPeakMB: rssPeak / MB,
    gaps: gap.gaps,
    seqGapsWithReplay: withReplay.seqGaps,
  };
}

export interface Gateway {
  root: string;
  dataDir: string;
  socket: string;
  bridgeSocket: string;
  agent: NodeChild;
  rec: PlcRecorder;
  ctx: Ctx;
  /** Sends a `maintenance` command and resolves with its terminal status (or `bench-timeout`). */
  send(id: string, params: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * Stops the PLC bridge the agent started detached (plcBridge.launch: auto without systemd): it
 * outlives the agent by design, so the bench ends it through its control socket's `ping` pid.
 */
export async function stopDetachedBridge(bridgeSocket: string, log: (s: string) => void): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const ping = (await adminRequest(bridgeSocket, 'ping', {}, 2000).catch(() => undefined)) as { pid?: number } | undefined;
    if (typeof ping?.pid !== 'number') return;
    const pid = ping.pid;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const gone = (): boolean => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    };
    for (let i = 0; i < 100 && !gone(); i++) await sleep(50);
    if (!gone()) process.kill(pid, 'SIGKILL');
    log(`maintenance: stopped the detached PLC bridge (pid ${pid})`);
  }
}

/**
 * A real agent (real broker) whose PLC bridge polls `devices` simulated PLCs x `tagsPer` tags
 * every `intervalMs`; `prepare(dataDir)` fills its data directory before it starts.
 */
export async function startGateway(
  o: { broker: BenchBroker; devices: number; tagsPer: number; intervalMs: number; procedures: Record<string, string>; agentConfig?: Record<string, unknown>; prepare(dataDir: string): void },
  log: (s: string) => void,
): Promise<Gateway> {
  const { broker, devices, tagsPer, intervalMs } = o;
  const root = mkdtempSync(join(tmpdir(), 'bench-maint-'));
  const children: NodeChild[] = [];
  const rec = new PlcRecorder({ url: broker.url, protocolVersion: broker.protocolVersion, topics: { bridgeData: `edge/${GW}/plc/`, bridgeRes: `edge/${GW}/res/`, ref: 'bench-maint-ref' } });
  const bridgeSocket = join(root, 'bridge-data', 'plc-bridge.sock');
  let wms: mqtt.MqttClient | undefined;
  const stop = async (): Promise<void> => {
    await wms?.endAsync(true);
    for (const c of children.reverse()) await c.stop();
    await stopDetachedBridge(bridgeSocket, log);
    await rec.stop();
    rmSync(root, { recursive: true, force: true });
  };
  try {
    chmodSync(root, 0o755);
    const procs = join(root, 'procedures');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    for (const [id, yaml] of Object.entries(o.procedures)) {
      const v = validateProcedureText(yaml, `${id}.yaml`, id);
      if (!v.procedure) throw new Error(`maintenance bench: ${id} is invalid: ${JSON.stringify(v.problems)}`);
      writeFileSync(join(procs, `${id}.yaml`), yaml);
      chmodSync(join(procs, `${id}.yaml`), 0o644);
    }
    const dataDir = join(root, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    o.prepare(dataDir);

    const sim = spawnNode(join(DIST, 'demo', 'plc-sim.js'), ['--devices', String(devices), '--churn', String(tagsPer)]);
    children.push(sim);
    await waitFor(() => {
      if (sim.hasExited()) throw new Error(`plc-sim exited\n${sim.tail()}`);
      return sim.stdout().includes('\n');
    }, 'the simulated PLCs listening');
    const ports = (JSON.parse(sim.stdout().split('\n')[0]!) as { ports: number[] }).ports;
    const tags = Array.from({ length: tagsPer }, (_, i) => ({ name: `r${i}`, area: 'holding', address: i, type: 'uint16' }));
    const bridgeConfig = join(root, 'plc-bridge.yaml');
    writeFileSync(
      bridgeConfig,
      stringify({
        gatewayId: GW,
        dataDir: join(root, 'bridge-data'),
        mqtt: { url: broker.url },
        memory: { rssBytes: 0, heapBytes: 0 },
        devices: ports.map((port, i) => ({ name: `plc${i}`, host: '127.0.0.1', port, groups: [{ name: 'data', intervalMs, tags }] })),
      }),
    );
    const config = join(root, 'config.yaml');
    writeFileSync(
      config,
      stringify({
        gatewayId: GW,
        dataDir,
        mqtt: { url: broker.url, protocolVersion: broker.protocolVersion },
        ota: { root: join(root, 'ota') },
        maintenance: { proceduresDir: procs },
        plcBridge: { config: bridgeConfig, launch: 'auto' },
        ...o.agentConfig,
      }),
    );
    await rec.start();
    const agent = spawnNode(CLI, ['run', '--config', config]);
    children.push(agent);
    const socket = join(dataDir, 'agent.sock');
    await waitFor(
      async () => {
        if (agent.hasExited()) throw new Error(`the agent exited\n${agent.tail()}`);
        return ((await adminRequest(socket, 'status', {}, 5000).catch(() => undefined)) as { broker?: { connected?: boolean } } | undefined)?.broker?.connected === true;
      },
      'the agent connected',
      60_000,
    );
    await waitFor(() => new Set(rec.of(`edge/${GW}/plc/`).map((r) => r.topic)).size === devices, `data from all ${devices} devices`, 60_000);
    await sleep(3000);
    wms = await mqtt.connectAsync(broker.url, { clientId: `bench-maint-wms-${process.pid}-${Date.now()}`, protocolVersion: broker.protocolVersion });
    const waiting = new Map<string, (p: Record<string, unknown>) => void>();
    wms.on('message', (_t, payload) => {
      const p = JSON.parse(payload.toString()) as Record<string, unknown>;
      if (typeof p.id === 'string' && TERMINAL.has(String(p.status))) waiting.get(p.id)?.(p);
    });
    await wms.subscribeAsync(`edge/${GW}/res/+`, { qos: 1 });
    const client = wms;
    return {
      root,
      dataDir,
      socket,
      bridgeSocket,
      agent,
      rec,
      ctx: { socket, agentPid: agent.pid, rec, intervalMs },
      send: async (id, params, timeoutMs) => {
        const ended = new Promise<Record<string, unknown>>((resolve) => waiting.set(id, resolve));
        // A timer cleared once the answer came: a pending sleep() kept the bench process alive
        // for the whole timeout after its last figure.
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<Record<string, unknown>>((resolve) => (timer = setTimeout(() => resolve({ status: 'bench-timeout' }), timeoutMs)));
        try {
          await client.publishAsync(`edge/${GW}/cmd/maintenance`, JSON.stringify({ id, params }), { qos: 1 });
          return await Promise.race([ended, timeout]);
        } finally {
          clearTimeout(timer);
          waiting.delete(id);
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export const windowLine = (w: WindowFigures): string =>
  `largest cycle gap ${w.maxGapIntervals.toFixed(2)} intervals, status p50 ${w.statusP50.toFixed(1)} p99 ${w.statusP99.toFixed(1)} max ${w.statusMax.toFixed(1)} ms (${w.statusAsked} asked, ${w.statusFailed} failed), CPU ${w.cpuPct.toFixed(1)} %, peak RSS ${w.rssPeakMB.toFixed(0)} MB, event-loop lag p99 ${w.lagP99.toFixed(0)} max ${w.lagMax.toFixed(0)} ms, load ${w.load1.toFixed(2)}`;
