/**
 * The agent's configuration: one schema, validated whole at load. Every error is reported at
 * once with its key path; defaults live in the schema; environment overrides are read here and
 * nowhere else (lib/sdnotify.ts reads systemd's own NOTIFY_SOCKET and WATCHDOG_*). Precedence: command-line flags > environment > file > defaults.
 *
 * The file is YAML (JSON is valid YAML too). docs/configuration.md holds a complete commented
 * example; test/unit/docs-config.test.ts checks that example against this schema.
 *
 * The schema itself is in config-schema.ts; this file reads, overrides, validates and derives
 * paths. Its exports stay importable from here.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { EdgeError, registerCodes } from '../lib/errors.js';
import { configSchema, type AgentConfig } from './config-schema.js';
import { applyLegacyScheduleKeys } from './legacy-keys.js';

export const CONFIG_CODES = registerCodes('config', ['config-not-found', 'config-unreadable', 'config-syntax', 'config-invalid'] as const);
export type ConfigCode = (typeof CONFIG_CODES)[number];

export class ConfigError extends EdgeError<ConfigCode> {
  constructor(
    code: ConfigCode,
    message: string,
    readonly problems: string[] = [],
  ) {
    super(code, message);
  }
}

/** EX_CONFIG from sysexits.h: what `run` exits with when the configuration is invalid. */
export const EXIT_CONFIG = 78;

export { configSchema, GATEWAY_ID, HEALTH_THRESHOLDS, type AgentConfig } from './config-schema.js';

export interface ConfigOverrides {
  broker?: string | undefined;
  gatewayId?: string | undefined;
  dataDir?: string | undefined;
  logLevel?: string | undefined;
  /** The install root, as the boot guard passes it (EDGE_AGENT_ROOT). */
  otaRoot?: string | undefined;
}

export const DEFAULT_CONFIG_PATH = '/etc/edge-agent/config.yaml';

/** The one place environment variables are read for configuration. */
export function envOverrides(env: NodeJS.ProcessEnv): ConfigOverrides & { configPath?: string | undefined } {
  return {
    configPath: env.EDGE_AGENT_CONFIG || undefined,
    broker: env.EDGE_AGENT_BROKER || undefined,
    gatewayId: env.EDGE_AGENT_GATEWAY_ID || undefined,
    dataDir: env.EDGE_AGENT_DATA_DIR || undefined,
    logLevel: env.EDGE_AGENT_LOG_LEVEL || undefined,
    otaRoot: env.EDGE_AGENT_ROOT || undefined,
  };
}

/** The crash tests' fault point (lib/fault.ts), or undefined. */
export function faultFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  return env.EDGE_AGENT_FAULT || undefined;
}

/** The slot this process runs from, as the boot guard or the unit says (default A). */
export function slotFromEnv(env: NodeJS.ProcessEnv): string {
  return env.EDGE_AGENT_SLOT || 'A';
}

/** A zod issue path as the problems print it: `a.b[0].c`. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

/** Validates a parsed document; pure. */
export function validateConfig(raw: unknown, overrides: ConfigOverrides = {}): AgentConfig {
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new ConfigError('config-invalid', 'the configuration must be a mapping of keys to values', ['(top level): expected a mapping']);
  }
  const doc: Record<string, unknown> = { ...((raw as Record<string, unknown> | null) ?? {}) };
  if (overrides.gatewayId !== undefined) doc.gatewayId = overrides.gatewayId;
  if (overrides.dataDir !== undefined) doc.dataDir = overrides.dataDir;
  if (overrides.otaRoot !== undefined) {
    const ota = doc.ota;
    doc.ota = { ...(ota && typeof ota === 'object' ? ota : {}), root: overrides.otaRoot };
  }
  if (overrides.logLevel !== undefined) {
    const log = doc.log;
    doc.log = { ...(log && typeof log === 'object' ? log : {}), level: overrides.logLevel };
  }
  if (overrides.broker !== undefined) {
    const mqtt = doc.mqtt;
    doc.mqtt = { ...(mqtt && typeof mqtt === 'object' ? (mqtt) : {}), url: overrides.broker };
  }
  if (doc.gatewayId === undefined) doc.gatewayId = defaultGatewayId();
  const parsed = configSchema.safeParse(doc);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
    throw new ConfigError('config-invalid', `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`, problems);
  }
  // Keys of earlier releases that moved onto the maintenance schedules (core/legacy-keys.ts).
  return applyLegacyScheduleKeys(parsed.data);
}

export function parseConfigText(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => e.message.split('\n')[0] ?? e.message);
    throw new ConfigError('config-syntax', `${source} is not valid YAML:\n  ${problems.join('\n  ')}`, problems);
  }
  return doc.toJS() as unknown;
}

export interface LoadedConfig {
  config: AgentConfig;
  /** The file that was read, or undefined when running on defaults. */
  path: string | undefined;
}

/**
 * Reads and validates the configuration. An explicitly named file must exist; the default path
 * may be missing, and then the agent runs on defaults plus flags and environment.
 */
export function loadConfig(opts: { path?: string | undefined; overrides?: ConfigOverrides; env?: NodeJS.ProcessEnv }): LoadedConfig {
  const env = envOverrides(opts.env ?? process.env);
  const explicit = opts.path ?? env.configPath;
  const path = explicit ?? DEFAULT_CONFIG_PATH;
  let raw: unknown;
  let used: string | undefined = path;
  try {
    raw = parseConfigText(readFileSync(path, 'utf8'), path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err instanceof ConfigError) throw err;
    if (code === 'ENOENT' && explicit === undefined) {
      raw = {};
      used = undefined;
    } else if (code === 'ENOENT') {
      throw new ConfigError('config-not-found', `configuration file ${path} does not exist`);
    } else {
      throw new ConfigError('config-unreadable', `cannot read ${path}: ${(err as Error).message}`);
    }
  }
  const merged: ConfigOverrides = {
    broker: opts.overrides?.broker ?? env.broker,
    gatewayId: opts.overrides?.gatewayId ?? env.gatewayId,
    dataDir: opts.overrides?.dataDir ?? env.dataDir,
    logLevel: opts.overrides?.logLevel ?? env.logLevel,
    otaRoot: opts.overrides?.otaRoot ?? env.otaRoot,
  };
  return { config: validateConfig(raw, merged), path: used };
}

function defaultGatewayId(): string {
  const h = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
  return h.length > 0 ? h : 'gateway';
}

export function adminSocketPath(config: AgentConfig): string {
  return config.admin.socket ?? join(config.dataDir, 'agent.sock');
}

export function storePath(config: AgentConfig): string {
  return join(config.dataDir, 'agent.db');
}

/** The recent-log ring (lib/log-ring.ts) that `edge-agent diag` and the support bundle read. */
export function logRingDir(config: AgentConfig): string {
  return join(config.dataDir, 'logs');
}
