/**
 * The fleet bench (`npm run bench -- --only fleet`, issue 18), on one Mosquitto on 127.0.0.1:
 *
 * - reconnect storm: N simulated gateways (bench/fleet/sim.ts) connected, the broker killed and
 *   started again on the same port; the time until all are online again and the peak connection
 *   attempts per second the broker is offered (counted at the clients, in 1 s windows; the peak of
 *   CONNACKs is a detail: past what this machine can accept it is flat), with the first-reconnect jitter
 *   (the agent's policy since issue 18) against without it (the plain first backoff step), same
 *   run, same fleet size: ratios.
 * - rollout: a fleet of simulated gateways, the rollout driver (bench/fleet/driver.ts) with waves,
 *   an abort threshold with a minimum sample and a shared subscription; the third wave fails on
 *   purpose, the driver must halt there and no gateway past it may get a command; every command
 *   exactly one terminal status at the driver.
 *
 * Bounded in time: each wait has a deadline; the whole phase gives up (and says so) past them.
 * `agents` real agents (bench/fleet/real-agents.ts: own A/B root, own boot guard) join the storm
 * fleet; they always use the jitter (it is their code), so in the plain run they are the same as
 * in the jittered one. They do not take part in the rollout (that would need a signed bundle per
 * wave; the update path is measured in `--only ota`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchConf, canConnect, findMosquitto, freePort, waitFor } from '../broker.js';
import { measurement, type Measurement } from '../report.js';
import { startSimFleet } from './sim.js';
import { runRollout, type RolloutOutcome } from './driver.js';
import { startRealAgents, type RealAgents } from './real-agents.js';

export interface FleetOptions {
  gateways: number;
  rolloutGateways: number;
  runs: number;
  /** Real agents under their boot guards, in the storm fleet. */
  agents: number;
}

interface Storm {
  onlineMs: number;
  peakPerSec: number;
  peakAcceptedPerSec: number;
  simRssMiB: number;
  brokerRssMiB: number;
  agentRssMiB: number;
}

export interface FleetPhase {
  storm: { jitter: Storm[]; plain: Storm[] };
  rollout: RolloutOutcome & { haltSize: number; fleet: number };
  gateways: number;
  agents: number;
}

const BACKOFF = { initialMs: 2000, maxMs: 30_000, factor: 2, jitter: 1 };

/** A mosquitto that can be killed and started again on the same port. */
async function mosquitto(): Promise<{ url: string; start(): Promise<void>; kill(): Promise<void>; rssMiB(): number; dir: string }> {
  const bin = findMosquitto();
  if (!bin) throw new Error('the fleet bench needs mosquitto');
  const dir = mkdtempSync(join(tmpdir(), 'bench-fleet-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, benchConf(port, process.getuid?.() === 0));
  let proc: ChildProcess | undefined;
  const killOnExit = (): void => void proc?.kill('SIGKILL');
  process.on('exit', killOnExit);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    start: async () => {
      proc = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
      await waitFor(() => canConnect(port), 'mosquitto listening', 10_000);
    },
    kill: async () => {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
    rssMiB: () => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc?.pid ?? 0}/status`, 'utf8'));
        return m ? Number(m[1]) / 1024 : NaN;
      } catch {
        return NaN;
      }
    },
  };
}

async function storm(n: number, agents: number, firstJitter: boolean, log: (s: string) => void): Promise<Storm> {
  const b = await mosquitto();
  await b.start();
  let real: RealAgents | undefined;
  const connects: number[] = [];
  const attempts: number[] = [];
  const ids = Array.from({ length: n }, (_, i) => `sim${String(i).padStart(5, '0')}`);
  const fleet = await startSimFleet({ url: b.url, ids, backoff: BACKOFF, firstJitter, failRate: () => 0, delayMs: [0, 0], onConnect: (at) => connects.push(at), onAttempt: (at) => attempts.push(at) });
  try {
    await waitFor(() => fleet.connected() === n, `${n} simulated gateways connected`, 120_000);
    if (agents > 0) {
      real = await startRealAgents(agents, b.url, BACKOFF);
      await waitFor(async () => (await real!.connected()) === agents, `${agents} real agents connected`, 120_000);
    }
    const simRssMiB = process.memoryUsage().rss / 1048576;
    const brokerRssMiB = b.rssMiB();
    const agentRss = (await real?.rssMiB()) ?? [];
    const agentRssMiB = agentRss.length ? agentRss.reduce((x, y) => x + y, 0) / agentRss.length : NaN;
    await b.kill();
    await waitFor(async () => fleet.connected() === 0 && ((await real?.connected()) ?? 0) === 0, 'every gateway saw the broker go', 60_000);
    connects.length = 0;
    attempts.length = 0;
    const t0 = performance.now();
    await b.start();
    await waitFor(async () => fleet.connected() === n && ((await real?.connected()) ?? 0) === agents, `${n + agents} gateways online again`, 180_000);
    const onlineMs = performance.now() - t0;
    // Peak connects in any 1 s window (100 ms steps).
    const peakOf = (xs: number[]): number => {
      let peak = 0;
      for (let at = t0 - 1000; at <= t0 + onlineMs; at += 100) peak = Math.max(peak, xs.filter((c) => c >= at && c < at + 1000).length);
      return peak;
    };
    const peak = peakOf(attempts);
    const accepted = peakOf(connects);
    log(`fleet storm (${firstJitter ? 'first-reconnect jitter' : 'plain first backoff'}): ${n} simulated + ${agents} real online again after ${onlineMs.toFixed(0)} ms, peak ${peak} attempts/s, ${accepted} accepted/s (simulated); sim RSS ${simRssMiB.toFixed(0)} MiB, broker ${brokerRssMiB.toFixed(0)} MiB, each real agent ${agentRssMiB.toFixed(0)} MiB`);
    return { onlineMs, peakPerSec: peak, peakAcceptedPerSec: accepted, simRssMiB, brokerRssMiB, agentRssMiB };
  } finally {
    await real?.stop();
    await fleet.stop();
    await b.kill();
    rmSync(b.dir, { recursive: true, force: true });
  }
}

async function rollout(n: number, log: (s: string) => void): Promise<FleetPhase['rollout']> {
  const b = await mosquitto();
  await b.start();
  const ids = Array.from({ length: n }, (_, i) => `ro${String(i).padStart(5, '0')}`);
  const waves = [0.01, 0.05, 0.25, 1];
  // The third wave's gateways (between 5 % and 25 %) fail half the time: the driver must halt there.
  const bad = new Set(ids.slice(Math.round(0.05 * n), Math.round(0.25 * n)));
  const fleet = await startSimFleet({ url: b.url, ids, backoff: BACKOFF, firstJitter: true, failRate: (id) => (bad.has(id) ? 0.5 : 0), delayMs: [50, 500] });
  try {
    await waitFor(() => fleet.connected() === n, `${n} simulated gateways connected`, 120_000);
    const out = await runRollout({ url: b.url, ids, waves, abortAbove: 0.2, minSample: 20, members: 4, waveTimeoutMs: 60_000 });
    const haltSize = out.haltedAtWave === undefined ? n : Math.round(waves[out.haltedAtWave]! * n);
    log(`fleet rollout: ${out.sent} commands in ${out.wavesSent} waves, halted ${out.halted ? `at wave ${out.haltedAtWave}` : 'never'}, ${fleet.commanded().size} gateways commanded (wave limit ${haltSize}), ${out.terminal} terminal, ${out.doubleTerminal} double, ${out.missingTerminal} missing, ${out.healthEvents} update-health`);
    return { ...out, haltSize, fleet: n };
  } finally {
    await fleet.stop();
    await b.kill();
    rmSync(b.dir, { recursive: true, force: true });
  }
}

export async function fleetPhase(o: FleetOptions, log: (s: string) => void): Promise<FleetPhase> {
  const out: FleetPhase = { storm: { jitter: [], plain: [] }, rollout: undefined as unknown as FleetPhase['rollout'], gateways: o.gateways, agents: o.agents };
  for (let i = 0; i < o.runs; i++) {
    out.storm.plain.push(await storm(o.gateways, o.agents, false, log));
    out.storm.jitter.push(await storm(o.gateways, o.agents, true, log));
  }
  out.rollout = await rollout(o.rolloutGateways, log);
  return out;
}

export function fleetMeasurements(p: FleetPhase): Measurement[] {
  const s = p.storm;
  const details = { peakAcceptedPerSec: s.jitter.map((x) => x.peakAcceptedPerSec), peakAcceptedPlain: s.plain.map((x) => x.peakAcceptedPerSec), simRssMiB: s.jitter.map((x) => x.simRssMiB), brokerRssMiB: s.jitter.map((x) => x.brokerRssMiB), realAgents: [p.agents], agentRssMiB: s.jitter.map((x) => x.agentRssMiB) };
  const r = p.rollout;
  return [
    measurement({
      id: 'fleet-storm-peak',
      title: `broker restart, ${p.gateways} simulated gateways: peak connection attempts/s with the first-reconnect jitter`,
      unit: 'attempts/s',
      samples: s.jitter.map((x) => x.peakPerSec),
      reference: { name: 'the same fleet, plain first backoff step', samples: s.plain.map((x) => x.peakPerSec) },
      goal: { op: '<', value: 1, of: 'ratio' },
      details,
    }),
    measurement({
      id: 'fleet-storm-online',
      title: `broker restart, ${p.gateways} simulated + ${p.agents} real gateways: time until all are online again, with the jitter`,
      unit: 'ms',
      samples: s.jitter.map((x) => x.onlineMs),
      reference: { name: 'the same fleet, plain first backoff step', samples: s.plain.map((x) => x.onlineMs) },
      details,
    }),
    measurement({
      id: 'fleet-rollout-halt',
      title: `rollout to ${r.fleet} simulated gateways, the third of 4 waves failing: gateways commanded (halted at wave ${r.haltedAtWave === undefined ? 'none' : String(r.haltedAtWave + 1)}, ${r.doubleTerminal + r.missingTerminal} commands without exactly one terminal)`,
      unit: 'gateways',
      samples: [r.commandedIds.size],
      reference: { name: 'gateways up to the halted wave', samples: [r.haltSize] },
      goal: { op: '<=', value: 1, of: 'ratio' },
      details: { sent: [r.sent], terminal: [r.terminal], failed: [r.failed], double: [r.doubleTerminal], missing: [r.missingTerminal], updateHealth: [r.healthEvents], durationMs: [r.durationMs] },
    }),
  ];
}
