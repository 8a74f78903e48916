/**
 * Start-up with a restore: how long the agent takes from spawn to its `online` on ~/status when
 * it first has to put back a corrupt configuration (invalid YAML -> the known-good copy) or a
 * corrupt store (garbage over every page but the first -> quarantine, the newest backup). The
 * reference is a clean start of the same agent, same data directory, in the same run. Goal: at
 * most 5 s for either.
 *
 * Per run: one unmeasured start takes the known-good copy and the first store backup (as after
 * any successful start); then the three starts are timed, in an order that rotates per run so
 * none always follows another. The store is the agent's own after a few hundred events.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { rpcRequest } from '../lib/rpc.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DEPLOYED_NODE_FLAGS, DIST, spawnNode, type NodeChild } from './proc.js';
import { measurement, type BenchResults, type Measurement } from './report.js';

type Kind = 'clean' | 'config' | 'store';
const KINDS: Kind[] = ['clean', 'config', 'store'];
const ONLINE_TIMEOUT_MS = 30_000;

export interface RestoreRuns {
  broker: BenchResults['broker'];
  ms: Record<Kind, number[]>;
}

interface Subject {
  dir: string;
  conf: string;
  dataDir: string;
  gatewayId: string;
  good: string;
}

function subject(broker: BenchBroker, i: number): Subject {
  const dir = mkdtempSync(join(tmpdir(), 'bench-restore-'));
  const dataDir = join(dir, 'data');
  const gatewayId = `bench-restore-${process.pid}-${i}`;
  const good = stringify({ gatewayId, dataDir, mqtt: { url: broker.url, protocolVersion: broker.protocolVersion }, ota: { root: join(dir, 'ota') } });
  const conf = join(dir, 'config.yaml');
  writeFileSync(conf, good);
  return { dir, conf, dataDir, gatewayId, good };
}

function spawnAgent(s: Subject): NodeChild {
  return spawnNode(join(DIST, 'agent', 'cli', 'index.js'), ['run', '--config', s.conf], DEPLOYED_NODE_FLAGS);
}

/** ms from spawn to a live `online` on the agent's ~/status, as `sub` sees it. */
async function timeToOnline(sub: MqttClient, s: Subject): Promise<{ child: NodeChild; ms: number }> {
  const topic = `edge/${s.gatewayId}/status`;
  let seen: (at: number) => void = () => undefined;
  const online = new Promise<number>((r) => (seen = r));
  const onMessage = (t: string, payload: Buffer, packet: { retain: boolean }): void => {
    if (t !== topic || packet.retain) return;
    try {
      if ((JSON.parse(payload.toString('utf8')) as { state?: unknown }).state === 'online') seen(performance.now());
    } catch {
      /* not ours */
    }
  };
  sub.on('message', onMessage);
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  const child = spawnAgent(s);
  try {
    const failed = child.exited.then((code) => Promise.reject(new Error(`exited with ${code} before online\n${child.tail()}`)));
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no online on ${topic} after ${ONLINE_TIMEOUT_MS} ms\n${child.tail()}`)), ONLINE_TIMEOUT_MS);
    });
    return { child, ms: (await Promise.race([online, failed, late])) - t0 };
  } catch (err) {
    await child.stop(2000);
    throw err;
  } finally {
    clearTimeout(timer);
    sub.off('message', onMessage);
  }
}

/** The first, unmeasured start: a few hundred events, then the known-good copy and a backup. */
async function prepare(sub: MqttClient, s: Subject): Promise<void> {
  const { child } = await timeToOnline(sub, s);
  const sock = join(s.dataDir, 'agent.sock');
  for (let i = 0; i < 300; i++) await rpcRequest(sock, 'event', { code: 'bench-fill', message: `event ${i} ${'x'.repeat(200)}` }, 5000);
  const backups = (): boolean => existsSync(join(s.dataDir, 'backups')) && readdirSync(join(s.dataDir, 'backups')).some((n) => n.startsWith('store-'));
  await waitFor(() => backups() && existsSync(join(s.dataDir, 'known-good')), 'the known-good copy and the first store backup', 20_000);
  await child.stop(10_000);
}

/** Garbage over every page of agent.db but the first: SQLite refuses it at once. */
function corruptStore(s: Subject, run: number): void {
  const db = join(s.dataDir, 'agent.db');
  const size = statSync(db).size;
  const fd = openSync(db, 'r+');
  try {
    let x = 0x9e3779b9 ^ run;
    const buf = Buffer.alloc(Math.max(0, size - 4096)).map(() => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24) & 0xff);
    writeSync(fd, buf, 0, buf.length, 4096);
  } finally {
    closeSync(fd);
  }
}

export async function restorePhase(o: { runs: number; prefer: 'mosquitto' | 'aedes' | undefined }, log: (s: string) => void): Promise<RestoreRuns> {
  const broker = await startBenchBroker(o.prefer);
  const note = broker.kind === 'mosquitto' ? 'real broker' : 'in-process aedes (mosquitto not installed or not asked for)';
  const ms: Record<Kind, number[]> = { clean: [], config: [], store: [] };
  const sub = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion, reconnectPeriod: 0, clientId: `bench-restore-sub-${process.pid}` });
  const subjects: Subject[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      sub.once('connect', () => resolve());
      sub.once('error', reject);
    });
    await sub.subscribeAsync(`edge/+/status`, { qos: 1 });
    for (let i = 0; i < o.runs; i++) {
      const s = subject(broker, i);
      subjects.push(s);
      await prepare(sub, s);
      const order = KINDS.map((_, k) => KINDS[(k + i) % KINDS.length]!);
      for (const kind of order) {
        if (kind === 'config') writeFileSync(s.conf, `${s.good}mqtt: [cut\n`);
        if (kind === 'store') corruptStore(s, i);
        const r = await timeToOnline(sub, s);
        ms[kind].push(r.ms);
        await r.child.stop(10_000);
        log(`restore run ${i + 1}/${o.runs} ${kind}: ${r.ms.toFixed(0)} ms`);
      }
    }
    return { broker: { kind: broker.kind, version: broker.version, note }, ms };
  } finally {
    await sub.endAsync(true);
    await broker.stop();
    for (const s of subjects) rmSync(s.dir, { recursive: true, force: true });
  }
}

export function restoreMeasurements(r: RestoreRuns): Measurement[] {
  const reference = { name: 'a clean start, same agent and data dir', samples: r.ms.clean };
  return [
    measurement({ id: 'restore-config', title: 'Start with a corrupt config -> online', unit: 'ms', samples: r.ms.config, reference, goal: { op: '<=', value: 5000 } }),
    measurement({ id: 'restore-store', title: 'Start with a corrupt store -> online', unit: 'ms', samples: r.ms.store, reference, goal: { op: '<=', value: 5000 } }),
  ];
}
