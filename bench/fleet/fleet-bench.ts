/**
 * The fleet bench (`npm run bench -- --only fleet`, issue 18), on Mosquitto on 127.0.0.1. The
 * simulated gateways (bench/fleet/sim.ts) run in forked children (sim-child.ts) so their CPU and
 * memory are theirs; the real agents (real-agents.ts) each in an A/B root under a boot guard; the
 * WMS side (driver.ts) in this process. Scenarios:
 *
 * - storm: `gateways` simulated + `agents` real gateways connected, the broker killed (-9) and
 *   started again on the same port; time until all are online again (simulated: their CONNACK;
 *   real: `status` on the admin socket), and connections per second counted by the broker (its
 *   log, `log_type notice` with epoch-second timestamps: "New connection from" = TCP accepts,
 *   "New client connected" = CONNECTs accepted). The simulated fleet alternates between the
 *   first-reconnect jitter (the agent's policy since issue 18) and the plain first backoff step,
 *   `runs` times each, on the same broker, fleet and agents, alternating which goes first. The real
 *   agents always use the jitter (it is their code).
 * - retained: `commands` commands on that fleet (10 per real agent, the rest spread over the
 *   simulated gateways, half of them on MQTT 5 with a message expiry, half on 3.1.1 clearing their
 *   results when they forget them), each with exactly one terminal status at the driver; then the
 *   retained results a fresh subscriber to `edge/+/res/+` receives, and the broker's own
 *   `$SYS/broker/retained messages/count`, right after and after expiry / clearing.
 * - rollout: a signed bundle (1.1.0 of this build, signed by a CA made for the run that the real
 *   agents' `ota.trustAnchors` name) served over HTTP on 127.0.0.1 (bytes counted), to the real
 *   agents (all in the first wave, their installs started `INSTALL_STAGGER_MS` apart with
 *   `notBefore`) and `rolloutGateways` simulated gateways, on the same broker; the driver's waves
 *   with an abort threshold and a minimum sample, the third wave (simulated) failing half the time:
 *   the driver must halt there, no gateway past it (real or simulated) may receive a command, every
 *   command exactly one terminal status, every real agent committed the new version (its `status`
 *   and slots.json) and sent `update-health`. Each real agent's install time and the CPU and RSS of
 *   the agent processes under its guard during it (treeSampler: old and new process).
 * - capacity: fleets of growing size (`capacity`), one command each: the largest whose every
 *   command is answered; the first that fails says what limits it.
 *
 * CPU (% of one core) and the largest RSS per process kind in every scenario. Every wait has a
 * deadline. Broker, children, guards and agents are killed at the end, on failure, on SIGINT or
 * SIGTERM, and at exit.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import mqtt from 'mqtt';
import { canConnect, findMosquitto, freePort, waitFor } from '../broker.js';
import { DIST } from '../proc.js';
import { measurement, median, type Measurement } from '../report.js';
import { connectWms, runCommands, runRollout, type RolloutOutcome, type TerminalCheck } from './driver.js';
import { startRealAgents, type RealAgents } from './real-agents.js';
import type { SimChildOp, SimChildStart } from './sim-child.js';
import { formatUsage, treeSampler, usageWindow, type Usage } from './usage.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { makeRelease, serveBundles } from '../../test/helpers/ota-root.js';

export interface FleetOptions {
  gateways: number;
  agents: number;
  rolloutGateways: number;
  /** Storm runs per mode. */
  runs: number;
  /** Commands of the retained scenario. */
  commands: number;
  /** Message expiry of the results (MQTT 5) and forget delay (3.1.1) in the retained scenario. */
  resultExpirySec: number;
  /** Fleet sizes of the capacity scenario, ascending ([]: skipped). */
  capacity: number[];
}

export interface Storm {
  jitter: boolean;
  onlineMs: number;
  /** Broker log, per epoch second: the largest count of CONNECTs accepted / TCP connections accepted. */
  brokerPeakConnects: number;
  brokerPeakAccepts: number;
  /** Client side: the largest count of the simulated gateways' attempts in a 1 s window. */
  clientPeakAttempts: number;
  /** Seconds with at least one CONNECT accepted. */
  brokerSeconds: number;
  usage: Usage;
}

export interface Retained {
  check: TerminalCheck & { durationMs: number };
  /** Retained results a fresh subscriber to edge/+/res/+ receives, by kind. */
  after: Record<string, number>;
  expired: Record<string, number>;
  /** $SYS/broker/retained messages/count: before the commands, after them, after expiry. */
  sys: { before: number; after: number; expired: number };
  usage: Usage;
}

export interface CapacityStep {
  size: number;
  connected: number;
  connectMs: number;
  check: (TerminalCheck & { durationMs: number }) | undefined;
  ok: boolean;
  error?: string;
  usage: Usage;
}

export interface FleetPhase {
  gateways: number;
  agents: number;
  idle: Usage;
  storms: Storm[];
  retained: Retained;
  rollout: RolloutOutcome & {
    fleet: number;
    simulated: number;
    /** Gateways that got a command (simulated: say so; real: answered it at the driver). */
    received: number;
    startedPastHalt: number;
    usage: Usage;
    real: { installs: RealInstall[]; committed: number; startMs: number[]; bytesServed: number; bundleBytes: number };
  };
  capacity: CapacityStep[];
}

const BACKOFF = { initialMs: 2000, maxMs: 30_000, factor: 2, jitter: 1 };
/** Simulated gateways per child process. */
const PER_CHILD = 10_000;

/** Sync killers for 'exit' and signals. */
const killers = new Set<() => void>();
const killAll = (): void => {
  for (const k of killers) k();
  killers.clear();
};

interface Broker {
  url: string;
  pid(): number;
  start(): Promise<void>;
  kill(): Promise<void>;
  logSize(): number;
  /** Lines of the log from a byte offset. */
  logFrom(offset: number): string[];
  close(): Promise<void>;
}

/** A mosquitto that can be killed and started again on the same port, logging connections with epoch-second stamps. */
async function mosquitto(): Promise<Broker> {
  const bin = findMosquitto();
  if (!bin) throw new Error('the fleet bench needs mosquitto');
  const dir = mkdtempSync(join(tmpdir(), 'bench-fleet-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const log = join(dir, 'mosquitto.log');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'max_queued_messages 200000',
      'max_inflight_messages 0',
      `log_dest file ${log}`,
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_timestamp true',
      'log_timestamp_format %s',
      'sys_interval 1',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n'),
  );
  let proc: ChildProcess | undefined;
  const killer = (): void => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  killers.add(killer);
  const kill = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  };
  const size = (): number => {
    try {
      return statSync(log).size;
    } catch {
      return 0;
    }
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: () => proc?.pid ?? 0,
    start: async () => {
      proc = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
      await waitFor(() => canConnect(port), 'mosquitto listening', 10_000);
    },
    kill,
    logSize: size,
    logFrom: (offset) => {
      try {
        return readFileSync(log).subarray(offset).toString('utf8').split('\n');
      } catch {
        return [];
      }
    },
    close: async () => {
      await kill();
      killers.delete(killer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface SimProc {
  pid: number;
  req<T>(op: SimChildOp, arg?: unknown): Promise<T>;
  stop(): Promise<void>;
}

function forkSim(): SimProc {
  const child = fork(join(DIST, 'bench', 'fleet', 'sim-child.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let seq = 0;
  child.on('message', (m: { seq: number; value?: unknown; error?: string }) => {
    const w = waiting.get(m.seq);
    waiting.delete(m.seq);
    if (m.error !== undefined) w?.reject(new Error(m.error));
    else w?.resolve(m.value);
  });
  child.on('exit', (code, signal) => {
    for (const w of waiting.values()) w.reject(new Error(`simulated fleet exited with ${signal ?? code}`));
    waiting.clear();
  });
  const killer = (): void => void child.kill('SIGKILL');
  killers.add(killer);
  return {
    pid: child.pid ?? 0,
    req: <T>(op: SimChildOp, arg?: unknown): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        if (!child.connected) return reject(new Error('simulated fleet gone'));
        const s = ++seq;
        waiting.set(s, { resolve: (v) => resolve(v as T), reject });
        child.send({ seq: s, op, arg }, (err) => {
          if (!err) return;
          waiting.delete(s);
          reject(err);
        });
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await gone;
      }
      killers.delete(killer);
    },
  };
}

/** Simulated fleets over children of at most PER_CHILD gateways each. */
async function startSims(url: string, ids: string[], o: Partial<SimChildStart>): Promise<{ procs: SimProc[]; connected(): Promise<number>; req(op: SimChildOp, arg?: unknown): Promise<unknown[]>; stop(): Promise<void> }> {
  const procs: SimProc[] = [];
  for (let i = 0; i < ids.length; i += PER_CHILD) procs.push(forkSim());
  await Promise.all(
    procs.map((p, k) =>
      p.req('start', { url, ids: ids.slice(k * PER_CHILD, (k + 1) * PER_CHILD), backoff: BACKOFF, firstJitter: true, bad: [], badRate: 0, unhealthy: [], delayMs: [0, 0], v5Every: 2, resultExpirySec: 0, ...o } satisfies SimChildStart),
    ),
  );
  const req = (op: SimChildOp, arg?: unknown): Promise<unknown[]> => Promise.all(procs.map((p) => p.req(op, arg)));
  let stopped = false;
  return {
    procs,
    req,
    connected: async () => ((await req('connected')) as number[]).reduce((a, b) => a + b, 0),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled(procs.map((p) => p.req('stop')));
      for (const p of procs) await p.stop();
    },
  };
}

const simPids = (procs: SimProc[]): Record<string, number> => Object.fromEntries(procs.map((p, i) => [procs.length === 1 ? 'sim' : `sim${i}`, p.pid]));

/** Largest count in any 1 s window (100 ms steps) of epoch-ms times. */
function peakPerSec(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  let peak = 0;
  let j = 0;
  for (let i = 0; i < s.length; i++) {
    while (s[i]! - s[j]! >= 1000) j++;
    peak = Math.max(peak, i - j + 1);
  }
  return peak;
}

/** Per epoch second, how many log lines match. */
function perSecond(lines: string[], re: RegExp): Map<number, number> {
  const out = new Map<number, number>();
  for (const l of lines) {
    const m = /^(\d+): (.*)$/.exec(l);
    if (m && re.test(m[2]!)) out.set(Number(m[1]), (out.get(Number(m[1])) ?? 0) + 1);
  }
  return out;
}

async function storm(b: Broker, sims: Awaited<ReturnType<typeof startSims>>, real: RealAgents | undefined, agents: number, jitter: boolean, log: (s: string) => void): Promise<Storm> {
  const n = (await sims.connected());
  const all = async (): Promise<number> => (await sims.connected()) + ((await real?.connected()) ?? 0);
  await sims.req('jitter', jitter);
  await b.kill();
  await waitFor(async () => (await all()) === 0, 'every gateway saw the broker go', 60_000);
  await sims.req('attempts'); // drop the attempts before the restart
  const offset = b.logSize();
  const t0 = Date.now();
  await b.start();
  const u = usageWindow({ broker: b.pid(), ...simPids(sims.procs), driver: process.pid, ...((await real?.pids()) ?? {}) });
  await waitFor(async () => (await all()) === n + agents, `${n + agents} gateways online again`, 180_000);
  const onlineMs = Date.now() - t0;
  const usage = u.stop();
  const attempts = ((await sims.req('attempts')) as number[][]).flat();
  const lines = b.logFrom(offset);
  const connects = perSecond(lines, /^New client connected from /);
  const accepts = perSecond(lines, /^New connection from /);
  const s: Storm = {
    jitter,
    onlineMs,
    brokerPeakConnects: Math.max(0, ...connects.values()),
    brokerPeakAccepts: Math.max(0, ...accepts.values()),
    clientPeakAttempts: peakPerSec(attempts),
    brokerSeconds: connects.size,
    usage,
  };
  log(`fleet storm (${jitter ? 'first-reconnect jitter' : 'plain first backoff'}): ${n} simulated + ${agents} real online again after ${onlineMs} ms; broker peak ${s.brokerPeakConnects} CONNECTs/s, ${s.brokerPeakAccepts} TCP accepts/s over ${s.brokerSeconds} s; client peak ${s.clientPeakAttempts} attempts/s; ${formatUsage(usage)}`);
  return s;
}

/** Retained messages a fresh subscriber to `filter` receives (non-empty payloads), by kind. */
async function countRetained(url: string, filter: string, kind: (topic: string) => string): Promise<Record<string, number>> {
  const c = await mqtt.connectAsync(url, { clientId: `count-${randomUUID()}`, clean: true, reconnectPeriod: 0, protocolVersion: 5 });
  const out: Record<string, number> = { total: 0 };
  const probe = `edge/probe-${randomUUID()}/res/p`;
  let seen = false;
  c.on('message', (topic, payload, packet) => {
    if (topic === probe) return void (seen = true);
    if (!packet.retain || payload.length === 0) return;
    out.total = (out.total ?? 0) + 1;
    const k = kind(topic);
    out[k] = (out[k] ?? 0) + 1;
  });
  try {
    await c.subscribeAsync(filter, { qos: 1 });
    // Retained messages are queued at the SUBSCRIBE, before this probe.
    await c.publishAsync(probe, 'probe', { qos: 1 });
    await waitFor(() => seen, 'the probe after the retained messages', 60_000);
  } finally {
    await c.endAsync(true);
  }
  return out;
}

/**
 * $SYS/broker/retained messages/count now. Mosquitto publishes it (retained) only when it changed
 * since the last sys_interval (1 s): the retained value a subscriber gets first may be up to 1 s
 * old, so a second value within 3 s is taken; none means it has not changed since, and the first
 * is current.
 */
async function sysRetained(url: string): Promise<number> {
  const c = await mqtt.connectAsync(url, { clientId: `sys-${randomUUID()}`, clean: true, reconnectPeriod: 0 });
  const got: number[] = [];
  c.on('message', (_t, p) => got.push(Number(p.toString())));
  try {
    await c.subscribeAsync('$SYS/broker/retained messages/count', { qos: 0 });
    await waitFor(() => got.length >= 1, '$SYS retained count', 10_000);
    const first = Date.now();
    await waitFor(() => got.length >= 2 || Date.now() - first > 3000, 'a second $SYS retained count', 10_000);
  } finally {
    await c.endAsync(true);
  }
  return got.at(-1)!;
}

async function retainedScenario(b: Broker, sims: Awaited<ReturnType<typeof startSims>>, simIds: string[], real: RealAgents | undefined, o: FleetOptions, log: (s: string) => void): Promise<Retained> {
  const v5 = new Set(simIds.filter((_, i) => i % 2 === 0));
  const kind = (topic: string): string => {
    const gw = topic.split('/')[1] ?? '';
    return gw.startsWith('real') ? 'real' : v5.has(gw) ? 'simV5' : 'simV4';
  };
  const sysBefore = await sysRetained(b.url);
  const cmds: { gw: string; op: string; id: string; params?: Record<string, unknown> }[] = [];
  for (const gw of real?.ids ?? []) for (let i = 0; i < 10; i++) cmds.push({ gw, op: 'cancel', id: `ret-${gw}-${i}`, params: { target: `none-${i}` } });
  for (let i = 0; cmds.length < o.commands; i++) cmds.push({ gw: simIds[i % simIds.length]!, op: 'ping', id: `ret-${i}` });
  const u = usageWindow({ broker: b.pid(), ...simPids(sims.procs), driver: process.pid, ...((await real?.pids()) ?? {}) });
  const w = await connectWms(b.url, 4, 'wms-ret');
  let check: Retained['check'];
  try {
    check = await runCommands(w, cmds, 180_000);
  } finally {
    await w.close();
  }
  const usage = u.stop();
  const doneAt = Date.now();
  const after = await countRetained(b.url, 'edge/+/res/+', kind);
  const sysAfter = await sysRetained(b.url);
  // Past the expiry (MQTT 5) and the forget delay (3.1.1) of the last result, with a margin.
  await new Promise((r) => setTimeout(r, Math.max(0, doneAt + (o.resultExpirySec + 3) * 1000 - Date.now())));
  const expired = await countRetained(b.url, 'edge/+/res/+', kind);
  const sysExpired = await sysRetained(b.url);
  log(`fleet retained: ${check.sent} commands in ${check.durationMs.toFixed(0)} ms, exactly one terminal ${check.exactlyOne}, double ${check.double}, missing ${check.missing}; retained results right after ${JSON.stringify(after)}, after ${o.resultExpirySec} s expiry / clearing ${JSON.stringify(expired)}; $SYS retained count ${sysBefore} before, ${sysAfter} after, ${sysExpired} after expiry; ${formatUsage(usage)}`);
  return { check, after, expired, sys: { before: sysBefore, after: sysAfter, expired: sysExpired }, usage };
}

/** The signed bundle of the rollout: 1.1.0 of this build, signed by a CA the real agents trust, served over HTTP on 127.0.0.1. */
export interface RolloutBundle {
  trustPath: string;
  url: string;
  sha256: string;
  size: number;
  /** Body bytes the server sent, and its requests. */
  sent(): number;
  requests(): number;
  close(): Promise<void>;
}

export async function makeRolloutBundle(): Promise<RolloutBundle> {
  const work = mkdtempSync(join(tmpdir(), 'bench-fleet-bundle-'));
  const killer = (): void => rmSync(work, { recursive: true, force: true });
  killers.add(killer);
  try {
    const ca = createCa({ commonName: 'fleet bench release CA' });
    const signer = issueCert(ca, { commonName: 'fleet bench release signer', kind: 'codeSigning' });
    const trustPath = join(work, 'trust.pem');
    writeFileSync(trustPath, ca.certPem);
    const rel = join(work, 'rel-1.1.0');
    makeRelease(rel, '1.1.0');
    mkdirSync(join(work, 'bundles'));
    const file = join(work, 'bundles', 'v1.1.0.tar');
    await createBundle({ inDir: rel, version: '1.1.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: file });
    rmSync(rel, { recursive: true, force: true });
    const data = readFileSync(file);
    const server = await serveBundles(join(work, 'bundles'));
    return {
      trustPath,
      url: server.url('v1.1.0.tar'),
      sha256: createHash('sha256').update(data).digest('hex'),
      size: data.length,
      sent: () => server.sent('v1.1.0.tar'),
      requests: () => server.requests.length,
      close: async () => {
        await server.close();
        killer();
        killers.delete(killer);
      },
    };
  } catch (err) {
    killer();
    killers.delete(killer);
    throw err;
  }
}

/** Between the staggered starts of the real agents' installs (`notBefore`), ms. */
const INSTALL_STAGGER_MS = 4000;
/** The real agents' OTA settings in the bench: the update-health report 2 s after the commit, a 2 s health gate. */
export const REAL_OTA = { healthReportSec: 2, healthGate: { stableMs: 2000, timeoutMs: 60_000 }, download: { idleTimeoutMs: 30_000, retries: 2 } };

export interface RealInstall {
  id: string;
  status: string | undefined;
  /** The agent's first `executing` past `waiting` (download) -> `successful` at the driver. */
  installMs: number | undefined;
  /** Progress step -> ms from the install's start to its first status with that step, at the driver. */
  stepMs: Record<string, number>;
  healthy: boolean | undefined;
  /** CPU (% of one core) and the largest RSS of the agent processes under its guard (old and new) during its install. */
  usage: { cpuPct: number; rssMiB: number } | undefined;
  /** After the rollout: what the agent says (admin `status`) and its ROOT/slots.json. */
  version: string | undefined;
  slot: string | undefined;
  activeState: string;
  activeVersion: string | undefined;
}

/**
 * The rollout, on the bench's broker: the real agents first (the first wave holds them all, each
 * install's start staggered with `notBefore`), then `n` simulated gateways; the third wave's
 * simulated gateways fail half the time, so the driver must halt there.
 */
async function rolloutScenario(b: Broker, real: RealAgents | undefined, bundle: RolloutBundle | undefined, n: number, log: (s: string) => void): Promise<FleetPhase['rollout']> {
  const simIds = Array.from({ length: n }, (_, i) => `ro${String(i).padStart(5, '0')}`);
  const realIds = real?.ids ?? [];
  const realSet = new Set(realIds);
  const ids = [...realIds, ...simIds];
  const waves = [0.01, 0.05, 0.25, 1];
  if (realIds.length > Math.round(waves[0]! * ids.length)) throw new Error(`${realIds.length} real agents do not fit the first wave of ${Math.round(waves[0]! * ids.length)}`);
  // The third wave's gateways (between 5 % and 25 %) fail half the time: the driver must halt there.
  const bad = ids.slice(Math.round(0.05 * ids.length), Math.round(0.25 * ids.length)).filter((id) => !realSet.has(id));
  const sims = await startSims(b.url, simIds, { bad, badRate: 0.5, delayMs: [50, 500] });
  try {
    await waitFor(async () => (await sims.connected()) === n, `${n} simulated gateways connected`, 120_000);
    const u = usageWindow({ broker: b.pid(), ...simPids(sims.procs), driver: process.pid });
    const tree = real ? treeSampler(real.guardPids()) : undefined;
    const sentBefore = bundle?.sent() ?? 0;
    let out: RolloutOutcome;
    try {
      out = await runRollout({
        url: b.url,
        ids,
        waves,
        abortAbove: 0.2,
        minSample: 20,
        members: 4,
        waveTimeoutMs: 60_000,
        healthTimeoutMs: 30_000,
        ...(bundle ? { bundleUrl: bundle.url } : {}),
        // Real installs one after the other (2 cores): each agent's own notBefore, INSTALL_STAGGER_MS apart.
        params: (gw) => (realSet.has(gw) && bundle ? { notBefore: new Date(Date.now() + INSTALL_STAGGER_MS * realIds.indexOf(gw)).toISOString(), sha256: bundle.sha256, size: bundle.size } : {}),
        slow: { ids: realSet, waveTimeoutMs: INSTALL_STAGGER_MS * realIds.length + 180_000 },
      });
    } finally {
      tree?.stop();
    }
    const usage = u.stop();
    const commanded = ((await sims.req('commanded')) as string[][]).flat();
    // A gateway got the command: a simulated one says so, a real one answered it at the driver.
    const got = new Set([...commanded, ...[...out.seenIds].filter((id) => realSet.has(id))]);
    const startedPastHalt = [...got].filter((id) => !out.allowedIds.has(id)).length;
    const states = (await real?.state()) ?? [];
    const installs: RealInstall[] = realIds.map((id, i) => {
      const p = out.perGateway.get(id);
      const st = states[i]!;
      const installMs = p?.startedAt !== undefined && p.terminalAt !== undefined ? p.terminalAt - p.startedAt : undefined;
      return {
        id,
        status: p?.status,
        installMs,
        // `waiting` (before the start: the staggered notBefore) is not part of the install.
        stepMs: Object.fromEntries(Object.entries(p?.steps ?? {}).flatMap(([k, at]) => (p?.startedAt === undefined || k === 'waiting' ? [] : [[k, at - p.startedAt]]))),
        healthy: p?.healthy,
        usage: p?.startedAt !== undefined && p.terminalAt !== undefined ? tree?.usage(id, p.startedAt, p.terminalAt) : undefined,
        version: st.version,
        slot: st.slot,
        activeState: st.activeState,
        activeVersion: st.activeVersion,
      };
    });
    const committed = installs.filter((x) => x.status === 'successful' && x.version === '1.1.0' && x.activeVersion === '1.1.0' && x.activeState === 'committed').length;
    const bytesServed = (bundle?.sent() ?? 0) - sentBefore;
    log(`fleet rollout: ${out.sent} commands (${realIds.length} real + ${out.sent - realIds.length} simulated) in ${out.wavesSent} waves, halted ${out.halted ? `at wave ${out.haltedAtWave! + 1}` : 'never'}, ${got.size} gateways received an update (${out.allowedIds.size} in the waves sent, ${startedPastHalt} past the halt), ${out.terminal} terminal, ${out.doubleTerminal} double, ${out.missingTerminal} missing, ${out.healthEvents} update-health (${out.unhealthy} unhealthy); ${formatUsage(usage)}`);
    if (realIds.length) {
      const ms = installs.flatMap((x) => (x.installMs === undefined ? [] : [x.installMs]));
      const us = installs.flatMap((x) => (x.usage ? [x.usage] : []));
      const stepNames = [...new Set(installs.flatMap((x) => Object.keys(x.stepMs)))].sort((a, b) => median(installs.flatMap((x) => x.stepMs[a] ?? [])) - median(installs.flatMap((x) => x.stepMs[b] ?? [])));
      const stepLine = stepNames.map((k) => `${k} ${median(installs.flatMap((x) => x.stepMs[k] ?? []))}`).join(', ');
      log(`fleet rollout, real agents: ${committed} of ${realIds.length} committed 1.1.0 (status and slots.json: ${installs.map((x) => `${x.id} ${x.status ?? '-'} ${x.version ?? '?'}/${x.slot ?? '?'} ${x.activeVersion ?? '?'} ${x.activeState}`).join(', ')}); install (download -> successful) median ${ms.length ? median(ms) : NaN} ms, max ${ms.length ? Math.max(...ms) : NaN} ms against a cold start under the guard median ${real ? median(real.startMs) : NaN} ms; each step's first status (median ms after the install's start): ${stepLine}; during its install each agent (old + new process) median/max ${us.length ? median(us.map((x) => x.cpuPct)) : NaN}/${us.length ? Math.max(...us.map((x) => x.cpuPct)) : NaN}% CPU, ${us.length ? median(us.map((x) => x.rssMiB)) : NaN}/${us.length ? Math.max(...us.map((x) => x.rssMiB)) : NaN} MiB; bundle ${bundle?.size ?? 0} bytes, ${bytesServed} bytes served (${bundle ? (bytesServed / bundle.size).toFixed(2) : 0} bundles); update-health ${installs.filter((x) => x.healthy === true).length} healthy`);
    }
    return { ...out, fleet: ids.length, simulated: n, received: got.size, startedPastHalt, usage, real: { installs, committed, startMs: real?.startMs ?? [], bytesServed, bundleBytes: bundle?.size ?? 0 } };
  } finally {
    await sims.stop();
  }
}

async function capacityStep(size: number, log: (s: string) => void): Promise<CapacityStep> {
  const b = await mosquitto();
  await b.start();
  const ids = Array.from({ length: size }, (_, i) => `cap${String(i).padStart(5, '0')}`);
  const t0 = Date.now();
  const sims = await startSims(b.url, ids, {});
  const u = usageWindow({ broker: b.pid(), ...simPids(sims.procs), driver: process.pid });
  const step: CapacityStep = { size, connected: 0, connectMs: 0, check: undefined, ok: false, usage: {} };
  try {
    // Until all are connected, or no progress for 20 s (a limit was hit), at most 3 minutes.
    let best = 0;
    let progressAt = Date.now();
    await waitFor(
      async () => {
        step.connected = await sims.connected();
        if (step.connected > best) [best, progressAt] = [step.connected, Date.now()];
        if (Date.now() - progressAt > 20_000) throw new Error(`stuck at ${best} of ${size} connected for 20 s`);
        return step.connected === size;
      },
      `${size} simulated gateways connected`,
      180_000,
    );
    step.connectMs = Date.now() - t0;
    const w = await connectWms(b.url, 4, 'wms-cap');
    try {
      step.check = await runCommands(w, ids.map((gw, i) => ({ gw, op: 'ping', id: `cap-${i}` })), 120_000);
    } finally {
      await w.close();
    }
    step.ok = step.check.exactlyOne === size;
  } catch (err) {
    step.error = (err as Error).message.split('\n')[0];
  } finally {
    step.usage = u.stop();
    if (!step.ok) {
      // What the broker holds against what it may: open files (proc(5): /proc/PID/fd, limits).
      try {
        const fds = readdirSync(`/proc/${b.pid()}/fd`).length;
        const limit = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${b.pid()}/limits`, 'utf8'))?.[1];
        step.error = `${step.error ?? ''}; broker open files ${fds} of ${limit ?? '?'}`;
      } catch {
        // the broker is gone
      }
    }
    const tail = b.logFrom(Math.max(0, b.logSize() - 4000)).filter((l) => /rror|arning/.test(l)).slice(-3);
    if (tail.length) step.error = `${step.error ?? ''} broker: ${tail.join(' | ')}`;
    await sims.stop();
    await b.close();
  }
  log(`fleet capacity ${size}: ${step.connected} connected in ${step.connectMs} ms, ${step.check ? `${step.check.exactlyOne} of ${size} commands answered exactly once in ${step.check.durationMs.toFixed(0)} ms` : 'no commands'}${step.error ? `; ${step.error}` : ''}; ${formatUsage(step.usage)}`);
  return step;
}

export async function fleetPhase(o: FleetOptions, log: (s: string) => void): Promise<FleetPhase> {
  const onSignal = (): void => {
    killAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('exit', killAll);
  let real: RealAgents | undefined;
  let bundle: RolloutBundle | undefined;
  const b = await mosquitto();
  try {
    await b.start();
    const t0 = Date.now();
    const simIds = Array.from({ length: o.gateways }, (_, i) => `sim${String(i).padStart(5, '0')}`);
    // Half the simulated fleet on MQTT 5 (results with a message expiry), half on 3.1.1 (cleared when forgotten).
    const sims = await startSims(b.url, simIds, { resultExpirySec: o.resultExpirySec, forgetMs: o.resultExpirySec * 1000 });
    try {
      await waitFor(async () => (await sims.connected()) === o.gateways, `${o.gateways} simulated gateways connected`, 120_000);
      log(`fleet: ${o.gateways} simulated gateways connected after ${Date.now() - t0} ms (${PER_CHILD} per process at most)`);
      if (o.agents > 0) {
        bundle = await makeRolloutBundle();
        log(`fleet: the rollout's signed bundle (1.1.0 of this build) ${bundle.size} bytes at ${bundle.url}`);
        const t1 = Date.now();
        real = await startRealAgents(o.agents, b.url, BACKOFF, { resultExpirySec: o.resultExpirySec, ota: { trustAnchors: bundle.trustPath, ...REAL_OTA } });
        killers.add(real.killAll);
        log(`fleet: ${o.agents} real agents under their boot guards started one after the other, all connected after ${Date.now() - t1} ms`);
      }
      // The connected fleet at rest, 10 s.
      const idleWindow = usageWindow({ broker: b.pid(), ...simPids(sims.procs), driver: process.pid, ...((await real?.pids()) ?? {}) });
      await new Promise((r) => setTimeout(r, 10_000));
      const idle = idleWindow.stop();
      log(`fleet idle: ${o.gateways} simulated + ${o.agents} real connected, 10 s: ${formatUsage(idle)}`);
      const storms: Storm[] = [];
      for (let i = 0; i < o.runs; i++) for (const jitter of i % 2 === 0 ? [false, true] : [true, false]) storms.push(await storm(b, sims, real, o.agents, jitter, log));
      const retained = await retainedScenario(b, sims, simIds, real, o, log);
      const out: FleetPhase = { gateways: o.gateways, agents: o.agents, idle, storms, retained, rollout: undefined as unknown as FleetPhase['rollout'], capacity: [] };
      // The rollout on the same broker and real agents; the storm's simulated fleet makes way for the rollout's.
      await sims.stop();
      out.rollout = await rolloutScenario(b, real, bundle, o.rolloutGateways, log);
      await real?.stop();
      if (real) killers.delete(real.killAll);
      real = undefined;
      await bundle?.close();
      bundle = undefined;
      await b.close();
      for (const size of o.capacity) {
        const step = await capacityStep(size, log);
        out.capacity.push(step);
        if (!step.ok) break;
      }
      // Exactly one terminal status per command, at the driver: asserted, after the figures are out.
      const r = out.rollout;
      const problems = [
        retained.check.double + retained.check.missing > 0 ? `${retained.check.double} double / ${retained.check.missing} missing terminal statuses (retained scenario)` : '',
        r.doubleTerminal + r.missingTerminal > 0 ? `${r.doubleTerminal} double / ${r.missingTerminal} missing terminal statuses (rollout)` : '',
        r.startedPastHalt > 0 ? `${r.startedPastHalt} gateways past the halted wave received the update` : '',
        r.real.committed < o.agents ? `${o.agents - r.real.committed} of ${o.agents} real agents did not commit 1.1.0` : '',
        !r.halted ? 'the rollout did not halt at its failing wave' : '',
      ].filter(Boolean);
      if (problems.length) log(`fleet: ASSERTION FAILED: ${problems.join('; ')}`);
      (out as FleetPhase & { problems?: string[] }).problems = problems;
      return out;
    } finally {
      await real?.stop();
      await sims.stop();
      await bundle?.close();
    }
  } finally {
    await b.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', killAll);
    killAll();
  }
}

const spread = (xs: number[]): string => (xs.length ? `${Math.min(...xs)}-${Math.max(...xs)}` : '-');

/** Usage details as arrays of one (the measurement's details are medians of arrays). */
function usageDetails(prefix: string, u: Usage): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const agents = Object.entries(u).filter(([k]) => /^agent\d+$/.test(k)).map(([, v]) => v);
  for (const [k, v] of Object.entries(u)) {
    if (/^(agent|guard)\d+$/.test(k)) continue;
    out[`${prefix}${k}CpuPct`] = [v.cpuPct];
    out[`${prefix}${k}RssMiB`] = [v.rssMiB];
  }
  if (agents.length) {
    out[`${prefix}agentCpuPctMedian`] = [median(agents.map((a) => a.cpuPct))];
    out[`${prefix}agentCpuPctMax`] = [Math.max(...agents.map((a) => a.cpuPct))];
    out[`${prefix}agentRssMiBMedian`] = [median(agents.map((a) => a.rssMiB))];
    out[`${prefix}agentRssMiBMax`] = [Math.max(...agents.map((a) => a.rssMiB))];
  }
  return out;
}

export function fleetMeasurements(p: FleetPhase): Measurement[] {
  const jit = p.storms.filter((s) => s.jitter);
  const plain = p.storms.filter((s) => !s.jitter);
  const midStorm = jit[Math.floor(jit.length / 2)];
  const details = {
    brokerPeakAcceptsJitter: jit.map((s) => s.brokerPeakAccepts),
    brokerPeakAcceptsPlain: plain.map((s) => s.brokerPeakAccepts),
    clientPeakAttemptsJitter: jit.map((s) => s.clientPeakAttempts),
    clientPeakAttemptsPlain: plain.map((s) => s.clientPeakAttempts),
    brokerSecondsJitter: jit.map((s) => s.brokerSeconds),
    brokerSecondsPlain: plain.map((s) => s.brokerSeconds),
    realAgents: [p.agents],
    ...usageDetails('idle.', p.idle),
    ...(midStorm ? usageDetails('storm.', midStorm.usage) : {}),
  };
  const r = p.rollout;
  const ret = p.retained;
  const cap = p.capacity;
  const held = cap.filter((s) => s.ok).map((s) => s.size);
  const ms: Measurement[] = [
    measurement({
      id: 'fleet-storm-peak',
      title: `broker restart, ${p.gateways} simulated + ${p.agents} real gateways: peak CONNECTs/s the broker accepted (its log), with the first-reconnect jitter (runs ${spread(jit.map((s) => s.brokerPeakConnects))}; plain ${spread(plain.map((s) => s.brokerPeakConnects))})`,
      unit: 'connects/s',
      samples: jit.map((s) => s.brokerPeakConnects),
      reference: { name: 'the same fleet, plain first backoff step, same broker and run', samples: plain.map((s) => s.brokerPeakConnects) },
      goal: { op: '<', value: 1, of: 'ratio' },
      details,
    }),
    measurement({
      id: 'fleet-storm-online',
      title: `broker restart, ${p.gateways} simulated + ${p.agents} real gateways: time until all are online again, with the jitter (runs ${spread(jit.map((s) => s.onlineMs))} ms; plain ${spread(plain.map((s) => s.onlineMs))})`,
      unit: 'ms',
      samples: jit.map((s) => s.onlineMs),
      reference: { name: 'the same fleet, plain first backoff step, same broker and run', samples: plain.map((s) => s.onlineMs) },
      details,
    }),
    measurement({
      id: 'fleet-retained-expired',
      title: `retained results on the broker (fresh subscriber to edge/+/res/+) ${ret.check.sent > 0 ? `after ${ret.check.sent} commands` : ''} once expired (MQTT 5) or cleared (3.1.1)`,
      unit: 'messages',
      samples: [ret.expired.total ?? 0],
      reference: { name: 'right after the commands', samples: [ret.after.total ?? 0] },
      goal: { op: '<=', value: 0, of: 'ratio' },
      details: {
        afterSimV5: [ret.after.simV5 ?? 0], afterSimV4: [ret.after.simV4 ?? 0], afterReal: [ret.after.real ?? 0],
        expiredSimV5: [ret.expired.simV5 ?? 0], expiredSimV4: [ret.expired.simV4 ?? 0], expiredReal: [ret.expired.real ?? 0],
        sysBefore: [ret.sys.before], sysAfter: [ret.sys.after], sysExpired: [ret.sys.expired],
        ...usageDetails('retained.', ret.usage),
      },
    }),
    measurement({
      id: 'fleet-terminal-exactly-one',
      title: `commands with exactly one terminal status at the driver (${ret.check.sent} in the retained scenario + ${r.sent} in the rollout; ${ret.check.double + r.doubleTerminal} double, ${ret.check.missing + r.missingTerminal} missing)`,
      unit: 'commands',
      samples: [ret.check.exactlyOne + (r.sent - r.doubleTerminal - r.missingTerminal)],
      reference: { name: 'commands sent', samples: [ret.check.sent + r.sent] },
      goal: { op: '>=', value: 1, of: 'ratio' },
      details: { retainedDurationMs: [ret.check.durationMs] },
    }),
    measurement({
      id: 'fleet-rollout-halt',
      title: `rollout of a signed bundle to ${r.fleet} gateways (${r.fleet - r.simulated} real agents in the first wave, ${r.simulated} simulated), the third of 4 waves failing: gateways that received the update (halted at wave ${r.haltedAtWave === undefined ? 'none' : String(r.haltedAtWave + 1)}, ${r.startedPastHalt} past it)`,
      unit: 'gateways',
      samples: [r.received],
      reference: { name: 'gateways up to the halted wave', samples: [r.allowedIds.size] },
      goal: { op: '<=', value: 1, of: 'ratio' },
      details: { sent: [r.sent], terminal: [r.terminal], failed: [r.failed], double: [r.doubleTerminal], missing: [r.missingTerminal], updateHealth: [r.healthEvents], unhealthy: [r.unhealthy], durationMs: [r.durationMs], startedPastHalt: [r.startedPastHalt], ...usageDetails('rollout.', r.usage) },
    }),
  ];
  const ri = r.real.installs;
  if (ri.length) {
    const took = ri.flatMap((x) => (x.installMs === undefined ? [] : [x.installMs]));
    const us = ri.flatMap((x) => (x.usage ? [x.usage] : []));
    ms.push(
      measurement({
        id: 'fleet-rollout-real-committed',
        title: `real agents that downloaded the signed bundle, installed it into their inactive slot, activated it through their boot guard, committed 1.1.0 (their status and slots.json) and reported update-health (${ri.filter((x) => x.healthy === true).length} healthy), in the rollout's first wave`,
        unit: 'agents',
        samples: [r.real.committed],
        reference: { name: 'real agents in the rollout', samples: [ri.length] },
        goal: { op: '>=', value: 1, of: 'ratio' },
        details: { bundleBytes: [r.real.bundleBytes], bytesServed: [r.real.bytesServed] },
      }),
      measurement({
        id: 'fleet-rollout-real-install',
        title: `a real agent's install in the rollout (first executing step past waiting -> successful: download, verify, install, activate, ${REAL_OTA.healthGate.stableMs / 1000} s health gate, commit), ${INSTALL_STAGGER_MS / 1000} s apart (max ${took.length ? Math.max(...took) : NaN} ms)`,
        unit: 'ms',
        samples: took,
        reference: { name: "the same agents' cold start under their guard (guard start -> connected), same run", samples: r.real.startMs },
        details: {
          installMsMax: [took.length ? Math.max(...took) : NaN],
          installCpuPctMedian: [us.length ? median(us.map((x) => x.cpuPct)) : NaN],
          installCpuPctMax: [us.length ? Math.max(...us.map((x) => x.cpuPct)) : NaN],
          installRssMiBMedian: [us.length ? median(us.map((x) => x.rssMiB)) : NaN],
          installRssMiBMax: [us.length ? Math.max(...us.map((x) => x.rssMiB)) : NaN],
          // Each progress step's first status, ms after the install's start (medians over the agents).
          ...Object.fromEntries([...new Set(ri.flatMap((x) => Object.keys(x.stepMs)))].map((k) => [`step.${k}Ms`, ri.flatMap((x) => x.stepMs[k] ?? [])])),
        },
      }),
    );
  }
  if (cap.length) {
    const last = cap[cap.length - 1]!;
    const top = cap.filter((s) => s.ok).at(-1);
    ms.push(
      measurement({
        id: 'fleet-capacity',
        title: `largest simulated fleet with every command answered, stepping ${cap.map((s) => s.size).join(', ')}${last.ok ? '' : ` (${last.size} failed: ${last.error ?? `${last.check?.exactlyOne ?? 0} answered`})`}`,
        unit: 'gateways',
        samples: [held.length ? Math.max(...held) : 0],
        reference: { name: 'the first step', samples: [cap[0]!.size] },
        details: Object.assign({}, ...cap.map((s) => ({ [`connectMs.${s.size}`]: [s.connectMs], [`answerMs.${s.size}`]: [s.check?.durationMs ?? NaN] })), top ? usageDetails(`cap${top.size}.`, top.usage) : {}),
      }),
    );
  }
  return ms;
}


