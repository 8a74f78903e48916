/**
 * The demo's A/B install root, laid out as `edge-agent install` and a real gateway have it:
 *
 *   ROOT/slots/A      this release: package.json + a copy of dist/ (source maps left out)
 *   ROOT/slots.json   slot A committed and active (initSlots)
 *   ROOT/guard        the boot guard, outside the slots (installGuard)
 *   ROOT/node_modules a symlink to the repo's node_modules: Node's module resolution walks up
 *                     from ROOT/slots/X/dist/... to it, so no slot (and no bundle) carries a copy
 *   ROOT/trust.pem    the trust anchor update bundles must chain to
 *   ROOT/config.yaml  the agent's configuration; ROOT/data its data directory
 *   ROOT/plc-bridge.yaml  the PLC bridge's configuration (one simulated PLC, two groups); its data
 *                     directory ROOT/data/plc-bridge holds its store and control socket
 *
 * Synchronous file work only; nothing is started here.
 */
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { guardEntry, installGuard } from '../ota/guard-install.js';
import { initSlots } from '../ota/slots.js';

/** The repo's version (package.json). */
export function repoVersion(repo: string): string {
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error(`${repo}/package.json has no version`);
  return pkg.version;
}

/** Writes a release of `version` into `dir`: the repo's package.json with that version, and a copy of its dist/. */
export function makeRelease(repo: string, dir: string, version: string): void {
  mkdirSync(dir, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, version }, null, 2) + '\n');
  cpSync(join(repo, 'dist'), join(dir, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.map') });
}

/** Replaces `search` by `replace` in a file; throws when the text is not there (the demo would show nothing). */
export function patchFile(path: string, search: RegExp, replace: string): void {
  const before = readFileSync(path, 'utf8');
  const after = before.replace(search, replace);
  if (after === before) throw new Error(`patch of ${path} did not apply: ${String(search)} not found`);
  writeFileSync(path, after);
}

export interface DemoInstall {
  root: string;
  dataDir: string;
  configPath: string;
  trustPath: string;
  /** ROOT/guard/ota/boot-guard.js */
  guard: string;
  version: string;
  bridgeConfigPath: string;
  /** The bridge's control socket ({dataDir}/plc-bridge.sock). */
  bridgeSocket: string;
}

export interface InstallOptions {
  repo: string;
  root: string;
  /** The trust anchors for update bundles (PEM). */
  trustPem: string;
  brokerUrl: string;
  gatewayId: string;
  /** The trial's health gate: short, so the demo shows a commit and a failed gate in seconds. */
  healthGate: { stableMs: number; timeoutMs: number };
  /** The simulated PLC's Modbus TCP port on 127.0.0.1. */
  plcPort: number;
}

/** The PLC the demo's bridge reads: its name is a topic level, ~/plc/sorter1/{fast,slow}. */
export const PLC_DEVICE = 'sorter1';

/**
 * The bridge's configuration for the simulated PLC (demo/plc-sim.ts animate(): holding 0..1 a
 * seconds counter, 2..3 a float32 sine, input 0 a ramp, coil 0 toggling each second; the rest
 * keeps what is written). A fast group whose ramp changes every cycle, so every cycle publishes,
 * and a slow one with a tag of each kind the WMS may write.
 */
export function bridgeConfig(o: { gatewayId: string; brokerUrl: string; dataDir: string; plcPort: number }): Record<string, unknown> {
  return {
    gatewayId: o.gatewayId,
    dataDir: o.dataDir,
    // The bridge falls back to MQTT 3.1.1 by itself when the broker (aedes) refuses 5.
    mqtt: { url: o.brokerUrl, reconnect: { initialMs: 200, maxMs: 2000 } },
    devices: [
      {
        name: PLC_DEVICE,
        host: '127.0.0.1',
        port: o.plcPort,
        timeoutMs: 500,
        groups: [
          {
            name: 'fast',
            intervalMs: 200,
            tags: [
              { name: 'speed', area: 'holding', address: 2, type: 'float32', deadband: 0.5 },
              { name: 'ramp', area: 'input', address: 0, type: 'uint16' },
            ],
          },
          {
            name: 'slow',
            intervalMs: 1000,
            tags: [
              { name: 'counter', area: 'holding', address: 0, type: 'uint32' },
              { name: 'running', area: 'coil', address: 0, type: 'bool' },
              { name: 'jam', area: 'holding', address: 12, type: 'bool', bit: 3, access: 'read-write' },
              { name: 'setpoint', area: 'holding', address: 10, type: 'uint16', access: 'read-write', max: 3000 },
              { name: 'enable', area: 'coil', address: 1, type: 'bool', access: 'read-write' },
              { name: 'label', area: 'holding', address: 20, type: 'string', length: 4, access: 'read-write' },
            ],
          },
        ],
      },
    ],
  };
}

export function installRoot(o: InstallOptions): DemoInstall {
  const { root } = o;
  const version = repoVersion(o.repo);
  makeRelease(o.repo, join(root, 'slots', 'A'), version);
  symlinkSync(join(o.repo, 'node_modules'), join(root, 'node_modules'));
  initSlots(root, { version });
  installGuard(join(o.repo, 'dist'), root);
  const dataDir = join(root, 'data');
  mkdirSync(dataDir);
  const trustPath = join(root, 'trust.pem');
  writeFileSync(trustPath, o.trustPem);
  const bridgeDataDir = join(dataDir, 'plc-bridge');
  const bridgeConfigPath = join(root, 'plc-bridge.yaml');
  writeFileSync(bridgeConfigPath, stringify(bridgeConfig({ gatewayId: o.gatewayId, brokerUrl: o.brokerUrl, dataDir: bridgeDataDir, plcPort: o.plcPort })));
  const config = {
    gatewayId: o.gatewayId,
    dataDir,
    // aedes speaks MQTT 3.1.1 only; the agent's default is MQTT 5.
    mqtt: { url: o.brokerUrl, protocolVersion: 4, reconnect: { initialMs: 200, maxMs: 2000 } },
    // The guard sets EDGE_AGENT_ROOT for its agents; the CLI (`slots`, `history`) reads it here.
    ota: { root, trustAnchors: trustPath, healthGate: o.healthGate, download: { idleTimeoutMs: 10_000, retries: 2 } },
    // Above the router's 5 s wait for running operations: an agent stopped during its health gate
    // waits that long (its update op awaits the gate's outcome), and should still exit cleanly.
    shutdownTimeoutMs: 8000,
    // The agent's watchdog starts the bridge as a detached process (no systemd here) that
    // outlives the agent; each new release's agent hands it over to its own code.
    plcBridge: { config: bridgeConfigPath, launch: 'auto' },
  };
  const configPath = join(root, 'config.yaml');
  writeFileSync(configPath, stringify(config));
  return { root, dataDir, configPath, trustPath, guard: guardEntry(root), version, bridgeConfigPath, bridgeSocket: join(bridgeDataDir, 'plc-bridge.sock') };
}
