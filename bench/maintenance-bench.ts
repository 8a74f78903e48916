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
 *   3. The built-in procedures on a realistic data directory (maintenance-builtin-bench.ts).
 * The gateway and a window's figures: maintenance-gateway.ts. Everything on 127.0.0.1; every wait is bounded (the procedure by its maxDurationSec).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { openDatabase } from '../lib/sqlite.js';
import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { adminRequest } from '../core/admin.js';
import { MAINTENANCE_MIGRATIONS, RunStore } from '../maintenance/run-store.js';
import { Runner } from '../maintenance/runner.js';
import { validateProcedureText } from '../maintenance/validate.js';
import type { Procedure } from '../maintenance/schema.js';
import { startBenchBroker, type BenchBroker } from './broker.js';
import { sleep } from './proc.js';
import { measurement, type BenchResults, type Measurement } from './report.js';
import { bigStore, fileMB, measure, startGateway, windowLine, type WindowFigures } from './maintenance-gateway.js';
import { builtinMeasurements, builtinPhase } from './maintenance-builtin-bench.js';

export type { WindowFigures } from './maintenance-gateway.js';

export interface MaintenanceBenchOptions {
  quick: boolean;
  runs: number;
  prefer: 'mosquitto' | 'aedes' | undefined;
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
