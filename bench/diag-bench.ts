/**
 * `--only diag`: wall time of `edge-agent diag --json` (spawn to exit), the command a person runs
 * on a gateway in trouble:
 *   - healthy: the daemon running, connected to a real broker (goal: at most 3 s);
 *   - unreachable: a "broker" that accepts TCP and never answers (a hung broker, or a middlebox
 *     that swallows the traffic: every MQTT wait runs to its bound), two PLCs (one at a
 *     non-routed address, one a local port with nothing listening), no daemon (goal: at most 10 s).
 * The reference is `edge-agent status --json` against the same configuration, in the same run:
 * what a CLI command that loads the configuration and asks the daemon costs anyway.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { startBenchBroker, freePort, waitFor, type BenchBroker } from './broker.js';
import { DIST, spawnNode, type NodeChild } from './proc.js';
import { measurement, type Measurement } from './report.js';
import { adminRequest } from '../core/admin.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');

export interface DiagBenchOptions {
  runs: number;
  prefer: 'mosquitto' | 'aedes' | undefined;
}

export interface DiagPhase {
  healthy: { diag: number[]; ref: number[]; exitCodes: number[] };
  unreachable: { diag: number[]; ref: number[]; exitCodes: number[] };
  broker: { kind: string; version: string };
}

/** Spawn -> exit of one CLI command; the exit code too. */
async function timed(args: string[]): Promise<{ ms: number; code: number | string }> {
  const t0 = performance.now();
  const c = spawnNode(CLI, args);
  const code = await c.exited;
  return { ms: performance.now() - t0, code };
}

async function samples(runs: number, config: string): Promise<{ diag: number[]; ref: number[]; exitCodes: number[] }> {
  const out = { diag: [] as number[], ref: [] as number[], exitCodes: [] as number[] };
  for (let i = 0; i < runs; i++) {
    // Alternate the order so neither always runs on a warmer page cache.
    const pair = i % 2 === 0 ? (['diag', 'status'] as const) : (['status', 'diag'] as const);
    for (const cmd of pair) {
      const r = await timed([cmd, '--json', '--config', config]);
      if (cmd === 'diag') {
        out.diag.push(r.ms);
        out.exitCodes.push(Number(r.code));
      } else out.ref.push(r.ms);
    }
  }
  return out;
}

/** Accepts TCP connections and never sends a byte. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const held = new Set<Socket>();
  const srv: Server = createServer((s) => {
    held.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  return {
    port,
    close: async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

export async function diagPhase(opts: DiagBenchOptions, log: (s: string) => void): Promise<DiagPhase> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-diag-'));
  let broker: BenchBroker | undefined;
  let agent: NodeChild | undefined;
  let silent: { port: number; close(): Promise<void> } | undefined;
  try {
    broker = await startBenchBroker(opts.prefer);
    const healthy = join(dir, 'healthy.yaml');
    writeFileSync(healthy, stringify({ gatewayId: 'bench-diag', dataDir: join(dir, 'data'), mqtt: { url: broker.url, protocolVersion: broker.protocolVersion }, ota: { root: join(dir, 'root') } }));
    agent = spawnNode(CLI, ['run', '--config', healthy]);
    const socket = join(dir, 'data', 'agent.sock');
    await waitFor(async () => ((await adminRequest(socket, 'status', {}, 1000).catch(() => undefined)) as { broker?: { connected?: boolean } } | undefined)?.broker?.connected === true, 'the agent connected', 30_000);
    log(`diag: healthy, ${opts.runs} runs`);
    const h = await samples(opts.runs, healthy);
    await agent.stop();
    agent = undefined;

    const dead = await freePort();
    silent = await silentServer();
    const bridge = join(dir, 'plc-bridge.yaml');
    writeFileSync(bridge, stringify({ gatewayId: 'bench-diag', dataDir: join(dir, 'bridge'), devices: [{ name: 'far', host: '10.255.255.1', port: 502 }, { name: 'near', host: '127.0.0.1', port: dead }] }));
    const unreachable = join(dir, 'unreachable.yaml');
    writeFileSync(
      unreachable,
      stringify({ gatewayId: 'bench-diag', dataDir: join(dir, 'data'), mqtt: { url: `mqtt://127.0.0.1:${silent.port}` }, ota: { root: join(dir, 'root') }, plcBridge: { config: bridge, launch: 'never' } }),
    );
    log(`diag: broker and PLCs unreachable, daemon down, ${opts.runs} runs`);
    const u = await samples(opts.runs, unreachable);
    return { healthy: h, unreachable: u, broker: { kind: broker.kind, version: broker.version } };
  } finally {
    await silent?.close();
    await agent?.stop();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function diagMeasurements(p: DiagPhase): Measurement[] {
  const ref = 'edge-agent status --json, same config';
  return [
    measurement({
      id: 'diag-healthy',
      title: 'edge-agent diag, everything healthy (spawn -> exit)',
      unit: 'ms',
      samples: p.healthy.diag,
      reference: { name: ref, samples: p.healthy.ref },
      goal: { op: '<=', value: 3000 },
      details: { exitCode: p.healthy.exitCodes },
    }),
    measurement({
      id: 'diag-unreachable',
      title: 'edge-agent diag, broker and PLCs unreachable, daemon down',
      unit: 'ms',
      samples: p.unreachable.diag,
      reference: { name: ref, samples: p.unreachable.ref },
      goal: { op: '<=', value: 10_000 },
      details: { exitCode: p.unreachable.exitCodes },
    }),
  ];
}
