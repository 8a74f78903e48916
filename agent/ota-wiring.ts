/**
 * Wires ota/ into the agent: the `update` and `rollback` operations, the trial health gate, the
 * backup taken before each activation, and the report of the boot guard's fallbacks from a
 * committed release that kept failing at start (agent/guard-report.ts). Called once by the
 * composition root.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { LoopMonitor } from '../lib/loops.js';
import { fsyncDir } from '../lib/atomic.js';
import { copyPrivate, vacuumIntoPrivate } from '../recovery/private-files.js';
import type { Db } from '../lib/sqlite.js';
import type { Updater } from '../ota/updater.js';
import { TrialGate } from '../ota/trial-gate.js';
import { loadSlots, type SlotName } from '../ota/slots.js';
import type { IncidentStore } from '../recovery/incidents.js';
import type { AgentConfig } from '../core/config.js';
import type { Router } from './router.js';
import type { WmsLink } from './wms-link.js';
import type { AgentEvent, Component } from '../core/ports.js';
import { rollbackOperation, updateOperation } from './ops/update.js';
import { reportGuardFallbacks } from './guard-report.js';

export interface OtaWiring {
  config: AgentConfig;
  configPath: string | undefined;
  db: Db;
  router: Router;
  link: WmsLink;
  loops: LoopMonitor;
  clock: Clock;
  logger: Logger;
  version: string;
  runningSlot: SlotName;
  /** Started by the boot guard, which starts the active slot after a restart. */
  underGuard: boolean;
  /** Crash-test fault injection (lib/fault.ts); a no-op in production. */
  fault: (point: string) => void;
  /** Graceful stop; the boot guard then starts whatever slot is active. */
  restart(reason: string): void;
  /** The release on trial passed its health gate (its configuration is known-good). */
  onCommitted?: () => void;
  /** More conditions of the health gate (the PLC bridge runs this release). */
  extraHealth?: () => { ok: boolean; why?: string };
  /** Queues an event on ~/events (durable: committed in the caller's transaction). */
  event?: (ev: AgentEvent, durable: boolean) => void;
  incidents?: Pick<IncidentStore, 'record' | 'resolve'>;
  /** When the next maintenance window opens (now, inside one); `update {window: true}` waits for it. */
  nextWindowStart?: () => number | undefined;
}

/** Registers the operations; returns the trial gate, a component to start after the WMS link. */
export function wireOta(w: OtaWiring): Component {
  const { config, logger } = w;
  const root = config.ota.root;
  const log = logger.child({ component: 'ota' });
  if (w.underGuard && w.event) {
    try {
      reportGuardFallbacks({ slots: loadSlots(root), db: w.db, incidents: w.incidents, event: w.event, logger: log, now: w.clock.now() });
    } catch (err) {
      log.error({ err }, 'could not report the boot guard fallbacks of slots.json');
    }
  }
  // Loaded on the first update: the bundle reader, the trust chain code and node-forge cost start-up
  // time and memory (bench/) that the agent needs on every restart and rarely for an update.
  let updater: Promise<Updater> | undefined;
  const loadUpdater = (): Promise<Updater> =>
    (updater ??= import('../ota/updater.js').then(
      (m) =>
        new m.Updater({
          root,
          runningSlot: w.runningSlot,
          runningVersion: w.version,
          deviceClass: config.deviceClass,
          trustPath: config.ota.trustAnchors,
          maxBundleBytes: config.ota.maxBundleBytes,
          download: {
            caPath: config.ota.download.ca,
            idleTimeoutMs: config.ota.download.idleTimeoutMs,
            retries: config.ota.download.retries,
            minBytesPerSecond: config.ota.download.minBytesPerSecond,
            stallWindowMs: config.ota.download.stallWindowMs,
          },
          backup: (id) => backup(w, id),
          logger: log,
          fault: w.fault,
        }),
    ));
  const gate = new TrialGate({
    root,
    runningSlot: w.runningSlot,
    stableMs: config.ota.healthGate.stableMs,
    timeoutMs: config.ota.healthGate.timeoutMs,
    healthy: () => {
      if (!w.link.isConnected()) return { ok: false, why: 'not connected to the WMS broker' };
      const h = w.loops.peek();
      if (!h.ok) return { ok: false, why: `unhealthy: ${h.stale.map((s) => s.name).join(', ') || `event loop lag ${h.eventLoopLagMs} ms`}` };
      return w.extraHealth?.() ?? { ok: true };
    },
    restart: () => w.restart('health gate failed'),
    clock: w.clock,
    logger: log,
    fault: w.fault,
  });
  // A release on trial says `updating` from its first status on, until its gate has decided.
  if (gate.isTrial()) {
    w.link.setState('updating');
    // Also when no update command waits for the gate (a trial started by hand).
    void gate.outcome.then((o) => {
      if (o === 'committed') w.link.setState('online');
    });
  }
  void gate.outcome.then((o) => {
    if (o === 'committed') w.onCommitted?.();
  });
  const deps = {
    updater: loadUpdater,
    gate,
    root,
    runningSlot: w.runningSlot,
    runningVersion: w.version,
    underGuard: w.underGuard,
    restart: () => setImmediate(() => w.restart('update activated')),
    setUpdating: (on: boolean) => w.link.setState(on ? 'updating' : 'online'),
    clock: w.clock,
    ...(w.nextWindowStart ? { nextWindowStart: w.nextWindowStart } : {}),
  };
  w.router.register(updateOperation(deps));
  w.router.register(rollbackOperation({ ...deps, restart: () => setImmediate(() => w.restart('rollback')) }));
  return gate;
}

/** The configuration file and a consistent copy of the store (VACUUM INTO), newest kept. */
function backup(w: OtaWiring, id: string): void {
  const dir = join(w.config.dataDir, 'backups');
  const target = join(dir, `${new Date(w.clock.now()).toISOString().replace(/[:.]/g, '-')}-${id}`);
  mkdirSync(target, { recursive: true, mode: 0o750 });
  // 0640 like the store: both may hold secrets (recovery/private-files.ts).
  if (w.configPath) copyPrivate(w.configPath, join(target, basename(w.configPath)));
  vacuumIntoPrivate(w.db, join(target, 'agent.db'));
  fsyncDir(target);
  // Only this kind (directories): {dataDir}/backups/store-*.db are recovery/store-backup.ts's.
  const all = readdirSync(dir)
    .map((n) => ({ n, s: statSync(join(dir, n)) }))
    .filter((e) => e.s.isDirectory())
    .map((e) => ({ n: e.n, t: e.s.mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const old of all.slice(w.config.ota.backupsKept)) rmSync(join(dir, old.n), { recursive: true, force: true });
  w.logger.info({ backup: target }, 'configuration and store backed up before activation');
}
