/**
 * A whole gateway for the bridge-through-updates tests: a real broker, the simulated PLC in its
 * own process, an A/B install of this build as 1.0.0 under the real boot guard, an agent that
 * starts the PLC bridge (`plcBridge.launch: auto`), signed bundles of releases derived from 1.0.0,
 * and a WMS subscriber. `stop()` also ends the detached bridge.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { startBroker, type Broker } from './broker.js';
import { startSimProcess, type SimProcess } from './plc-sim-process.js';
import { startPymodbus } from './pymodbus.js';
import { makeOtaRoot, makeRelease, resOf, serveBundles, startGuard, TERMINAL, until, type BundleServer, type GuardRun, type OtaRoot } from './ota-root.js';
import { collect, mqttClient, tempDir, type Received } from './util.js';
import { bridgePing, writeBridgeConfig } from './bridge.js';

const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '60000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

export interface ReleaseSpec {
  version: string;
  /** Changes the release directory (a copy of 1.0.0 with this version) before it is signed. */
  patch?: (dir: string) => void;
}

export interface PlcGateway {
  gatewayId: string;
  root: string;
  broker: Broker;
  r: OtaRoot;
  g: GuardRun;
  wms: MqttClient;
  got: Received[];
  /** The bridge's control socket. */
  socket: string;
  /** Sends `update {url}` for a bundle by version, once the agent is online; resolves with its terminal status. */
  update(id: string, version: string): Promise<{ status: string; reason?: { code: string } }>;
  online(version: string, slot: string): boolean;
  stop(): Promise<void>;
}

export async function startPlcGateway(opts: {
  gatewayId: string;
  releases: ReleaseSpec[];
  agent?: Record<string, unknown>;
  /** Instead of the simulated PLC: this many pymodbus PLCs (test/helpers/pymodbus.ts), devices plc0.. with the same `fast` group. */
  pymodbus?: number;
}): Promise<PlcGateway> {
  const gw = opts.gatewayId;
  const root = `edge/${gw}`;
  const broker = await startBroker();
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  const sim: Pick<SimProcess, 'ports' | 'stop'> = opts.pymodbus
    ? await (async () => {
        const servers = await Promise.all(Array.from({ length: opts.pymodbus ?? 0 }, () => startPymodbus({ churn: 1 })));
        return { ports: servers.map((x) => x.port), stop: async () => void (await Promise.all(servers.map((x) => x.stop()))) };
      })()
    : await startSimProcess(['--churn', '1']);
  const work = tempDir(`plc-gw-${gw}`);
  const ca = createCa({ commonName: `${gw} release CA` });
  const signer = issueCert(ca, { commonName: `${gw} release signer`, kind: 'codeSigning' });
  const trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const v1 = join(work, 'rel-1.0.0');
  makeRelease(v1, '1.0.0');
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  for (const rel of opts.releases) {
    const dir = join(work, `rel-${rel.version}`);
    makeRelease(dir, rel.version, v1);
    rel.patch?.(dir);
    await createBundle({ inDir: dir, version: rel.version, compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, `v${rel.version}.tar`) });
  }
  const server: BundleServer = await serveBundles(bundles);
  const bridgeConfig = writeBridgeConfig(join(work, 'bridge'), {
    gatewayId: gw,
    mqtt: { url: broker.url },
    handover: { timeoutMs: 10_000 },
    devices: sim.ports.slice(0, Math.max(1, opts.pymodbus ?? 1)).map((port, i) => ({ name: `plc${i}`, host: '127.0.0.1', port, unitId: 1, timeoutMs: 500, groups: [{ name: 'fast', intervalMs: 100, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] })),
  });
  const socket = join(work, 'bridge', 'data', 'plc-bridge.sock');
  const r = makeOtaRoot({
    releaseDir: v1,
    version: '1.0.0',
    config: {
      gatewayId: gw,
      mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } },
      ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 25_000 }, download: { idleTimeoutMs: 10_000, retries: 2 } },
      plcBridge: { config: bridgeConfig, launch: 'auto' },
      ...opts.agent,
    },
  });
  const wms = await mqttClient(broker.url, { clientId: `wms-${gw}` });
  const got = await collect(wms, `${root}/#`);
  const g = startGuard(r, GUARD_ARGS);
  await until(g, async () => (await bridgePing(socket))?.role === 'active', 'the agent to start the bridge', 30_000);
  const online = (version: string, slot: string): boolean =>
    got.some((m) => {
      const p = m.payload as { state?: string; version?: string; slot?: string };
      return m.topic === `${root}/status` && p.state === 'online' && p.version === version && p.slot === slot;
    });
  return {
    gatewayId: gw,
    root,
    broker,
    r,
    g,
    wms,
    got,
    socket,
    online,
    update: async (id, version) => {
      await until(g, () => got.some((m) => m.topic === `${root}/status` && (m.payload as { state: string }).state === 'online'), 'the agent online', 30_000);
      wms.publish(`${root}/cmd/update`, JSON.stringify({ id, params: { url: server.url(`v${version}.tar`) } }), { qos: 1 });
      await until(g, () => resOf(got, gw, id).some((p) => TERMINAL.includes(p.status)), `a terminal status for ${id}`, 120_000);
      return resOf(got, gw, id).find((p) => TERMINAL.includes(p.status))!;
    },
    stop: async () => {
      await g.stop();
      const p = await bridgePing(socket);
      if (p) process.kill(p.pid, 'SIGKILL');
      await wms.endAsync();
      await server.close();
      await sim.stop();
      await broker.stop();
    },
  };
}
