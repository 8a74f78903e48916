/**
 * Where the agent finds the PLC bridge: its control socket lives in the bridge's own data
 * directory, which the bridge's configuration file names (docs/plc-bridge.md).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBridgeConfigText } from '../plc-bridge/config.js';
import type { AgentConfig } from '../core/config.js';

export const DEFAULT_BRIDGE_DATA_DIR = '/var/lib/edge-agent/plc-bridge';

/** The bridge's data directory, or undefined when no bridge is configured or its file cannot be read. */
export function bridgeDataDir(config: AgentConfig): string | undefined {
  if (!config.plcBridge.config) return undefined;
  try {
    const file = config.plcBridge.config;
    const doc = parseBridgeConfigText(readFileSync(file, 'utf8'), file) as { dataDir?: unknown } | null;
    return typeof doc?.dataDir === 'string' && doc.dataDir.length > 0 ? doc.dataDir : DEFAULT_BRIDGE_DATA_DIR;
  } catch {
    return undefined;
  }
}

/** The bridge's control socket (lib/rpc.ts protocol: ping, status, handover), or undefined. */
export function bridgeSocketPath(config: AgentConfig): string | undefined {
  const dir = bridgeDataDir(config);
  return dir === undefined ? undefined : join(dir, 'plc-bridge.sock');
}
