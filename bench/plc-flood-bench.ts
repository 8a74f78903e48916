/**
 * Measurement `plc-flood-max-interval` (`--only plc-flood`, issue #12 item 1): the largest
 * distance between the grid times of consecutive data messages of a 100 ms group while a WMS
 * client floods `~/plc/{device}/set` (5,000 sets, half at QoS 1, half at QoS 0, sent as fast as
 * the client can, without waiting for answers), against the same figure over an equal window
 * without a flood, in the same run, on the same bridge. 100 ms is no missed interval.
 *
 * Processes: mosquitto (bench/broker.ts); the simulated PLC in its own process (demo/plc-sim.js,
 * holding 0 changes on every read, so every cycle is published); the real bridge (`edge-agent
 * plc-bridge`, deployed Node flags); the subscriber and the flooding client in this process.
 * Samples alternate with references (which goes first alternates too). A window ends once every
 * set of the flood has its terminal answer; the reference window is as long.
 * Details: the sets answered `busy` and `successful` per flood, and the seconds to the last answer.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { rpcRequest } from '../lib/rpc.js';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DEPLOYED_NODE_FLAGS, DIST, sleep, spawnNode, type NodeChild } from './proc.js';
import { measurement, type BenchResults, type Measurement } from './report.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const GW = 'bench-flood';
const ROOT = `edge/${GW}`;
const INTERVAL_MS = 100;
const TERMINAL = new Set(['successful', 'failed', 'rejected']);

type Log = (s: string) => void;

export interface FloodResults {
  broker: BenchResults['broker'];
  floodMaxMs: number[];
  quietMaxMs: number[];
  busy: number[];
  successful: number[];
  answeredSec: number[];
}

/** The largest distance between consecutive grid times received in [from, to). */
function largestInterval(ticks: readonly number[], from: number, to: number): number {
  const xs = ticks.filter((t) => t >= from && t < to).sort((a, b) => a - b);
  let max = 0;
  for (let i = 1; i < xs.length; i++) max = Math.max(max, xs[i]! - xs[i - 1]!);
  return xs.length < 2 ? NaN : max;
}

export async function floodPhase(opts: { runs: number; sets: number; prefer?: 'mosquitto' | 'aedes' }, log: Log): Promise<FloodResults> {
  const broker: BenchBroker = await startBenchBroker(opts.prefer);
  const dir = mkdtempSync(join(tmpdir(), 'bench-flood-'));
  const children: NodeChild[] = [];
  let client: MqttClient | undefined;
  try {
    const sim = spawnNode(join(DIST, 'demo', 'plc-sim.js'), ['--churn', '1']);
    children.push(sim);
    await waitFor(() => sim.stdout().includes('\n'), 'the simulated PLC listening');
    const port = (JSON.parse(sim.stdout().split('\n')[0]!) as { ports: number[] }).ports[0]!;
    mkdirSync(join(dir, 'data'), { recursive: true });
    const config = join(dir, 'plc-bridge.yaml');
    writeFileSync(
      config,
      stringify({
        gatewayId: GW,
        dataDir: join(dir, 'data'),
        mqtt: { url: broker.url },
        devices: [
          {
            name: 'plc0',
            host: '127.0.0.1',
            port,
            unitId: 1,
            timeoutMs: 500,
            groups: [
              { name: 'fast', intervalMs: INTERVAL_MS, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }, ...Array.from({ length: 20 }, (_, i) => ({ name: `r${i}`, area: 'holding', address: 10 + i, type: 'uint16' }))] },
              { name: 'cmd', intervalMs: 500, tags: [{ name: 'setpoint', area: 'holding', address: 100, type: 'uint16', access: 'read-write' }] },
            ],
          },
        ],
      }),
    );
    const ticks: number[] = [];
    const answers = new Map<string, string>();
    client = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion, clientId: `bench-flood-${process.pid}` });
    const c = client;
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    c.on('message', (topic, payload) => {
      if (topic === `${ROOT}/plc/plc0/fast`) ticks.push(Date.parse((JSON.parse(payload.toString()) as { ts: string }).ts));
      else if (topic.startsWith(`${ROOT}/res/`)) {
        const body = JSON.parse(payload.toString()) as { status: string; reason?: { code: string } };
        if (TERMINAL.has(body.status)) answers.set(topic.slice(`${ROOT}/res/`.length), body.reason?.code === 'busy' ? 'busy' : body.status);
      }
    });
    await c.subscribeAsync([`${ROOT}/plc/plc0/fast`, `${ROOT}/res/#`], { qos: 1 });
    const bridge = spawnNode(CLI, ['plc-bridge', '--config', config], DEPLOYED_NODE_FLAGS);
    children.push(bridge);
    await waitFor(() => ticks.length >= 20, 'the bridge publishing', 30_000);
    await sleep(1000);

    const out: FloodResults = { broker: { kind: broker.kind, version: broker.version, note: 'real broker (plc-flood)' }, floodMaxMs: [], quietMaxMs: [], busy: [], successful: [], answeredSec: [] };
    let windowMs = 10_000;
    for (let run = 0; run < opts.runs; run++) {
      const order = run % 2 === 0 ? ['flood', 'quiet'] : ['quiet', 'flood'];
      for (const kind of order) {
        const from = Date.now();
        if (kind === 'quiet') {
          await sleep(windowMs);
          out.quietMaxMs.push(largestInterval(ticks, from, Date.now()));
          continue;
        }
        const ids: string[] = [];
        for (const qos of [1, 0] as const) {
          const sends: Promise<unknown>[] = [];
          for (let i = 0; i < opts.sets / 2; i++) {
            const id = `fl-${run}-${qos}-${i}`;
            ids.push(id);
            sends.push(c.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id, tags: { setpoint: i } }), { qos }));
            if (sends.length >= 500) await Promise.all(sends.splice(0));
          }
          await Promise.all(sends);
        }
        await waitFor(() => ids.every((id) => answers.has(id)), 'an answer to every set of the flood', 300_000);
        const to = Date.now() + 500;
        await sleep(500);
        windowMs = to - from;
        out.floodMaxMs.push(largestInterval(ticks, from, to));
        out.answeredSec.push((to - 500 - from) / 1000);
        out.busy.push(ids.filter((id) => answers.get(id) === 'busy').length);
        out.successful.push(ids.filter((id) => answers.get(id) === 'successful').length);
        log(`plc-flood run ${run + 1}/${opts.runs}: largest interval ${out.floodMaxMs.at(-1)} ms under ${opts.sets} sets (${out.busy.at(-1)} busy, ${out.successful.at(-1)} written, answered in ${out.answeredSec.at(-1)?.toFixed(1)} s)`);
      }
      log(`plc-flood run ${run + 1}/${opts.runs}: without a flood ${out.quietMaxMs.at(-1)} ms`);
    }
    const status = (await rpcRequest(join(dir, 'data', 'plc-bridge.sock'), 'status', {}, 5000)) as { memory?: { rssBytes: number } };
    log(`plc-flood: bridge RSS at the end ${((status.memory?.rssBytes ?? 0) / 1048576).toFixed(1)} MB`);
    return out;
  } finally {
    await client?.endAsync();
    for (const ch of children.reverse()) await ch.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function floodMeasurements(r: FloodResults): Measurement[] {
  return [
    measurement({
      id: 'plc-flood-max-interval',
      title: 'PLC bridge: largest poll interval (100 ms group) under a flood of sets',
      unit: 'ms',
      samples: r.floodMaxMs,
      reference: { name: 'the same bridge without a flood, same window', samples: r.quietMaxMs },
      details: { busy: r.busy, successful: r.successful, answeredSec: r.answeredSec },
    }),
  ];
}
