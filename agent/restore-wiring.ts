/**
 * Wires recovery/known-good.ts, recovery/store-*.ts and lib/memory-budget.ts into the agent, so
 * agent/main.ts needs a few lines only:
 *
 *   1. loadConfigWithRestore(): the configuration, or the last known-good copy of it when the file
 *      fails validation or its `.sha256` sidecar (exit 78 only when there is no usable copy);
 *   2. checkStoreAtStart(): the store's check and restore, before openDatabase and its migrations;
 *   3. wireRestore(): once the store and the outbox are open, hands the pending incidents of 1 and
 *      2 over, and returns the `restore` component: known-good copy and a store backup once the
 *      agent has proven itself, the store file's watch, the memory budget. The periodic store
 *      checks and backups are the built-in procedures store-check and store-backup, on their
 *      schedules (agent/maintenance-wiring.ts calls the keeper).
 *
 * "Proven itself" (when a configuration becomes known-good): the agent is started (every component
 * up), connected to the WMS broker, and every critical loop ticks. A configuration that cannot
 * reach the broker never becomes known-good; an update's commit takes a copy too.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { MemoryBudget } from '../lib/memory-budget.js';
import { errorMessage } from '../lib/errors.js';
import { checkSidecar, listKnownGood, restoreConfig, takeKnownGood, type ConfigRestore } from '../recovery/known-good.js';
import { addPending, flushPending, type PendingIncident } from '../recovery/pending-incidents.js';
import { checkStore, type StoreCheck } from '../recovery/store-check.js';
import { StoreKeeper } from '../recovery/store-keeper.js';
import { restoreNewestBackup, saveOpenStore } from '../recovery/store-backup.js';
import { quarantineFile } from '../recovery/quarantine.js';
import { ConfigError, configSchema, DEFAULT_CONFIG_PATH, envOverrides, loadConfig, storePath, type AgentConfig, type ConfigOverrides, type LoadedConfig } from '../core/config.js';
import type { AgentEvent, Component } from '../core/ports.js';
import type { IncidentStore } from '../recovery/incidents.js';
import { BRIDGE_COMPONENT } from './recovery-wiring.js';

export interface BootConfig extends LoadedConfig {
  /** The configuration file known-good copies are kept for (the one asked for). */
  source: string | undefined;
  /** The bytes that loaded, to keep as known-good once the agent proves itself. */
  content: Buffer | undefined;
  restore?: Extract<ConfigRestore, { restored: true }>;
}

function readMaybe(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Where known-good copies may be, before a configuration says where `dataDir` is: the flag or
 * environment value; else the broken file's own `dataDir` if it can be made out, the file's own
 * directory (a configuration kept in its data directory, as the demo and the tests do) and the
 * default. Copies are keyed by the file's path, so looking in a wrong place finds nothing.
 */
export function candidateDataDirs(content: Buffer | undefined, override: string | undefined, source?: string): string[] {
  if (override !== undefined) return [override];
  const out: string[] = [];
  if (content) {
    const text = content.toString('utf8');
    let dir: unknown;
    try {
      dir = (parseDocument(text, { uniqueKeys: false }).toJS() as { dataDir?: unknown } | null)?.dataDir;
    } catch {
      dir = undefined;
    }
    if (typeof dir !== 'string') dir = /^dataDir:[ \t]*["']?([^"'#\r\n]+?)["']?[ \t]*(#.*)?$/m.exec(text)?.[1];
    if (typeof dir === 'string' && dir.length > 0) out.push(dir);
  }
  if (source !== undefined) out.push(dirname(resolve(source)));
  out.push(configSchema.shape.dataDir.parse(undefined));
  return [...new Set(out)];
}

function listKnownGoodAnywhere(content: Buffer | undefined, opts: { overrides: ConfigOverrides; env: NodeJS.ProcessEnv }, source: string): boolean {
  return candidateDataDirs(content, opts.overrides.dataDir ?? envOverrides(opts.env).dataDir, source).some((d) => listKnownGood(d, source).length > 0);
}

/** loadConfig, falling back to the newest usable known-good copy; throws ConfigError when none is. */
export function loadConfigWithRestore(opts: { path?: string | undefined; overrides: ConfigOverrides; env: NodeJS.ProcessEnv; now?: () => number }): BootConfig {
  const now = opts.now ?? Date.now;
  const t0 = now();
  const env = envOverrides(opts.env);
  const source = opts.path ?? env.configPath ?? DEFAULT_CONFIG_PATH;
  const content = readMaybe(source);
  let failure: ConfigError;
  const sidecar = content ? checkSidecar(source, content) : { state: 'none' as const };
  if (sidecar.state === 'mismatch') {
    failure = new ConfigError('config-invalid', `${source} does not match ${source}.sha256 (config-checksum-mismatch: expected ${sidecar.expected ?? 'an unreadable digest'}, the file has ${sidecar.actual})`);
  } else if (content?.toString('utf8').trim() === '' && listKnownGoodAnywhere(content, opts, source)) {
    // What a power cut leaves of a file written in place; as YAML it is valid (all defaults).
    failure = new ConfigError('config-invalid', `${source} is empty`);
  } else {
    try {
      const loaded = loadConfig({ path: opts.path, overrides: opts.overrides, env: opts.env });
      return { ...loaded, source: loaded.path, content: loaded.path ? content : undefined };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      failure = err;
    }
  }
  const load = (p: string): LoadedConfig => loadConfig({ path: p, overrides: opts.overrides, env: opts.env });
  const looked: string[] = [];
  for (const dataDir of candidateDataDirs(content, opts.overrides.dataDir ?? env.dataDir, source)) {
    looked.push(`${dataDir}/known-good`);
    let r: ConfigRestore;
    try {
      r = restoreConfig({ dataDir, source, now: now(), validate: (_text, copy) => void load(copy) });
    } catch (err) {
      // E.g. a quarantine that cannot be written: this place cannot help, another may.
      looked[looked.length - 1] += ` (${errorMessage(err)})`;
      continue;
    }
    if (!r.restored) {
      if ('identical' in r) looked[looked.length - 1] += ` (its newest usable copy ${r.identical} is identical to the file: nothing to restore)`;
      continue;
    }
    const loaded = load(r.loadPath);
    const code = sidecar.state === 'mismatch' ? 'config-checksum-mismatch' : failure.code;
    addPending(loaded.config.dataDir, {
      component: 'config',
      code: 'config-restored',
      severity: 'warning',
      cause: code,
      action: r.replaced ? 'restore-known-good' : 'run-known-good-copy',
      detail: r.replaced
        ? `${failure.message}; replaced ${source} with the known-good copy ${r.from}; the bad file is in ${r.quarantined.join(', ') || '(nothing to keep)'}`
        : `${failure.message}; started with the known-good copy ${r.from}; ${source} could not be replaced (${r.replaceError ?? 'unknown'}) and is still bad`,
      recoveryMs: now() - t0,
      details: { path: source, failure: code, from: r.from, quarantined: r.quarantined, replaced: r.replaced, skipped: r.skipped },
    }, now());
    return { ...loaded, source, content: readMaybe(r.loadPath), restore: r };
  }
  throw new ConfigError(failure.code, `${failure.message}\n  no known-good copy to restore (looked in ${looked.join(', ')})`, failure.problems);
}

/** The store's check and restore; logs and records an incident for anything but a sound store. */
export function checkStoreAtStart(config: AgentConfig, logger: Logger, now: () => number = Date.now): StoreCheck | undefined {
  const log = logger.child({ component: 'restore' });
  const t0 = now();
  let r: StoreCheck;
  try {
    r = checkStore({ path: storePath(config), dataDir: config.dataDir, now });
  } catch (err) {
    // Not corruption (permissions, I/O): nothing was moved; openDatabase reports it next.
    log.error({ err, path: storePath(config) }, 'cannot check the state store');
    return undefined;
  }
  const recoveryMs = now() - t0;
  const base = { component: 'store', recoveryMs };
  switch (r.state) {
    case 'ok':
    case 'new':
      log.debug({ state: r.state, ms: recoveryMs }, 'state store checked');
      return r;
    case 'wal-lost':
      log.warn({ ms: recoveryMs }, 'the store write-ahead log of an unclean stop is missing: kept the store as of its last checkpoint');
      addPending(config.dataDir, { ...base, code: 'store-wal-lost', severity: 'warning', cause: 'store-wal-lost', action: 'keep-checkpointed', detail: 'agent.db-wal of an unclean stop is missing; kept agent.db as of its last checkpoint (integrity_check passed); changes after it are lost' }, now());
      return r;
    case 'restored':
    case 'restored': {
      const kept = r.quarantined.length > 0 ? `; the damaged files are in ${r.quarantined.join(', ')}` : '';
      log.error({ cause: r.cause, problems: r.problems.slice(0, 10), from: r.from.path, quarantined: r.quarantined, ms: recoveryMs }, r.cause === 'store-missing' ? 'the state store was missing: restored from a backup' : 'the state store was corrupt: restored from a backup');
      addPending(config.dataDir, { ...base, code: 'store-restored', severity: 'warning', cause: r.cause, action: 'restore-backup', detail: `${r.problems.slice(0, 3).join('; ')}; restored the ${r.from.kind} backup ${r.from.path} (${new Date(r.from.mtimeMs).toISOString()}); changes after it are lost${kept}`, details: { from: r.from, quarantined: r.quarantined, skipped: r.skipped } }, now());
      return r;
    }
    case 'rebuilt': {
      const kept = r.quarantined.length > 0 ? `; the damaged files are in ${r.quarantined.join(', ')}` : '';
      log.error({ cause: r.cause, problems: r.problems.slice(0, 10), quarantined: r.quarantined, skipped: r.skipped, ms: recoveryMs }, 'the state store was corrupt or missing and no backup is usable: starting with an empty store');
      addPending(config.dataDir, { ...base, code: 'store-rebuilt', severity: 'critical', cause: r.cause, action: 'rebuild-empty', detail: `${r.problems.slice(0, 3).join('; ')}; no usable backup: started with an empty store (queued messages, command history and incidents before now are lost)${kept}`, details: { quarantined: r.quarantined, skipped: r.skipped } }, now());
      return r;
    }
  }
}

export interface RestoreWiring {
  config: AgentConfig;
  boot: BootConfig;
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Queues an event on ~/events; durable: committed before returning. */
  event(ev: AgentEvent, durable: boolean): void;
  /** The incident store (recovery/incidents.ts). */
  incidents?: Pick<IncidentStore, 'record' | 'resolve'>;
  /** The supervised components (recovery/supervisor.ts): the bridge's config becomes known-good once it runs. */
  components?: () => { name: string; state: string }[];
  /** Started, connected to the broker, loops ticking. */
  healthy(): boolean;
  /** A configuration change is unconfirmed (agent/ops/config.ts): nothing becomes known-good meanwhile. */
  hold?(): boolean;
  /** Graceful stop and restart (main.ts shutdown(reason, true)). */
  restart(reason: string): void;
}

export interface RestoreComponent extends Component {
  /** An update was committed: its configuration is known-good. */
  committed(): void;
  /**
   * Called by the owner after every other component stopped and just before the store is
   * closed: when the store's file was removed under the agent, the open store (with what the
   * stop wrote) is saved to its path once more, so the next start loses nothing.
   */
  beforeClose(): void;
  status(): Record<string, unknown>;
  /** The store's keeper: backups and integrity checks on demand (the maintenance actions). */
  readonly keeper: Pick<StoreKeeper, 'backupNow' | 'checkNow' | 'checkNowOffThread' | 'lastCheck' | 'backingUp'>;
}

/** The incident's row id. A restore is over by the time it is recorded: it is resolved at once. */
function recordIncident(store: RestoreWiring['incidents'], inc: PendingIncident): number | undefined {
  if (!store) return undefined;
  const at = Date.parse(inc.at);
  const id = store.record({ at, component: inc.component, cause: inc.cause, action: inc.action, detail: inc.detail });
  if (inc.recoveryMs !== undefined) store.resolve(inc.component, at + inc.recoveryMs);
  return id;
}

/** Shaped like the supervisor's incident events (recovery/supervisor.ts). */
function incidentEvent(inc: PendingIncident, row: number | undefined): AgentEvent {
  return {
    type: 'incident',
    severity: inc.severity,
    code: inc.code,
    message: `${inc.component} ${inc.cause}: ${inc.action}; ${inc.detail}`,
    component: inc.component,
    incident: row ?? inc.id,
    cause: inc.cause,
    action: inc.action,
    at: inc.at,
    ...(inc.recoveryMs !== undefined ? { recoveryMs: inc.recoveryMs } : {}),
    ...(inc.details ? { details: inc.details } : {}),
  };
}

/** Hands pending incidents over and builds the `restore` component (start it last). */
export function wireRestore(w: RestoreWiring): RestoreComponent {
  const { config, clock } = w;
  const log = w.logger.child({ component: 'restore' });
  const deliver = (inc: PendingIncident): void => {
    log.warn({ incident: inc.id, code: inc.code, target: inc.component, cause: inc.cause, action: inc.action, detail: inc.detail, recoveryMs: inc.recoveryMs }, 'incident');
    w.event(incidentEvent(inc, recordIncident(w.incidents, inc)), true);
  };
  try {
    const n = flushPending(config.dataDir, deliver);
    if (n > 0) log.info({ incidents: n }, 'incidents from before the store was open recorded');
  } catch (err) {
    log.error({ err }, 'could not hand the pending incidents over; they stay pending');
  }
  let lastKnownGood: { at: string; copy: string; reason: string } | undefined;
  const keepConfig = (reason: string, source = w.boot.source, content = w.boot.content): void => {
    if (!source || !content) return;
    try {
      const r = takeKnownGood({ dataDir: config.dataDir, source, content, keep: config.restore.keepConfigs });
      lastKnownGood = { at: new Date(clock.now()).toISOString(), copy: r.copy, reason };
      log.info({ copy: r.copy, taken: r.taken, reason }, r.taken ? 'configuration kept as known-good' : 'configuration already known-good');
    } catch (err) {
      log.error({ err, source }, 'could not keep a known-good copy of the configuration');
    }
  };
  const record = (inc: Omit<PendingIncident, 'id' | 'at'>): void => {
    const full = { ...inc, id: randomUUID(), at: new Date(clock.now()).toISOString() };
    try {
      deliver(full);
    } catch (err) {
      log.error({ err }, 'could not record the incident in the store; it waits in pending-incidents.json');
      addPending(config.dataDir, inc, clock.now());
    }
  };
  // The store's file removed or replaced under the running agent (rm agent.db*): the open handle
  // still reaches the unlinked file, so it is saved to the path, then the agent restarts onto it.
  const path = storePath(config);
  let saved = false;
  let raised = false;
  const onDetached = (why: string, foreign: boolean): boolean => {
    const t0 = clock.now();
    let quarantined: string[] = [];
    try {
      // Someone else's file at the path (a store copied over it by hand) is kept, not overwritten.
      // Only the main file: the -wal/-shm still at the path are the open store's own, and next to
      // the foreign file in quarantine SQLite would read them as its WAL.
      if (foreign && existsSync(path)) quarantined = [quarantineFile(config.dataDir, path, t0)];
      saveOpenStore(w.db, path);
      saved = true;
      addPending(config.dataDir, { component: 'store', code: 'store-detached', severity: 'warning', cause: 'store-missing', action: 'save-open-store', recoveryMs: clock.now() - t0, detail: `${why}; the store the agent has open (every change up to now) was written to ${path} again; restarting to reopen it${quarantined.length > 0 ? `; the file found there is in ${quarantined.join(', ')}` : ''}`, details: { why, quarantined } }, clock.now());
      log.error({ why, path, quarantined }, 'the store file was removed or replaced under the agent: saved the open store to its path; restarting');
      w.restart('the store file was removed or replaced');
      return true;
    } catch (err) {
      log.error({ err, why, path }, 'cannot save the open store to its path');
      if (!existsSync(path)) {
        try {
          const r = restoreNewestBackup(config.dataDir, path);
          if (r.from) {
            addPending(config.dataDir, { component: 'store', code: 'store-restored', severity: 'warning', cause: 'store-missing', action: 'restore-backup', recoveryMs: clock.now() - t0, detail: `${why}; the open store could not be saved (${errorMessage(err)}); restored the ${r.from.kind} backup ${r.from.path} (${new Date(r.from.mtimeMs).toISOString()}); changes after it are lost; restarting`, details: { why, from: r.from, skipped: r.skipped } }, clock.now());
            w.restart('the store file was removed');
            return true;
          }
        } catch (err2) {
          log.error({ err: err2 }, 'cannot restore a backup to the store path either');
        }
      }
      // Nothing to put there: keep running on the open store (a restart would start empty) and say so once.
      if (!raised) {
        raised = true;
        record({ component: 'store', code: 'store-detached', severity: 'critical', cause: 'store-missing', action: 'keep-running', detail: `${why}; the open store could not be saved (${errorMessage(err)}) and no backup is usable; the agent keeps running on the open store and tries again at each check; a restart now would start with an empty store` });
      }
      return false;
    }
  };
  const keeper = new StoreKeeper({
    db: w.db,
    dataDir: config.dataDir,
    keepBackups: config.restore.keepBackups,
    recentBackupMs: config.restore.backupIntervalMs,
    path,
    watchIntervalMs: config.restore.storeWatchIntervalMs,
    onDetached,
    clock,
    logger: log,
    onCorrupt: (problems, when) => {
      // Not through the store: it is the damaged thing. The next start restores and hands it over.
      addPending(config.dataDir, { component: 'store', code: 'store-corrupt', severity: 'critical', cause: 'store-corrupt', action: 'restart', detail: `${when === 'backup' ? 'a backup' : 'a quick_check'} found: ${problems.slice(0, 3).join('; ')}; restarting: the start-time check moves the store aside and restores the newest good backup` }, clock.now());
      w.restart('the state store is damaged');
    },
  });
  const memory = new MemoryBudget({
    budget: { rssBytes: config.memory.rssBytes, heapBytes: config.memory.heapBytes },
    checkIntervalMs: config.memory.checkIntervalMs,
    clock,
    logger: log,
    onExceeded: ({ rss, heap, budget, over }) => {
      record({ component: 'agent', code: 'memory-budget-exceeded', severity: 'warning', cause: 'memory-budget', action: 'restart', detail: `memory near its budget (${over.join(' and ')}): rss ${rss} of ${budget.rssBytes}, heap ${heap} of ${budget.heapBytes} bytes; restarting cleanly (state flushed)` });
      w.restart('memory budget exceeded');
    },
  });
  // The bridge's configuration, once the bridge runs on it (read then: the bridge loaded it at its start).
  const others = config.plcBridge.config ? [{ path: config.plcBridge.config, component: BRIDGE_COMPONENT, kept: false }] : [];
  const keepOthers = (): void => {
    const states = w.components?.() ?? [];
    for (const o of others.filter((x) => !x.kept && states.some((c) => c.name === x.component && c.state === 'running'))) {
      o.kept = true;
      keepConfig(`${o.component} running`, o.path, readMaybe(o.path));
    }
  };
  let poll: NodeJS.Timeout | undefined;
  let proven = false;
  const stopPoll = (): void => {
    clock.clearInterval(poll);
    poll = undefined;
  };
  return {
    keeper,
    name: 'restore',
    start: async () => {
      await keeper.start();
      await memory.start();
      poll = clock.setInterval(() => {
        if (w.hold?.()) return;
        if (!proven && w.healthy()) {
          proven = true;
          keepConfig('started and connected');
          keeper.proven();
        }
        if (proven) keepOthers();
        if (proven && others.every((o) => o.kept)) stopPoll();
      }, 500);
    },
    stop: async () => {
      stopPoll();
      await memory.stop();
      await keeper.stop();
    },
    committed: () => {
      keepConfig('update committed');
      if (!proven) keeper.proven();
    },
    beforeClose: () => {
      if (!saved) return;
      try {
        saveOpenStore(w.db, path);
        log.info({ path }, 'saved the open store to its path again at stop');
      } catch (err) {
        log.error({ err, path }, 'cannot save the open store at stop; the copy made when the removal was found stays');
      }
    },
    status: () => ({
      knownGood: lastKnownGood ?? null,
      lastBackup: keeper.lastBackup ?? null,
      lastIntegrityCheck: keeper.lastCheck ?? null,
      memory: memory.lastSample() ?? null,
      configRestored: w.boot.restore ? { from: w.boot.restore.from, replaced: w.boot.restore.replaced } : null,
    }),
  };
}
