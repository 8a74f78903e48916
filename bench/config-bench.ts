/**
 * `--only config`: the `config` operation's cost (agent/ops/config.ts, docs/config-apply.md).
 *   - config-apply-confirmed: a `config apply` patch (log.level flipped) sent on `~/cmd/config`
 *     -> its `successful` on `~/res/{id}` (written, the agent restarted on it, reconnected and
 *     confirmed), against a plain `restart {component: agent}` -> its `successful`, same agent,
 *     same run (goal: ratio <= 1.5);
 *   - config-apply-reverted: an apply pointing mqtt.url at a port nobody listens on, confirmSec 3
 *     -> its `failed`/`reverted` (restart, 3 s unconfirmed, revert, restart, reconnect), against
 *     confirmSec itself.
 * The agent restarts into detached replacements (no boot guard here): each is asked its pid
 * over the admin socket, and every pid seen is stopped at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { rpcRequest } from '../lib/rpc.js';
import { DIST, sleep, spawnNode } from './proc.js';
import { freePort, startBenchBroker, waitFor } from './broker.js';
import { measurement, type Measurement } from './report.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const GW = 'gw-bench-config';
const CONFIRM_SEC = 3;

export interface ConfigPhase {
  broker: { kind: string; version: string; note: string };
  restart: number[];
  confirmed: number[];
  reverted: number[];
}

interface Res {
  status: string;
  reason?: { code: string };
  result?: { hash?: string };
}

export async function configPhase(o: { runs: number; prefer: 'mosquitto' | 'aedes' | undefined }, log: (s: string) => void): Promise<ConfigPhase> {
  const broker = await startBenchBroker(o.prefer);
  const dir = mkdtempSync(join(tmpdir(), 'bench-config-'));
  const dataDir = join(dir, 'data');
  const conf = join(dir, 'config.yaml');
  writeFileSync(conf, stringify({ gatewayId: GW, dataDir, mqtt: { url: broker.url, protocolVersion: broker.protocolVersion }, shutdownTimeoutMs: 5000 }));
  const sock = join(dataDir, 'agent.sock');
  const pids = new Set<number>();
  const res = new Map<string, Res>();
  const wms: MqttClient = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion, reconnectPeriod: 0, clientId: `bench-config-${process.pid}` });
  const out: ConfigPhase = { broker: { kind: broker.kind, version: broker.version, note: broker.kind === 'mosquitto' ? 'real broker' : 'in-process aedes' }, restart: [], confirmed: [], reverted: [] };
  const agent = spawnNode(CLI, ['run', '--config', conf]);
  pids.add(agent.pid);
  try {
    await new Promise<void>((resolve, reject) => {
      wms.once('connect', () => resolve());
      wms.once('error', reject);
    });
    wms.on('message', (topic, payload) => {
      const id = topic.split('/').pop()!;
      const p = JSON.parse(payload.toString('utf8')) as Res;
      if (['successful', 'failed', 'rejected', 'cancelled'].includes(p.status)) res.set(id, p);
    });
    await wms.subscribeAsync(`edge/${GW}/res/+`, { qos: 1 });
    const connected = async (): Promise<boolean> => {
      const s = (await rpcRequest(sock, 'status', {}, 2000).catch(() => undefined)) as { pid?: number; broker?: { connected?: boolean } } | undefined;
      if (s?.pid !== undefined) pids.add(s.pid);
      return s?.broker?.connected === true;
    };
    await waitFor(connected, 'the agent connected', 30_000);
    let n = 0;
    const run = async (op: string, params: unknown): Promise<{ ms: number; r: Res }> => {
      const id = `b-${++n}`;
      const t0 = performance.now();
      await wms.publishAsync(`edge/${GW}/cmd/${op}`, JSON.stringify({ id, params }), { qos: 1 });
      await waitFor(() => res.has(id), `${op} ${id} finished`, 120_000);
      const ms = performance.now() - t0;
      await waitFor(connected, 'the agent connected again', 60_000);
      return { ms, r: res.get(id)! };
    };
    const hash = async (): Promise<string> => (await run('config', { action: 'get' })).r.result!.hash!;
    const nowhere = `mqtt://127.0.0.1:${await freePort()}`;
    for (let i = 0; i < o.runs; i++) {
      const rs = await run('restart', { component: 'agent' });
      if (rs.r.status !== 'successful') throw new Error(`restart: ${JSON.stringify(rs.r)}`);
      out.restart.push(rs.ms);
      const ap = await run('config', { action: 'apply', baseHash: await hash(), patch: { log: { level: i % 2 === 0 ? 'debug' : 'info' } }, confirmSec: 60 });
      if (ap.r.status !== 'successful') throw new Error(`apply: ${JSON.stringify(ap.r)}`);
      out.confirmed.push(ap.ms);
      const rv = await run('config', { action: 'apply', baseHash: await hash(), patch: { mqtt: { url: nowhere } }, confirmSec: CONFIRM_SEC });
      if (rv.r.reason?.code !== 'reverted') throw new Error(`unreachable apply: ${JSON.stringify(rv.r)}`);
      out.reverted.push(rv.ms);
      log(`config run ${i + 1}/${o.runs}: restart ${rs.ms.toFixed(0)} ms, apply->confirmed ${ap.ms.toFixed(0)} ms, apply->reverted ${rv.ms.toFixed(0)} ms`);
    }
    return out;
  } finally {
    await wms.endAsync(true).catch(() => undefined);
    await agent.stop(5000);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    await sleep(1000);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function configMeasurements(p: ConfigPhase): Measurement[] {
  return [
    measurement({
      id: 'config-apply-confirmed',
      title: 'config apply -> successful (written, agent restarted on it, reconnected, confirmed)',
      unit: 'ms',
      samples: p.confirmed,
      reference: { name: 'restart {component: agent} -> successful, same agent and run', samples: p.restart },
      goal: { op: '<=', value: 1.5, of: 'ratio' },
    }),
    measurement({
      id: 'config-apply-reverted',
      title: `config apply to an unreachable broker -> failed/reverted (confirmSec ${CONFIRM_SEC})`,
      unit: 'ms',
      samples: p.reverted,
      reference: { name: 'confirmSec', samples: p.reverted.map(() => CONFIRM_SEC * 1000) },
    }),
  ];
}
