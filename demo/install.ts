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
  };
  const configPath = join(root, 'config.yaml');
  writeFileSync(configPath, stringify(config));
  return { root, dataDir, configPath, trustPath, guard: guardEntry(root), version };
}
