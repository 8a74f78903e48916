/**
 * `--only flood`: the agent's event-loop lag under a command flood. A real broker and the real
 * agent; the agent's own lag histogram (admin method `event-loop`, perf_hooks
 * monitorEventLoopDelay at 10 ms resolution) is reset, then read:
 *   - reference: the same agent for 10 s with no command (idle, connected);
 *   - flood: N `diagnostics` commands at QoS 1 (default 20,000; `--quick` 3,000), from the reset
 *     until every id has its terminal status.
 * Goals (issue #12): p99 under 200 ms, max under 1 s. Also reported: commands/s through the
 * flood and the share that ended `busy`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { startBenchBroker, waitFor, type BenchBroker } from './broker.js';
import { DIST, sleep, spawnNode, type NodeChild } from './proc.js';
import { measurement, type Measurement } from './report.js';
import { adminRequest } from '../core/admin.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export interface FloodBenchOptions {
  runs: number;
  commands: number;
  prefer: 'mosquitto' | 'aedes' | undefined;
}

interface Lag {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface FloodPhase {
  idle: Lag[];
  flood: Lag[];
  rate: number[];
  busyShare: number[];
  commands: number;
  broker: { kind: string; version: string };
}

export async function floodPhase(opts: FloodBenchOptions, log: (s: string) => void): Promise<FloodPhase> {
  const out: FloodPhase = { idle: [], flood: [], rate: [], busyShare: [], commands: opts.commands, broker: { kind: '', version: '' } };
  let broker: BenchBroker | undefined;
  try {
    broker = await startBenchBroker(opts.prefer);
    out.broker = { kind: broker.kind, version: broker.version };
    for (let run = 0; run < opts.runs; run++) {
      const dir = mkdtempSync(join(tmpdir(), 'bench-flood-'));
      let agent: NodeChild | undefined;
      const wms = await mqtt.connectAsync(broker.url, { clientId: `bench-flood-wms-${run}`, clean: true });
      try {
        const gw = `bench-flood-${run}`;
        const config = join(dir, 'config.yaml');
        writeFileSync(config, stringify({ gatewayId: gw, dataDir: join(dir, 'data'), mqtt: { url: broker.url, protocolVersion: broker.protocolVersion }, ota: { root: join(dir, 'root') } }));
        agent = spawnNode(CLI, ['run', '--config', config]);
        const socket = join(dir, 'data', 'agent.sock');
        const admin = (method: string, params: Record<string, unknown> = {}): Promise<unknown> => adminRequest(socket, method, params, 30_000);
        await waitFor(async () => ((await admin('status').catch(() => undefined)) as { broker?: { connected?: boolean } } | undefined)?.broker?.connected === true, 'the agent connected', 30_000);
        const done = new Map<string, string>();
        wms.on('message', (_t, payload) => {
          const p = JSON.parse(payload.toString()) as { id: string; status: string; reason?: { code: string } };
          if (TERMINAL.has(p.status) && !done.has(p.id)) done.set(p.id, p.status === 'rejected' ? `rejected:${p.reason?.code}` : p.status);
        });
        await wms.subscribeAsync(`edge/${gw}/res/#`, { qos: 1 });
        await sleep(1000);
        await admin('event-loop', { reset: true });
        await sleep(10_000);
        out.idle.push((await admin('event-loop', { reset: true })) as Lag);
        log(`flood run ${run + 1}: idle ${JSON.stringify(out.idle.at(-1))}; sending ${opts.commands} commands`);
        const t0 = performance.now();
        for (let i = 0; i < opts.commands; i += 500) {
          const batch = Array.from({ length: Math.min(500, opts.commands - i) }, (_, k) => `f${run}-${i + k}`);
          await Promise.all(batch.map((id) => wms.publishAsync(`edge/${gw}/cmd/diagnostics`, JSON.stringify({ id }), { qos: 1 })));
        }
        await waitFor(() => done.size >= opts.commands, `a terminal status for ${opts.commands} commands`, 900_000);
        const ms = performance.now() - t0;
        out.flood.push((await admin('event-loop', { reset: true })) as Lag);
        out.rate.push((opts.commands * 1000) / ms);
        out.busyShare.push([...done.values()].filter((k) => k === 'rejected:busy').length / opts.commands);
        log(`flood run ${run + 1}: ${JSON.stringify(out.flood.at(-1))} in ${Math.round(ms)} ms`);
      } finally {
        await wms.endAsync();
        await agent?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return out;
  } finally {
    await broker?.stop();
  }
}

export function floodMeasurements(p: FloodPhase): Measurement[] {
  const ref = 'the same agent, idle and connected, 10 s before the flood';
  const details = { commandsPerSec: p.rate, busyShare: p.busyShare, samples: p.flood.map((l) => l.samples) };
  return [
    measurement({
      id: 'flood-lag-p99',
      title: `event-loop lag p99, ${p.commands} diagnostics commands at QoS 1`,
      unit: 'ms',
      samples: p.flood.map((l) => l.p99Ms),
      reference: { name: ref, samples: p.idle.map((l) => l.p99Ms) },
      goal: { op: '<=', value: 200 },
      details,
    }),
    measurement({
      id: 'flood-lag-max',
      title: `event-loop lag max, ${p.commands} diagnostics commands at QoS 1`,
      unit: 'ms',
      samples: p.flood.map((l) => l.maxMs),
      reference: { name: ref, samples: p.idle.map((l) => l.maxMs) },
      goal: { op: '<=', value: 1000 },
      details,
    }),
  ];
}
