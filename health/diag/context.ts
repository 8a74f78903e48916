/**
 * What the checks run against. From the command line: the configuration (a load failure is
 * itself a finding), the store opened read-only, and what the daemon says on its admin socket
 * when it answers (`diagnostics`: status, loops, cached store integrity, components). Inside the
 * daemon: its own handles (health/diag/daemon.ts).
 */
import { existsSync } from 'node:fs';
import { adminRequest } from '../../core/admin.js';
import { adminSocketPath, DEFAULT_CONFIG_PATH, loadConfig, storePath, type AgentConfig } from '../../core/config.js';
import type { AgentStoreReader } from '../../core/ports.js';
import { openDatabase, quickCheck, type Db } from '../../lib/sqlite.js';
import { buildInfo } from '../../lib/version.js';
import type { DiagContext, LiveFacts, PeerCertTimes } from './types.js';

/** How long the command line waits for the daemon's answer before calling it hung. */
const LIVE_MS = 2000;

export type ContextInput = Omit<DiagContext, 'brokerCert' | 'learnBrokerCert'>;

/** Adds the hand-over between the connectivity and the clock checks. */
export function diagContext(input: ContextInput): DiagContext {
  let learn: (c: PeerCertTimes | undefined) => void = () => undefined;
  const brokerCert = new Promise<PeerCertTimes | undefined>((resolve) => (learn = resolve));
  return { ...input, brokerCert, learnBrokerCert: (c) => learn(c) };
}

/** The daemon's store integrity from its cached quick_check ('ok' or a list of problems). */
export function liveIntegrity(live: LiveFacts | undefined): string[] | undefined {
  const i = (live?.store as { integrity?: unknown } | undefined)?.integrity;
  if (i === 'ok') return [];
  return Array.isArray(i) ? i.map(String) : undefined;
}

async function askDaemon(socket: string): Promise<{ live: LiveFacts | undefined; daemon: DiagContext['daemon'] }> {
  for (const method of ['diagnostics', 'status']) {
    try {
      return { live: (await adminRequest(socket, method, {}, LIVE_MS)) as LiveFacts, daemon: 'running' };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'unknown-method') continue;
      if (code === 'admin-timeout') return { live: undefined, daemon: 'not answering' };
      return { live: undefined, daemon: 'not running' };
    }
  }
  return { live: undefined, daemon: 'not running' };
}

export interface CliDiag {
  ctx: DiagContext;
  close: () => void;
}

/** The context for `edge-agent diag` and `edge-agent support-bundle`; never throws for a bad configuration. */
export async function cliDiagContext(values: Record<string, string | boolean | undefined>, storeReader: AgentStoreReader): Promise<CliDiag> {
  const build = buildInfo();
  let config: AgentConfig | undefined;
  let configPath: string | undefined;
  let configError: Error | undefined;
  try {
    ({ config, path: configPath } = loadConfig({
      path: typeof values.config === 'string' ? values.config : undefined,
      overrides: { dataDir: typeof values['data-dir'] === 'string' ? values['data-dir'] : undefined },
    }));
  } catch (err) {
    configError = err instanceof Error ? err : new Error(String(err));
    // The file that failed, so a support bundle can say what is wrong with it.
    configPath = typeof values.config === 'string' ? values.config : process.env.EDGE_AGENT_CONFIG || DEFAULT_CONFIG_PATH;
  }
  let db: Db | undefined;
  let live: LiveFacts | undefined;
  let daemon: DiagContext['daemon'] = 'not running';
  let storeError: string | undefined;
  if (config) {
    ({ live, daemon } = await askDaemon(adminSocketPath(config)));
    const path = storePath(config);
    // A store that exists but does not open is the storage group's finding, not a crash.
    try {
      if (existsSync(path)) db = openDatabase(path, { readonly: true });
    } catch (err) {
      storeError = err instanceof Error ? err.message : String(err);
    }
  }
  const store = db;
  const ctx = diagContext({
    source: 'cli',
    config,
    configPath,
    configError,
    now: () => Date.now(),
    version: build.version,
    builtAt: build.builtAt,
    db: store,
    storeReader,
    ...(storeError ? { storeError } : {}),
    live,
    daemon,
    integrity: () => liveIntegrity(live) ?? (store ? quickCheck(store) : undefined),
  });
  return { ctx, close: () => store?.close() };
}
