/** What read-only subcommands share: the config (for paths), without starting anything. */
import { existsSync } from 'node:fs';
import { loadConfig, adminSocketPath, storePath, ConfigError, type AgentConfig } from '../../core/config.js';
import { openDatabase, type Db } from '../../lib/sqlite.js';

export interface CliContext {
  config: AgentConfig;
  socket: string;
  store: string;
}

type Values = Record<string, string | boolean | undefined>;

export function cliContext(values: Values): CliContext {
  const configPath = typeof values.config === 'string' ? values.config : undefined;
  const dataDir = typeof values['data-dir'] === 'string' ? values['data-dir'] : undefined;
  const { config } = loadConfig({ path: configPath, overrides: { dataDir } });
  return { config, socket: adminSocketPath(config), store: storePath(config) };
}

/** cliContext(), or the exit code of fail() once it has written why there is none. */
export function contextOrExit(name: string, values: Values): CliContext | number {
  try {
    return cliContext(values);
  } catch (err) {
    return fail(name, err);
  }
}

/** `--limit`: a whole number of at least 1, `dflt` when absent; undefined once the usage error is written. */
export function limitOption(name: string, value: Values[string], dflt: number): number | undefined {
  const limit = typeof value === 'string' ? Number(value) : dflt;
  if (!Number.isInteger(limit) || limit < 1) {
    process.stderr.write(`${name}: --limit must be a whole number of at least 1, got ${JSON.stringify(value)}\n`);
    return undefined;
  }
  return limit;
}

/** The store opened read-only, or undefined when the agent never ran with this data directory. */
export function openStoreReadonly(path: string): Db | undefined {
  if (!existsSync(path)) return undefined;
  return openDatabase(path, { readonly: true });
}

/** `read` on the store opened read-only, which is closed after; undefined when there is no store. */
export function withStoreReadonly<T>(path: string, read: (db: Db) => T): T | undefined {
  const db = openStoreReadonly(path);
  if (!db) return undefined;
  try {
    return read(db);
  } finally {
    db.close();
  }
}

export function fail(prefix: string, err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${prefix}: ${err.message}\n`);
    return 78;
  }
  process.stderr.write(`${prefix}: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}
