/**
 * `--only maintenance`, part 3: each built-in procedure (maintenance-daily, -weekly, -monthly,
 * diagnostic-full) on a realistic data directory (a 200 MB store in use, 30 days of health
 * history as the agent keeps it, a full log ring) while the PLC bridge polls: wall time, CPU of
 * the agent with its children, peak RSS, each against the same gateway idle right after, and
 * the bridge's largest cycle gap through the weekly one (its handover included). bench/README.md
 * lists the measurements.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { openDatabase } from '../lib/sqlite.js';
import { HEALTH_MIGRATIONS, HealthHistory } from '../health/history.js';
import { shippedProceduresDir } from '../maintenance/catalog.js';
import type { BenchBroker } from './broker.js';
import { sleep } from './proc.js';
import { measurement, type Measurement } from './report.js';
import { bigStore, fileMB, MB, measure, startGateway, windowLine, type WindowFigures } from './maintenance-gateway.js';

export interface BuiltinBenchOptions {
  quick: boolean;
}

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

export async function builtinPhase(opts: BuiltinBenchOptions, broker: BenchBroker, log: (s: string) => void): Promise<{ runs: BuiltinRun[]; storeMB: number; tags: number; intervalMs: number }> {
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

/** Their figures: wall time, CPU, peak RSS, and the weekly one's poll gap. */
export function builtinMeasurements(b: Awaited<ReturnType<typeof builtinPhase>>): Measurement[] {
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
