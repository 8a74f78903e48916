/**
 * Measurements `bridge-kill-recovery` and `bridge-kill-recovery-p99` (`--only recovery`): kill -9
 * of the PLC bridge -> the first good poll of the restarted bridge, as the WMS receives it (issue
 * #5: median at most 1 s, p99 at most 2 s, over 50 kills; `--quick` 5).
 *
 * Processes: mosquitto (bench/broker.ts); the simulated PLC in this process (demo/plc-sim.ts,
 * holding 0 changes on every read, so every cycle is published); the agent (`edge-agent run`,
 * deployed Node flags) with `plcBridge.launch: auto`, which starts the bridge detached and
 * supervises it (recovery/supervisor.ts); one device, one group of one tag every 100 ms. The
 * agent's recovery settings are the defaults except:
 *  - escalation thresholds at 1000 failures, so 50 kills are never a crash loop (no config
 *    restore, no rollback, no alarm and slow retry);
 *  - healthyMs 1 s (default 60 s), and each kill waits until the previous incident is resolved,
 *    so every kill is a first failure after a healthy period, restarted after the first backoff
 *    step (75-100 ms with the default jitter), as an isolated crash in the field is. With the
 *    default, kills a few seconds apart would double the backoff each time, up to 60 s.
 *
 * A sample: once data flows, a random wait of 0-100 ms (so the kill falls at any phase of the
 * poll grid), the bridge's pid from `ping` on its control socket, kill -9, then the first data
 * message whose `ts` (its cycle's grid time) is after the kill and whose tag is `good`, received
 * by a subscriber in this process: a poll of the new process. The reference, alternating with the
 * samples (which goes first alternates too): a second bridge (own data dir and gateway id, same
 * PLC and broker) that this process kills with -9 and spawns again at once as the agent does
 * (detached, `node CLI plc-bridge --config FILE`, output to a file), until its first good data:
 * a restart with no supervisor. The difference is what the supervisor adds.
 *
 * Breakdown (details: medians in ms after the kill): `detect` the incident's time (the agent saw
 * the exit), `spawn` the agent's `started` line (the reference: the spawn call), `main` the
 * bridge's session stamp (runBridge past Node start-up, imports and config), `ready` `bridge
 * ready` (store, connections, control socket), `mqtt` `connected to the broker`, `link` Modbus
 * `link up`, `poll` the first good cycle's grid time, `arrived` at the subscriber.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { PlcSim } from '../demo/plc-sim.js';
import { rpcRequest } from '../lib/rpc.js';
import { openDatabase } from '../lib/sqlite.js';
import { IncidentStore } from '../recovery/incidents.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { cleanEnv, DEPLOYED_NODE_FLAGS, DIST, sleep, spawnNode, type NodeChild } from './proc.js';
import { measurement, median, type BenchResults, type Measurement } from './report.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const GW = 'bench-brec';
const REF_GW = 'bench-brec-ref';
const INTERVAL_MS = 100;
const COMPONENT = 'plc-bridge';
const STEPS = ['detect', 'spawn', 'main', 'ready', 'mqtt', 'link', 'poll', 'arrived'] as const;
type Step = (typeof STEPS)[number];
/** ms after the kill at which each step was seen; missing when its log line was not found. */
type Timeline = Partial<Record<Step, number>>;

type Log = (s: string) => void;

export interface BridgeRecoveryResults {
  broker: BenchResults['broker'];
  recoveryMs: number[];
  referenceMs: number[];
  timelines: Timeline[];
  refTimelines: Timeline[];
  /** Samples whose first good poll came as `historical` (polled before MQTT was up). */
  historicalFirst: number;
}

interface Rec {
  at: number;
  tick: number;
  good: boolean;
  historical: boolean;
}

/** One bridge under test: the supervised one or the reference. */
interface Subject {
  gw: string;
  socket: string;
  logPath: string;
  /** Resolves once it is healthy (for the agent: its last incident resolved) and data flows. */
  settled(): Promise<void>;
  /** Right after the kill: the reference spawns its successor; returns when it did. */
  afterKill(): number | undefined;
  detectedAt(killedAt: number): number | undefined;
  spawnedAt(pid: number): number | undefined;
}

function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** The first time each message was logged by process `pid` (pino JSON lines; the object's own `pid` field wins over pino's). */
function logTimes(text: string, pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.includes(`"pid":${pid}`)) continue;
    try {
      const o = JSON.parse(line) as { pid?: number; msg?: string; time?: string; component?: string };
      const key = o.component ? `${o.component}: ${o.msg}` : (o.msg ?? '');
      if (o.pid === pid && !out.has(key)) out.set(key, Date.parse(o.time ?? ''));
    } catch {
      /* not a log line */
    }
  }
  return out;
}

function bridgeConfig(dir: string, gw: string, url: string, port: number): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'plc-bridge.yaml');
  const group = { name: 'fast', intervalMs: INTERVAL_MS, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] };
  writeFileSync(path, stringify({ gatewayId: gw, dataDir: join(dir, 'data'), mqtt: { url }, devices: [{ name: 'plc0', host: '127.0.0.1', port, unitId: 1, groups: [group] }] }));
  return path;
}

async function subscribe(broker: BenchBroker, recs: Map<string, Rec[]>): Promise<MqttClient> {
  const client = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion, clientId: `bench-brec-sub-${process.pid}` });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  client.on('message', (topic, payload) => {
    const at = Date.now();
    const list = recs.get(topic.split('/')[1] ?? '');
    if (!list) return;
    try {
      const p = JSON.parse(payload.toString('utf8')) as { ts?: string; historical?: boolean; values?: { counter?: { q?: string } } };
      list.push({ at, tick: Date.parse(p.ts ?? ''), good: p.values?.counter?.q === 'good', historical: p.historical === true });
      if (list.length > 4000) list.splice(0, 2000);
    } catch {
      /* not a data message */
    }
  });
  await client.subscribeAsync('edge/+/plc/plc0/fast', { qos: 1 });
  return client;
}

const ping = async (socket: string): Promise<{ pid: number; role: string; session: string } | undefined> =>
  (await rpcRequest(socket, 'ping', {}, 1000).catch(() => undefined)) as { pid: number; role: string; session: string } | undefined;

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
      return;
    } catch {
      /* not a group leader, or gone */
    }
  }
}

function flowing(recs: Rec[] | undefined): boolean {
  const last = recs?.at(-1);
  return last !== undefined && last.good && last.at > Date.now() - 500;
}

/** One kill -9 and the wait for the new process's first good data. */
async function sample(s: Subject, recs: Rec[], log: Log): Promise<{ ms: number; timeline: Timeline; historical: boolean }> {
  await s.settled();
  // settled() returns just after a cycle arrived: without this the kill would always fall at the
  // same phase of the 100 ms grid, and so would the new process's wait for its first tick.
  await sleep(Math.random() * INTERVAL_MS);
  const old = await ping(s.socket);
  if (!old) throw new Error(`bridge recovery: no bridge answers on ${s.socket}`);
  const killedAt = Date.now();
  process.kill(old.pid, 'SIGKILL');
  const spawnCall = s.afterKill();
  let first: Rec | undefined;
  await waitFor(() => (first = recs.find((r) => r.tick > killedAt && r.good)) !== undefined, `${s.gw}: good data polled after the kill`, 30_000);
  let now: { pid: number; session: string } | undefined;
  await waitFor(async () => (now = await ping(s.socket)) !== undefined && now.pid !== old.pid, `${s.gw}: the new bridge answering`, 10_000);
  const lines = logTimes(readLog(s.logPath), now!.pid);
  const rel = (t: number | undefined): number | undefined => (t === undefined || !Number.isFinite(t) ? undefined : t - killedAt);
  const timeline: Timeline = {
    detect: rel(s.detectedAt(killedAt)),
    spawn: rel(spawnCall ?? s.spawnedAt(now!.pid)),
    main: rel(parseInt(now!.session.split('-')[0] ?? '', 36)),
    ready: rel(lines.get('bridge ready')),
    mqtt: rel(lines.get('plc-mqtt: connected to the broker')),
    link: rel(lines.get('modbus: link up')),
    poll: first!.tick - killedAt,
    arrived: first!.at - killedAt,
  };
  if (timeline.ready === undefined) log(`bridge recovery: ${s.gw}: no 'bridge ready' line of pid ${now!.pid} in ${s.logPath}`);
  return { ms: first!.at - killedAt, timeline, historical: first!.historical };
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const fmtTimeline = (t: Timeline): string => STEPS.map((k) => `${k} ${t[k] ?? '?'}`).join(', ');

export async function bridgeRecoveryPhase(opts: { kills: number; prefer: 'mosquitto' | 'aedes' | undefined }, log: Log): Promise<BridgeRecoveryResults> {
  const broker = await startBenchBroker(opts.prefer);
  const note = broker.kind === 'mosquitto' ? 'real broker' : 'mosquitto is not installed: in-process aedes';
  const dir = mkdtempSync(join(tmpdir(), 'bench-brec-'));
  const sim = new PlcSim({ port: 0, churn: 1 });
  const recs = new Map<string, Rec[]>([
    [GW, []],
    [REF_GW, []],
  ]);
  const dataDir = join(dir, 'agent', 'data');
  const pidFile = join(dataDir, 'recovery', `${COMPONENT}.pid`);
  const supervisedPid = (): number | undefined => {
    try {
      return (JSON.parse(readFileSync(pidFile, 'utf8')) as { pid: number }).pid;
    } catch {
      return undefined;
    }
  };
  let ref: ChildProcess | undefined;
  let agent: NodeChild | undefined;
  let sub: MqttClient | undefined;
  const killBridges = (): void => {
    killGroup(supervisedPid());
    killGroup(ref?.pid);
  };
  process.once('exit', killBridges);
  try {
    const port = await sim.start();
    sub = await subscribe(broker, recs);
    const agentBridge = bridgeConfig(join(dir, 'bridge'), GW, broker.url, port);
    const refDir = join(dir, 'ref');
    const refConfig = bridgeConfig(refDir, REF_GW, broker.url, port);
    const refLog = join(refDir, 'plc-bridge.log');
    const spawnRef = (): void => {
      const fd = openSync(refLog, 'a');
      try {
        ref = spawn(process.execPath, [CLI, 'plc-bridge', '--config', refConfig], { detached: true, stdio: ['ignore', fd, fd], env: cleanEnv() });
      } finally {
        closeSync(fd);
      }
      ref.unref();
    };
    const conf = join(dir, 'agent', 'config.yaml');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(
      conf,
      stringify({
        gatewayId: GW,
        dataDir,
        mqtt: { url: broker.url, protocolVersion: broker.protocolVersion },
        ota: { root: join(dir, 'ota') },
        plcBridge: { config: agentBridge, launch: 'auto' },
        recovery: { healthyMs: 1000, escalation: { restoreConfigAfter: 1000, rollbackAfter: 1000, slowRetryAfter: 1000 } },
      }),
    );
    agent = spawnNode(CLI, ['run', '--config', conf], DEPLOYED_NODE_FLAGS);
    const a = agent;
    spawnRef();
    const adminSock = join(dataDir, 'agent.sock');
    const dbPath = join(dataDir, 'agent.db');
    const lastIncident = (): { at: string; resolvedAt: string | null } | undefined => {
      const db = openDatabase(dbPath, { readonly: true });
      try {
        const store = new IncidentStore(db);
        return store.available() ? store.list({ component: COMPONENT, limit: 1 })[0] : undefined;
      } finally {
        db.close();
      }
    };
    const supervised: Subject = {
      gw: GW,
      socket: join(dir, 'bridge', 'data', 'plc-bridge.sock'),
      logPath: join(dataDir, 'recovery', `${COMPONENT}.log`),
      settled: () =>
        waitFor(
          async () => {
            if (a.hasExited()) throw new Error(`the agent exited\n${a.tail()}`);
            const st = (await rpcRequest(adminSock, 'status', {}, 2000).catch(() => undefined)) as { components?: { name: string; state: string; level: number }[] } | undefined;
            const c = st?.components?.find((x) => x.name === COMPONENT);
            if (c?.state !== 'running' || c.level !== 0 || !flowing(recs.get(GW))) return false;
            const inc = lastIncident();
            return inc === undefined || inc.resolvedAt !== null;
          },
          'the supervised bridge healthy (its last incident resolved) with data flowing',
          60_000,
        ),
      afterKill: () => undefined,
      detectedAt: (killedAt) => {
        const inc = lastIncident();
        const at = inc ? Date.parse(inc.at) : NaN;
        return at >= killedAt - 1000 ? at : undefined;
      },
      spawnedAt: (pid) => logTimes(a.stdout(), pid).get(`${COMPONENT}: started`),
    };
    const reference: Subject = {
      gw: REF_GW,
      socket: join(refDir, 'data', 'plc-bridge.sock'),
      logPath: refLog,
      settled: () => waitFor(async () => (await ping(join(refDir, 'data', 'plc-bridge.sock')))?.role === 'active' && flowing(recs.get(REF_GW)), 'the reference bridge with data flowing', 60_000),
      afterKill: () => {
        const t = Date.now();
        spawnRef();
        return t;
      },
      detectedAt: () => undefined,
      spawnedAt: () => undefined,
    };
    log(`bridge recovery: broker ${broker.version}; ${opts.kills} kills of the agent's bridge and of a bare bridge, group at ${INTERVAL_MS} ms`);
    const out: BridgeRecoveryResults = { broker: { kind: broker.kind, version: broker.version, note }, recoveryMs: [], referenceMs: [], timelines: [], refTimelines: [], historicalFirst: 0 };
    for (let i = 0; i < opts.kills; i++) {
      const order = i % 2 === 0 ? [supervised, reference] : [reference, supervised];
      for (const s of order) {
        const r = await sample(s, recs.get(s.gw)!, log);
        if (s === supervised) {
          out.recoveryMs.push(r.ms);
          out.timelines.push(r.timeline);
          if (r.historical) out.historicalFirst++;
        } else {
          out.referenceMs.push(r.ms);
          out.refTimelines.push(r.timeline);
        }
      }
      log(`bridge recovery kill ${i + 1}/${opts.kills}: agent-supervised ${out.recoveryMs.at(-1)} ms, bare restart ${out.referenceMs.at(-1)} ms`);
    }
    const mid = out.recoveryMs.indexOf(percentile(out.recoveryMs, 50));
    log(`bridge recovery: the median sample, ms after kill -9: ${fmtTimeline(out.timelines[mid] ?? {})}`);
    log(`bridge recovery: bare restart, median sample: ${fmtTimeline(out.refTimelines[out.referenceMs.indexOf(percentile(out.referenceMs, 50))] ?? {})}`);
    return out;
  } catch (err) {
    if (agent) log(`--- agent log (tail) ---\n${agent.tail()}`);
    throw err;
  } finally {
    await agent?.stop();
    killBridges();
    process.off('exit', killBridges);
    await sub?.endAsync(true);
    await sim.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function bridgeRecoveryMeasurements(r: BridgeRecoveryResults): Measurement[] {
  const steps = (tls: Timeline[], prefix: string): Record<string, number[]> => {
    const out: Record<string, number[]> = {};
    for (const k of STEPS) {
      const xs = tls.map((t) => t[k]).filter((x): x is number => x !== undefined);
      if (xs.length > 0) out[`${prefix}${prefix ? k[0]!.toUpperCase() + k.slice(1) : k}Ms`] = xs;
    }
    return out;
  };
  const n = r.recoveryMs.length;
  const bare = 'bare restart: kill -9, spawn `edge-agent plc-bridge`, first good data';
  return [
    measurement({
      id: 'bridge-kill-recovery',
      title: `PLC bridge kill -9 -> first good poll at a subscriber, median of ${n}`,
      unit: 'ms',
      samples: r.recoveryMs,
      reference: { name: bare, samples: r.referenceMs },
      goal: { op: '<=', value: 1000 },
      details: { ...steps(r.timelines, ''), ...steps(r.refTimelines, 'ref'), historicalFirst: [r.historicalFirst], supervisorAddsMs: [median(r.recoveryMs) - median(r.referenceMs)] },
    }),
    measurement({
      id: 'bridge-kill-recovery-p99',
      title: `PLC bridge kill -9 -> first good poll at a subscriber, p99 of ${n}`,
      unit: 'ms',
      samples: [percentile(r.recoveryMs, 99)],
      reference: { name: bare, samples: [percentile(r.referenceMs, 99)] },
      goal: { op: '<=', value: 2000 },
      details: { max: [Math.max(...r.recoveryMs)], refMax: [Math.max(...r.referenceMs)], kills: [n] },
    }),
  ];
}
