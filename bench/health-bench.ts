/**
 * The health sampler's overhead: CPU of an agent with health on (sampling at the default
 * `health.sampleIntervalMs`, history, alerts, ~/health) next to an agent with `health.enabled:
 * false`, both running at the same time against the same broker, so the machine's load falls on
 * both alike. Goal: at most 1 % of one core more than the reference.
 *
 * One run: spawn both agents (deployed Node flags, their own config and data dir), wait until
 * both are connected, let start-up settle, then read utime+stime from /proc/PID/stat (USER_HZ
 * ticks) at the start and end of the window. Details: each agent's RSS at the end and the
 * sampler's own wall time per sample (`health.sampleMs` from the agent's status).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { rpcRequest } from '../lib/rpc.js';
import { parsePidStatTicks } from '../health/procfs.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DEPLOYED_NODE_FLAGS, DIST, rssOf, sleep, spawnNode, type NodeChild } from './proc.js';
import { median, measurement, type BenchResults, type Measurement } from './report.js';

const USER_HZ = 100;
const SETTLE_MS = 3000;
const MB = 1024 * 1024;

export interface HealthRun {
  onCpuPct: number;
  offCpuPct: number;
  onRssMB: number;
  offRssMB: number;
  sampleMs: number;
}

interface Subject {
  child: NodeChild;
  dir: string;
  socket: string;
}

function ticks(pid: number): number {
  const t = parsePidStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  if (t === undefined) throw new Error(`cannot read the CPU time of pid ${pid}`);
  return t;
}

function spawnAgent(broker: BenchBroker, tag: string, health: boolean): Subject {
  const dir = mkdtempSync(join(tmpdir(), 'bench-health-'));
  const conf = join(dir, 'config.yaml');
  const dataDir = join(dir, 'data');
  writeFileSync(
    conf,
    stringify({
      gatewayId: `bench-health-${process.pid}-${tag}`,
      dataDir,
      mqtt: { url: broker.url, protocolVersion: broker.protocolVersion },
      ota: { root: join(dir, 'ota') },
      health: { enabled: health },
    }),
  );
  const child = spawnNode(join(DIST, 'agent', 'cli', 'index.js'), ['run', '--config', conf], DEPLOYED_NODE_FLAGS);
  return { child, dir, socket: join(dataDir, 'agent.sock') };
}

async function status(s: Subject): Promise<Record<string, unknown> | undefined> {
  return (await rpcRequest(s.socket, 'status', {}, 3000).catch(() => undefined)) as Record<string, unknown> | undefined;
}

async function connected(s: Subject): Promise<void> {
  await waitFor(
    async () => {
      if (s.child.hasExited()) throw new Error(`agent exited\n${s.child.tail()}`);
      return ((await status(s))?.broker as { connected?: boolean } | undefined)?.connected === true;
    },
    'the agent connected to the broker',
    30_000,
  );
}

async function healthRun(broker: BenchBroker, i: number, windowMs: number): Promise<HealthRun> {
  const on = spawnAgent(broker, `on-${i}`, true);
  const off = spawnAgent(broker, `off-${i}`, false);
  try {
    await Promise.all([connected(on), connected(off)]);
    await sleep(SETTLE_MS);
    const t0 = Date.now();
    const a0 = ticks(on.child.pid);
    const b0 = ticks(off.child.pid);
    await sleep(windowMs);
    const a1 = ticks(on.child.pid);
    const b1 = ticks(off.child.pid);
    const secs = (Date.now() - t0) / 1000;
    const pct = (d: number): number => (d / USER_HZ / secs) * 100;
    const snap = (await status(on))?.health as { metrics?: Record<string, number> } | undefined;
    return {
      onCpuPct: pct(a1 - a0),
      offCpuPct: pct(b1 - b0),
      onRssMB: rssOf(on.child.pid).total / MB,
      offRssMB: rssOf(off.child.pid).total / MB,
      sampleMs: snap?.metrics?.['health.sampleMs'] ?? NaN,
    };
  } finally {
    await Promise.all([on.child.stop(), off.child.stop()]);
    rmSync(on.dir, { recursive: true, force: true });
    rmSync(off.dir, { recursive: true, force: true });
  }
}

export async function healthPhase(
  opts: { runs: number; windowMs: number; prefer: 'mosquitto' | 'aedes' | undefined },
  log: (s: string) => void,
): Promise<{ runs: HealthRun[]; windowMs: number; broker: BenchResults['broker'] }> {
  const broker = await startBenchBroker(opts.prefer);
  const note = broker.kind === 'mosquitto' ? 'real broker' : 'mosquitto is not installed: in-process aedes';
  log(`health: broker ${broker.version}; ${opts.runs} run(s) of ${opts.windowMs / 1000} s, agents with and without health side by side`);
  const runs: HealthRun[] = [];
  try {
    for (let i = 0; i < opts.runs; i++) {
      const r = await healthRun(broker, i, opts.windowMs);
      runs.push(r);
      log(`health run ${i + 1}/${opts.runs}: CPU ${r.onCpuPct.toFixed(2)} % on vs ${r.offCpuPct.toFixed(2)} % off; RSS ${r.onRssMB.toFixed(1)} vs ${r.offRssMB.toFixed(1)} MB; sample ${r.sampleMs} ms`);
    }
  } finally {
    await broker.stop();
  }
  return { runs, windowMs: opts.windowMs, broker: { kind: broker.kind, version: broker.version, note } };
}

export function healthMeasurements(h: { runs: HealthRun[]; windowMs: number }): Measurement[] {
  const off = h.runs.map((r) => r.offCpuPct);
  return [
    measurement({
      id: 'health-cpu',
      title: `Agent CPU, health sampling on (default interval, ${h.windowMs / 1000} s)`,
      unit: '% of a core',
      samples: h.runs.map((r) => r.onCpuPct),
      reference: { name: 'the same agent, health.enabled false, same time', samples: off },
      // "At most 1 % of one core more": the bound moves with the reference measured in this run.
      goal: { op: '<=', value: median(off) + 1 },
      details: {
        overheadPctOfCore: h.runs.map((r) => r.onCpuPct - r.offCpuPct),
        sampleMs: h.runs.map((r) => r.sampleMs),
        rssOnMB: h.runs.map((r) => r.onRssMB),
        rssOffMB: h.runs.map((r) => r.offRssMB),
      },
    }),
  ];
}
