/**
 * `--only maintenance`: what the procedure runner (maintenance/runner.ts) costs.
 *
 *   1. Runner overhead per step: a procedure of 100 `log` steps driven by the real Runner, in
 *      this process, over a real RunStore (a temp SQLite file opened as the agent opens its store:
 *      lib/sqlite.ts openDatabase + MAINTENANCE_MIGRATIONS) with a file logger; against the same
 *      100 log calls (the same child logger and message per step) in a plain loop. Median of the
 *      per-step cost over several runs, each run alternating which goes first. Goal: <= 2 ms.
 *   2. A procedure of `store-optimize` (vacuum: incremental) then `store-backup`, sent as the
 *      `maintenance` operation to a real agent (real mosquitto) whose store is ~200 MB with most of
 *      it free pages (a scratch table filled before the agent starts, then mostly deleted), while
 *      the agent's PLC bridge polls 2,000 tags every 100 ms from the simulated PLCs. During the run,
 *      and during a window of the same length with no procedure right after it (the reference):
 *      the bridge's largest distance between consecutive cycles in intervals (1: no interval
 *      missed), the admin socket's `status` answer time p50/p99 (asked every 50 ms, one at a
 *      time), and the CPU of the agent and all its descendants (/proc/PID/stat utime+stime+
 *      cutime+cstime) as % of one core. Goals: <= 1 interval, p99 <= 100 ms, CPU <= 30 %. The
 *      1-minute load average is kept with each window (the machine is shared).
 * Everything on 127.0.0.1; every wait is bounded (the procedure by its maxDurationSec).
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { openDatabase } from '../lib/sqlite.js';
import { HEALTH_MIGRATIONS, HealthHistory } from '../health/history.js';
import { shippedProceduresDir } from '../maintenance/catalog.js';
import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { adminRequest } from '../core/admin.js';
import { MAINTENANCE_MIGRATIONS, RunStore } from '../maintenance/run-store.js';
import { Runner } from '../maintenance/runner.js';
import { validateProcedureText } from '../maintenance/validate.js';
import type { Procedure } from '../maintenance/schema.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DIST, rssOf, sleep, spawnNode, type NodeChild } from './proc.js';
import { PlcRecorder } from './plc-sub.js';
import { gapStats, percentile } from './plc-stats.js';
import { measurement, type BenchResults, type Measurement } from './report.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const USER_HZ = 100;
const GW = 'bench-maint';
const MB = 1024 * 1024;
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export interface MaintenanceBenchOptions {
  quick: boolean;
  runs: number;
  prefer: 'mosquitto' | 'aedes' | undefined;
}

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

export interface MaintenancePhase {
  overhead: { runnerMsPerStep: number[]; loopMsPerStep: number[]; steps: number };
  store: {
    run: WindowFigures;
    idle: WindowFigures;
    storeMB: number;
    freeMB: number;
    afterMB: number;
    tags: number;
    intervalMs: number;
    outcome: string;
    stepMs: Record<string, number>;
    overruns: number;
  };
  builtin?: Awaited<ReturnType<typeof builtinPhase>>;
  broker: BenchResults['broker'];
}

// ---------------------------------------------------------------------------------------------
// 1. Runner overhead per step

function logProcedure(steps: number): Procedure {
  const doc = { id: 'bench-log', name: 'bench: log steps', steps: Array.from({ length: steps }, (_, i) => ({ id: `s${i}`, type: 'log', message: `step ${i}` })) };
  const v = validateProcedureText(stringify(doc), 'bench-log.yaml', 'bench-log');
  if (!v.procedure) throw new Error(`maintenance bench: the log procedure is invalid: ${JSON.stringify(v.problems)}`);
  return v.procedure;
}

async function overheadPhase(runs: number, steps: number, log: (s: string) => void): Promise<MaintenancePhase['overhead']> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-maint-run-'));
  const db = openDatabase(join(dir, 'agent.db'), { migrations: [MAINTENANCE_MIGRATIONS] });
  const dest = pino.destination({ dest: join(dir, 'agent.log'), sync: true });
  const logger = createLogger({ destination: dest });
  const out: MaintenancePhase['overhead'] = { runnerMsPerStep: [], loopMsPerStep: [], steps };
  try {
    const store = new RunStore(db);
    const runner = new Runner({ store, clock: systemClock, logger, actions: {}, metrics: async () => ({}), snapshot: async () => ({}), event: () => undefined });
    const procedure = logProcedure(steps);
    const viaRunner = async (i: number): Promise<number> => {
      const t0 = performance.now();
      const end = await runner.run(
        { runId: `bench-${i}`, procedure, definitionSha256: '0'.repeat(64), file: 'bench-log.yaml', params: {}, dryRun: false, trigger: 'bench', startedBy: 'bench' },
        { signal: new AbortController().signal, progress: () => undefined },
      );
      const ms = performance.now() - t0;
      if (end.state !== 'succeeded') throw new Error(`maintenance bench: the log procedure ended ${end.state}: ${JSON.stringify(end.report).slice(0, 500)}`);
      return ms / steps;
    };
    // The runner's own per-step log call (runner.ts execute, case 'log'), in a plain loop.
    const plain = async (i: number): Promise<number> => {
      const t0 = performance.now();
      for (const s of procedure.steps) {
        if (s.type !== 'log') continue;
        logger.child({ run: `plain-${i}`, procedure: procedure.id, step: s.id }).info({ message: s.message }, 'procedure log step');
        await Promise.resolve();
      }
      return (performance.now() - t0) / steps;
    };
    await viaRunner(-1);
    await plain(-1);
    for (let i = 0; i < runs; i++) {
      const first = i % 2 === 0;
      const a = first ? await viaRunner(i) : await plain(i);
      const b = first ? await plain(i) : await viaRunner(i);
      out.runnerMsPerStep.push(first ? a : b);
      out.loopMsPerStep.push(first ? b : a);
      log(`maintenance overhead run ${i + 1}/${runs}: runner ${out.runnerMsPerStep.at(-1)!.toFixed(3)} ms/step, plain loop ${out.loopMsPerStep.at(-1)!.toFixed(3)} ms/step (load ${loadavg()[0]!.toFixed(2)})`);
    }
  } finally {
    db.close();
    dest.flushSync();
    dest.end();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
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

function procedureYaml(): string {
  return stringify({
    id: 'bench-store',
    name: 'bench: give free pages back, then back the store up',
    maxDurationSec: 240,
    steps: [
      { id: 'optimize', type: 'action', action: 'store-optimize', with: { vacuum: 'incremental' }, timeoutSec: 200 },
      { id: 'backup', type: 'action', action: 'store-backup', timeoutSec: 200 },
    ],
  });
}

/** ~`mb` MB store at `path` (created as the agent creates it), `keepPct` of it still in use. */
function bigStore(path: string, mb: number, keepPct: number): void {
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

const fileMB = (p: string): number => statSync(p).size / MB;

interface Ctx {
  socket: string;
  agentPid: number;
  rec: PlcRecorder;
  intervalMs: number;
}

/** Measures from now until `until` resolves: status answers every 50 ms, CPU of the tree, cycle gaps. */
async function measure(ctx: Ctx, until: Promise<unknown>): Promise<WindowFigures> {
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

interface Gateway {
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
async function stopDetachedBridge(bridgeSocket: string, log: (s: string) => void): Promise<void> {
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
async function startGateway(
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
        await client.publishAsync(`edge/${GW}/cmd/maintenance`, JSON.stringify({ id, params }), { qos: 1 });
        return Promise.race([ended, sleep(timeoutMs).then((): Record<string, unknown> => ({ status: 'bench-timeout' }))]);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const windowLine = (w: WindowFigures): string =>
  `largest cycle gap ${w.maxGapIntervals.toFixed(2)} intervals, status p50 ${w.statusP50.toFixed(1)} p99 ${w.statusP99.toFixed(1)} max ${w.statusMax.toFixed(1)} ms (${w.statusAsked} asked, ${w.statusFailed} failed), CPU ${w.cpuPct.toFixed(1)} %, peak RSS ${w.rssPeakMB.toFixed(0)} MB, event-loop lag p99 ${w.lagP99.toFixed(0)} max ${w.lagMax.toFixed(0)} ms, load ${w.load1.toFixed(2)}`;

async function storePhase(opts: MaintenanceBenchOptions, broker: BenchBroker, log: (s: string) => void): Promise<MaintenancePhase['store']> {
  const devices = opts.quick ? 2 : 4;
  const tagsPer = opts.quick ? 100 : 500;
  const intervalMs = 100;
  const storeMB = opts.quick ? 40 : 200;
  let dbPath = '';
  let before = 0;
  const gw = await startGateway(
    {
      broker,
      devices,
      tagsPer,
      intervalMs,
      procedures: { 'bench-store': procedureYaml() },
      prepare: (dataDir) => {
        dbPath = join(dataDir, 'agent.db');
        log(`maintenance: making a ${storeMB} MB store, 80 % of it free pages`);
        bigStore(dbPath, storeMB, 20);
        before = fileMB(dbPath);
      },
    },
    log,
  );
  try {
    const { ctx, rec } = gw;
    rec.clear();
    log(`maintenance: store ${before.toFixed(0)} MB; running store-optimize + store-backup while the bridge polls ${devices * tagsPer} tags every ${intervalMs} ms`);
    const bounded = gw.send('bench-store-1', { procedure: 'bench-store', force: true }, 300_000);
    const run = await measure(ctx, bounded);
    const res = await bounded;
    const steps = (res.result as { steps?: { id: string; outcome: string; elapsedMs?: number; message?: string }[] } | undefined)?.steps ?? [];
    const stepMs: Record<string, number> = {};
    for (const s of steps) if (s.elapsedMs !== undefined) stepMs[s.id] = s.elapsedMs;
    for (const s of steps) log(`maintenance: step ${s.id}: ${s.outcome}, ${String(s.elapsedMs)} ms: ${s.message ?? ''}`);
    log(`maintenance: the procedure ended ${String(res.status)} in ${(run.ms / 1000).toFixed(1)} s: ${steps.map((s) => `${s.id} ${s.outcome}`).join(', ')}`);
    if (res.status !== 'successful') log(`maintenance: its answer: ${JSON.stringify(res).slice(0, 2000)}`);
    await sleep(2000);
    rec.clear();
    const idleMs = Math.min(60_000, Math.max(5000, run.ms));
    const idle = await measure(ctx, sleep(idleMs));
    const bstatus = (await adminRequest(gw.bridgeSocket, 'status', {}, 5000).catch(() => undefined)) as { groups?: Record<string, { overruns: number }> } | undefined;
    const overruns = Object.values(bstatus?.groups ?? {}).reduce((s, g) => s + g.overruns, 0);
    log(`maintenance: during the run: ${windowLine(run)}`);
    log(`maintenance: no procedure:  ${windowLine(idle)}`);
    if (run.slow.length > 0) log(`maintenance: status answers over 100 ms during the run: ${run.slow.join('; ')}`);
    if (idle.slow.length > 0) log(`maintenance: status answers over 100 ms with no procedure: ${idle.slow.join('; ')}`);
    return {
      run,
      idle,
      storeMB: before,
      freeMB: before * 0.8,
      afterMB: fileMB(dbPath),
      tags: devices * tagsPer,
      intervalMs,
      outcome: String(res.status),
      stepMs,
      overruns,
    };
  } finally {
    await gw.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 3. The built-in procedures on a realistic data directory

const BUILTIN = ['maintenance-daily', 'maintenance-weekly', 'maintenance-monthly', 'diagnostic-full'] as const;

export interface BuiltinRun {
  procedure: string;
  outcome: string;
  run: WindowFigures;
  idle: WindowFigures;
  steps: Record<string, number>;
}

/**
 * 30 days of health history as the agent keeps it (health/history.ts): a sample every 10 s for
 * the last day (raw), every minute for the week before, every hour before that; ~20 metrics.
 */
function healthHistory(path: string, now: number): number {
  const db = openDatabase(path, { migrations: [HEALTH_MIGRATIONS] });
  let samples = 0;
  try {
    const h = new HealthHistory({ db, retention: { rawHours: 24, minuteDays: 7, hourDays: 90 } });
    const metrics = (t: number): Record<string, number> => {
      const day = (now - t) / 86_400_000;
      const wave = Math.sin(t / 3_600_000);
      return {
        'cpu.pct': 12 + 5 * wave,
        'mem.usedPct': 40 + day / 10,
        'mem.availableMB': 900 - day,
        'agent.rssMB': 70 + (30 - day) / 3,
        'agent.cpuPct': 2 + wave,
        'agent.loopLagMs': 3 + Math.abs(wave) * 4,
        'bridge.rssMB': 55 + wave,
        'bridge.cpuPct': 6 + wave,
        'bridge.up': 1,
        'bridge.storeDepth': 0,
        'bridge.mqttConnected': 1,
        'plc.plc0.up': 1,
        'plc.plc0.lastGoodAgeMs': 100,
        'plc.plc1.up': 1,
        'plc.plc1.lastGoodAgeMs': 100,
        'outbox.depth': 0,
        'broker.connected': 1,
        'broker.rttMs': 2,
        'disk.data.usedPct': 30 + (30 - day) / 10,
        'disk.data.freeMB': 7000 - (30 - day) * 20,
        'disk.data.inodesUsedPct': 5,
        'health.sampleMs': 4,
      };
    };
    const add = (from: number, to: number, step: number): void => {
      for (let t = from; t < to; t += step) {
        h.record(t, metrics(t));
        samples++;
      }
      h.flush(now);
    };
    add(now - 30 * 86_400_000, now - 7 * 86_400_000, 3_600_000);
    for (let d = 7; d > 1; d--) add(now - d * 86_400_000, now - (d - 1) * 86_400_000, 60_000);
    for (let hr = 24; hr > 0; hr--) add(now - hr * 3_600_000, now - (hr - 1) * 3_600_000, 10_000);
  } finally {
    db.close();
  }
  return samples;
}

/** A data directory as a gateway has it after a month: the store, the log ring full, the history. */
function realisticDataDir(dataDir: string, storeMB: number, ring: { maxBytes: number; files: number }, log: (s: string) => void): void {
  const dbPath = join(dataDir, 'agent.db');
  log(`maintenance: making a ${storeMB} MB store in use, 30 days of health history and a full log ring`);
  bigStore(dbPath, storeMB, 100);
  const samples = healthHistory(dbPath, Date.now());
  const logs = join(dataDir, 'logs');
  mkdirSync(logs, { recursive: true });
  const line = `${JSON.stringify({ level: 30, time: Date.now(), component: 'bench', msg: 'a line of the log ring, as long as a real one of the agent usually is' })}\n`;
  for (let i = 1; i < ring.files; i++) writeFileSync(join(logs, `agent.log.${i}`), line.repeat(Math.floor(ring.maxBytes / line.length)));
  log(`maintenance: store ${fileMB(dbPath).toFixed(0)} MB with ${samples} health samples`);
}

async function builtinPhase(opts: MaintenanceBenchOptions, broker: BenchBroker, log: (s: string) => void): Promise<{ runs: BuiltinRun[]; storeMB: number; tags: number; intervalMs: number }> {
  const devices = opts.quick ? 2 : 4;
  const tagsPer = opts.quick ? 100 : 500;
  const intervalMs = 100;
  const storeMB = opts.quick ? 40 : 200;
  const ring = { maxBytes: 4 * MB, files: 2 };
  let dbMB = 0;
  const gw = await startGateway(
    {
      broker,
      devices,
      tagsPer,
      intervalMs,
      procedures: {},
      agentConfig: { diag: { logRing: ring } },
      prepare: (dataDir) => {
        realisticDataDir(dataDir, storeMB, ring, log);
        dbMB = fileMB(join(dataDir, 'agent.db'));
      },
    },
    log,
  );
  const runs: BuiltinRun[] = [];
  try {
    for (const procedure of BUILTIN) {
      gw.rec.clear();
      // The weekly one is disruptive: outside a window only with force (as an operator would run it).
      const bounded = gw.send(`bench-${procedure}`, { procedure, force: true }, 600_000);
      const run = await measure(gw.ctx, bounded);
      const res = await bounded;
      const report = res.result as { state?: string; steps?: { id: string; outcome: string; elapsedMs?: number; message?: string; startedAt?: string }[] } | undefined;
      const steps: Record<string, number> = {};
      for (const s of report?.steps ?? []) if (s.elapsedMs !== undefined) steps[s.id] = s.elapsedMs;
      for (const s of report?.steps ?? []) log(`maintenance: ${procedure}: ${s.id}: ${s.outcome}, ${String(s.elapsedMs)} ms: ${(s.message ?? '').slice(0, 200)}`);
      await sleep(2000);
      gw.rec.clear();
      const idle = await measure(gw.ctx, sleep(Math.min(60_000, Math.max(5000, run.ms))));
      const outcome = report?.state ?? String(res.status);
      log(`maintenance: ${procedure} ended ${outcome} in ${(run.ms / 1000).toFixed(1)} s`);
      log(`maintenance:   during the run: ${windowLine(run)}`);
      log(`maintenance:   idle after it:  ${windowLine(idle)}`);
      if (run.gaps.length > 0 || run.seqGaps > 0) {
        // Where the bridge fell behind, against when each step started: which step it was.
        log(`maintenance:   seq gaps ${run.seqGaps} live, ${run.seqGapsWithReplay} with the replayed messages counted; cycles over one interval apart: ${run.gaps.map((g) => `${g[0]} ${g[1]} -> ${g[2]}`).join('; ')}`);
        log(`maintenance:   steps started: ${(report?.steps ?? []).map((s) => `${s.id} ${s.startedAt ?? '?'} (${String(s.elapsedMs)} ms)`).join('; ')}`);
      }
      runs.push({ procedure, outcome, run, idle, steps });
    }
  } finally {
    await gw.stop();
  }
  return { runs, storeMB: dbMB, tags: devices * tagsPer, intervalMs };
}

export async function maintenancePhase(opts: MaintenanceBenchOptions, log: (s: string) => void): Promise<MaintenancePhase> {
  const overhead = await overheadPhase(opts.runs, 100, log);
  const broker = await startBenchBroker(opts.prefer);
  try {
    const store = await storePhase(opts, broker, log);
    const builtin = await builtinPhase(opts, broker, log);
    return { overhead, store, builtin, broker: { kind: broker.kind, version: broker.version, note: broker.kind === 'mosquitto' ? 'real broker (maintenance)' : 'mosquitto is not installed: in-process aedes' } };
  } finally {
    await broker.stop();
  }
}

/** The built-in procedures' figures: wall time, CPU, peak RSS, and the weekly one's poll gap. */
function builtinMeasurements(b: NonNullable<MaintenancePhase['builtin']>): Measurement[] {
  const load = `${b.tags} tags @ ${b.intervalMs} ms, ${b.storeMB.toFixed(0)} MB store, 30 days of health history, a full log ring`;
  const IDLE = 'the same gateway idle (no procedure), a window of the same length (5-60 s) right after';
  return b.runs.flatMap((r) => {
    const declared = (parse(readFileSync(join(shippedProceduresDir(), `${r.procedure}.yaml`), 'utf8')) as { estimatedDurationSec?: number }).estimatedDurationSec ?? NaN;
    const details = { ok: [r.outcome === 'succeeded' ? 1 : 0], load1Run: [r.run.load1], load1Idle: [r.idle.load1], statusP99: [r.run.statusP99], refStatusP99: [r.idle.statusP99], ...Object.fromEntries(Object.entries(r.steps).map(([k, v]) => [`${k}Ms`, [v]])) };
    const out = [
      measurement({
        id: `${r.procedure}-wall`,
        title: `${r.procedure}: wall time, ${load}`,
        unit: 's',
        samples: [r.run.ms / 1000],
        reference: { name: 'its declared estimatedDurationSec', samples: [declared] },
        goal: { op: '<=', value: 600 },
        details,
      }),
      measurement({
        id: `${r.procedure}-cpu`,
        title: `${r.procedure}: agent CPU with its children, ${load}`,
        unit: '% of a core',
        samples: [r.run.cpuPct],
        reference: { name: IDLE, samples: [r.idle.cpuPct] },
        goal: { op: '<=', value: 30 },
      }),
      measurement({
        id: `${r.procedure}-rss`,
        title: `${r.procedure}: agent peak RSS, ${load}`,
        unit: 'MB',
        samples: [r.run.rssPeakMB],
        reference: { name: IDLE, samples: [r.idle.rssPeakMB] },
      }),
    ];
    if (r.procedure === 'maintenance-weekly') {
      out.push(
        measurement({
          id: 'maintenance-weekly-poll-gap',
          title: `maintenance-weekly (with its bridge handover): PLC largest cycle gap, ${load}`,
          unit: 'intervals',
          samples: [r.run.maxGapIntervals],
          reference: { name: IDLE, samples: [r.idle.maxGapIntervals] },
          goal: { op: '<=', value: 1 },
          details: { seqGaps: [r.run.seqGaps], seqGapsWithReplay: [r.run.seqGapsWithReplay], refSeqGaps: [r.idle.seqGaps] },
        }),
      );
    }
    return out;
  });
}

export function maintenanceMeasurements(p: MaintenancePhase): Measurement[] {
  return [...storeMeasurements(p), ...(p.builtin ? builtinMeasurements(p.builtin) : [])];
}

function storeMeasurements(p: MaintenancePhase): Measurement[] {
  const s = p.store;
  const load = `${s.tags} tags @ ${s.intervalMs} ms, ${s.storeMB.toFixed(0)} MB store`;
  const REF = 'the same agent and load, no procedure, same length, right after';
  const details = { runMs: [s.run.ms], idleMs: [s.idle.ms], load1Run: [s.run.load1], load1Idle: [s.idle.load1], storeMBAfter: [s.afterMB], overruns: [s.overruns], ok: [s.outcome === 'successful' ? 1 : 0], ...Object.fromEntries(Object.entries(s.stepMs).map(([k, v]) => [`${k}Ms`, [v]])) };
  return [
    measurement({
      id: 'maintenance-step-overhead',
      title: `Runner cost per step, ${p.overhead.steps} log steps (real RunStore)`,
      unit: 'ms',
      samples: p.overhead.runnerMsPerStep,
      reference: { name: 'the same log calls in a plain loop', samples: p.overhead.loopMsPerStep },
      goal: { op: '<=', value: 2 },
    }),
    measurement({
      id: 'maintenance-poll-gap',
      title: `PLC largest cycle gap during store-optimize + store-backup, ${load}`,
      unit: 'intervals',
      samples: [s.run.maxGapIntervals],
      reference: { name: REF, samples: [s.idle.maxGapIntervals] },
      goal: { op: '<=', value: 1 },
      details: { ...details, seqGaps: [s.run.seqGaps], refSeqGaps: [s.idle.seqGaps] },
    }),
    measurement({
      id: 'maintenance-status-p50',
      title: `admin status answer p50 during the procedure, ${load}`,
      unit: 'ms',
      samples: [s.run.statusP50],
      reference: { name: REF, samples: [s.idle.statusP50] },
      details: { asked: [s.run.statusAsked], failed: [s.run.statusFailed] },
    }),
    measurement({
      id: 'maintenance-status-p99',
      title: `admin status answer p99 during the procedure, ${load}`,
      unit: 'ms',
      samples: [s.run.statusP99],
      reference: { name: REF, samples: [s.idle.statusP99] },
      goal: { op: '<=', value: 100 },
      details: { max: [s.run.statusMax], refMax: [s.idle.statusMax], load1Run: [s.run.load1], lagP99: [s.run.lagP99], lagMax: [s.run.lagMax], refLagP99: [s.idle.lagP99], refLagMax: [s.idle.lagMax] },
    }),
    measurement({
      id: 'maintenance-cpu',
      title: `agent CPU with its children during the procedure, ${load}`,
      unit: '% of a core',
      samples: [s.run.cpuPct],
      reference: { name: REF, samples: [s.idle.cpuPct] },
      goal: { op: '<=', value: 30 },
      details,
    }),
  ];
}
