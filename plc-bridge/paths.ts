/**
 * Where others find the PLC bridge: its control socket lives in the bridge's own data directory,
 * which the bridge's configuration file names (docs/plc-bridge.md). The agent's wiring and its
 * diagnostics read it from the file the agent's `plcBridge.config` names; this file knows only
 * the bridge's side, so it imports nothing but the bridge's configuration reader.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBridgeConfigText } from './config.js';

export const DEFAULT_BRIDGE_DATA_DIR = '/var/lib/edge-agent/plc-bridge';

/** The bridge's data directory, or undefined when no bridge is configured or its file cannot be read. */
export function bridgeDataDir(configFile: string | undefined): string | undefined {
  if (!configFile) return undefined;
  try {
    const doc = parseBridgeConfigText(readFileSync(configFile, 'utf8'), configFile) as { dataDir?: unknown } | null;
    return typeof doc?.dataDir === 'string' && doc.dataDir.length > 0 ? doc.dataDir : DEFAULT_BRIDGE_DATA_DIR;
  } catch {
    return undefined;
  }
}

/** The control socket of the bridge whose data directory is `dataDir`. */
export function socketIn(dataDir: string): string {
  return join(dataDir, 'plc-bridge.sock');
}

/** The bridge's control socket (lib/rpc.ts protocol: ping, status, handover), or undefined. */
export function bridgeSocketPath(configFile: string | undefined): string | undefined {
  const dir = bridgeDataDir(configFile);
  return dir === undefined ? undefined : socketIn(dir);
}
