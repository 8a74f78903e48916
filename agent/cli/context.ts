/** What read-only subcommands share: the config (for paths), without starting anything. */
import { existsSync } from 'node:fs';
import { loadConfig, adminSocketPath, storePath, ConfigError, type AgentConfig } from '../config.js';
import { openDatabase, type Db } from '../../lib/sqlite.js';

export interface CliContext {
  config: AgentConfig;
  socket: string;
  store: string;
}

export function cliContext(values: Record<string, string | boolean | undefined>): CliContext {
  const configPath = typeof values.config === 'string' ? values.config : undefined;
  const dataDir = typeof values['data-dir'] === 'string' ? values['data-dir'] : undefined;
  const { config } = loadConfig({ path: configPath, overrides: { dataDir } });
  return { config, socket: adminSocketPath(config), store: storePath(config) };
}

/** The store opened read-only, or undefined when the agent never ran with this data directory. */
export function openStoreReadonly(path: string): Db | undefined {
  if (!existsSync(path)) return undefined;
  return openDatabase(path, { readonly: true });
}

export function fail(prefix: string, err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${prefix}: ${err.message}\n`);
    return 78;
  }
  process.stderr.write(`${prefix}: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}
