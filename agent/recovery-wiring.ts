/**
 * Wires recovery/ into the agent: the supervisor over the PLC bridge and the services the
 * configuration declares, its incident store, the `restart` targets, the escalation hooks
 * (configuration restore, release rollback) and the hung-agent fault hook. Called once by the
 * composition root.
 *
 * The PLC bridge (when `plcBridge.config` is set): under systemd (INVOCATION_ID) it is the unit
 * `edge-plc-bridge.service`; otherwise, with `plcBridge.launch: auto`, a detached process
 * `node dist/agent/cli/index.js plc-bridge --config FILE` (on the release's own runtime/bin/node
 * when it has one) that outlives the agent and is adopted
 * by the next one. Its probe is `ping` on its control socket, so a bridge whose PLCs or broker are
 * down is alive (its problem is an alert, not a restart).
 *
 * The agent's own parts (`inProcess`: the WMS link, the health sampler, the update runner) say
 * themselves whether they are healthy, hung or dead; a hang counts only once it has lasted
 * (confirmHangs), since a stall of the whole agent makes every part look hung at once.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { LoopMonitor } from '../lib/loops.js';
import type { Db } from '../lib/sqlite.js';
import { blockEventLoop } from '../lib/fault.js';
import { failTrial, loadSlots, otherSlot, rollback, saveSlots } from '../ota/slots.js';
import { IncidentStore } from '../recovery/incidents.js';
import { ManagedProcess } from '../recovery/process.js';
import { SystemdUnit } from '../recovery/systemd-unit.js';
import { Supervisor, type ConfigRestoreOutcome, type InProcessTarget, type TargetSpec } from '../recovery/supervisor.js';
import { restoreConfig as restoreKnownGood } from '../recovery/known-good.js';
import type { ProbeSpec } from '../recovery/probes.js';
import type { AgentConfig } from '../core/config.js';
import { BRIDGE_NODE_FLAGS } from '../plc-bridge/node-flags.js';
import { runtimeOf } from '../plc-bridge/active-slot.js';
import { bridgeSocketPath } from '../plc-bridge/paths.js';
import type { AgentEvent } from '../core/ports.js';
import type { AdminMethod } from '../core/admin.js';

export const BRIDGE_COMPONENT = 'plc-bridge';
export const BRIDGE_UNIT = 'edge-plc-bridge.service';

export interface RecoveryWiring {
  config: AgentConfig;
  db: Db;
  clock: Clock;
  logger: Logger;
  loops: LoopMonitor;
  env: NodeJS.ProcessEnv;
  event(ev: AgentEvent): void;
  /** Graceful stop and start again; the boot guard then starts whatever slot is active. */
  restart(reason: string): void;
  /** Parts of the agent itself under the watchdog (their owners implement the interface). */
  inProcess?: InProcessTarget[];
  /** EDGE_AGENT_FAULT, for the hung-agent test hook. */
  fault?: string | undefined;
  /** The bridge's control socket as the caller resolved it once (reading the bridge's file); default: resolved here. */
  bridgeSocket?: string | undefined;
}

export interface RecoveryParts {
  supervisor: Supervisor;
  incidents: IncidentStore;
  /** For the `restart` operation: one entry per supervised component. */
  restartTargets: Record<string, () => Promise<void>>;
  /** Extra admin methods (only the fault hook, when EDGE_AGENT_FAULT asks for it). */
  adminMethods: Record<string, AdminMethod>;
}

/** dist/agent/recovery-wiring.js -> dist/agent/cli/index.js: the CLI of the release that runs. */
export function cliPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'cli', 'index.js');
}

function bridgeTarget(w: RecoveryWiring, dir: string): TargetSpec | undefined {
  const { config } = w;
  const file = config.plcBridge.config;
  if (!file) return undefined;
  const log = w.logger.child({ component: BRIDGE_COMPONENT });
  const socket = 'bridgeSocket' in w ? w.bridgeSocket : bridgeSocketPath(config.plcBridge.config);
  const probe: ProbeSpec = socket ? { kind: 'heartbeat', socket } : { kind: 'process' };
  const timing = { intervalMs: config.recovery.plcBridge.intervalMs, deadlineMs: config.recovery.plcBridge.deadlineMs, startTimeoutMs: config.recovery.startTimeoutMs };
  if (w.env.INVOCATION_ID) return { name: BRIDGE_COMPONENT, handle: new SystemdUnit({ unit: BRIDGE_UNIT, logger: log }), probe, ...timing };
  if (config.plcBridge.launch !== 'auto') return undefined;
  // With the Node flags the unit starts it with (deploy/systemd/edge-plc-bridge.service), on this
  // release's own runtime (also when the agent itself was started on another Node.js).
  const cli = cliPath();
  const argv: [string, ...string[]] = [runtimeOf(cli), ...BRIDGE_NODE_FLAGS, cli, 'plc-bridge', '--config', file];
  return { name: BRIDGE_COMPONENT, handle: new ManagedProcess({ name: BRIDGE_COMPONENT, argv, dir, logMaxBytes: config.recovery.logMaxBytes, logger: log, env: w.env }), probe, ...timing };
}

function serviceTargets(w: RecoveryWiring, dir: string): TargetSpec[] {
  const r = w.config.recovery;
  return r.services.map((s) => {
    const log = w.logger.child({ component: s.name });
    const handle = s.unit
      ? new SystemdUnit({ unit: s.unit, logger: log })
      : new ManagedProcess({ name: s.name, argv: s.command as [string, ...string[]], dir, cwd: s.cwd, logMaxBytes: r.logMaxBytes, logger: log, env: w.env });
    return { name: s.name, handle, probe: s.probe, intervalMs: s.intervalMs ?? r.intervalMs, deadlineMs: s.deadlineMs ?? r.deadlineMs, startTimeoutMs: s.startTimeoutMs ?? r.startTimeoutMs };
  });
}

/**
 * Escalation level 2: rolls the running release back through the slot state machine. A release
 * still on trial is failed (the committed one boots next); a committed one is rolled back to the
 * other committed slot. Only under the boot guard, which is what starts the other slot.
 */
export function releaseRollback(o: { root: string; underGuard: boolean; restart(reason: string): void; logger: Logger }): (reason: string) => Promise<boolean> {
  return async (reason) => {
    if (!o.underGuard) {
      o.logger.warn({ reason }, 'rollback wanted, but the agent does not run under the boot guard');
      return false;
    }
    try {
      const s = loadSlots(o.root);
      const next = s.slots[s.active].state === 'trial' ? failTrial(s, reason) : rollback(s);
      saveSlots(o.root, next);
      o.logger.error({ reason, from: s.active, to: next.active }, 'crash loop after an activation: release rolled back');
      setImmediate(() => o.restart(`rollback: ${reason}`));
      return true;
    } catch (err) {
      o.logger.error({ err, reason }, 'rollback not possible');
      return false;
    }
  };
}

/** When the running release was activated, if the other slot holds a committed release to go back to. */
export function releaseActivatedAt(root: string): number | undefined {
  try {
    const s = loadSlots(root);
    if (s.slots[otherSlot(s.active)].state !== 'committed') return undefined;
    const t = Date.parse(s.slots[s.active].trialSince ?? '');
    return Number.isFinite(t) ? t : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A hang an in-process part reports is believed once it has lasted `confirmMs` through probes no
 * further apart than that. After the agent itself stalled (its event loop blocked, the machine
 * suspended) every part's deadline has passed at once, and each catches up within moments
 * (supervisor invariant 4: the agent's stall is not blamed on its components). `dead` is not
 * delayed: a stopped loop does not catch up.
 */
export function confirmHangs(t: InProcessTarget, clock: Clock, confirmMs: number): InProcessTarget {
  let since: number | undefined;
  let lastAt: number | undefined;
  return {
    name: t.name,
    probe: () => {
      const now = clock.now();
      const r = t.probe();
      if (lastAt !== undefined && now - lastAt > confirmMs) since = undefined;
      lastAt = now;
      if (r !== 'hung') {
        since = undefined;
        return r;
      }
      since ??= now;
      return now - since >= confirmMs ? 'hung' : 'healthy';
    },
    restart: async () => {
      since = undefined;
      await t.restart();
    },
  };
}

/**
 * Escalation level 1: puts the last known-good copy of the component's configuration file back.
 * The note says which copy, or that the file already holds it (then nothing is written: a crash
 * loop on an unchanged file is not the file's fault), or that there is none.
 */
export function configRestorer(w: Pick<RecoveryWiring, 'config' | 'clock'>): (component: string) => Promise<ConfigRestoreOutcome> {
  return async (component) => {
    const file = component === BRIDGE_COMPONENT ? w.config.plcBridge.config : undefined;
    if (!file) return { restored: false, note: 'no known-good configuration to restore (the component has no configuration file)' };
    const r = restoreKnownGood({ dataDir: w.config.dataDir, source: file, now: w.clock.now() });
    if (r.restored) {
      const where = r.replaced ? `${file} replaced by the known-good copy ${r.from}` : `the known-good copy ${r.from} could not be written over ${file} (${r.replaceError ?? 'unknown'})`;
      return { restored: r.replaced, note: `configuration restored: ${where}; the previous file is in ${r.quarantined.join(', ') || '(nothing to keep)'}` };
    }
    if ('identical' in r) return { restored: false, note: `configuration not restored: ${file} is identical to its known-good copy ${r.identical} (nothing to do)` };
    const skipped = r.skipped.length > 0 ? ` (unusable: ${r.skipped.map((x) => `${x.copy}: ${x.why}`).join('; ')})` : '';
    return { restored: false, note: `no known-good configuration to restore for ${file}${skipped}` };
  };
}

export function wireRecovery(w: RecoveryWiring): RecoveryParts {
  const r = w.config.recovery;
  const dir = join(w.config.dataDir, 'recovery');
  const incidents = new IncidentStore(w.db);
  const bridge = bridgeTarget(w, dir);
  const confirmMs = Math.max(2 * r.intervalMs, 2000);
  const parts = (w.inProcess ?? []).map((t) => Supervisor.inProcess(confirmHangs(t, w.clock, confirmMs), r.intervalMs));
  const targets = [...(bridge ? [bridge] : []), ...serviceTargets(w, dir), ...parts];
  const log = w.logger.child({ component: 'recovery' });
  const supervisor = new Supervisor({
    targets,
    policy: { backoff: r.backoff, healthyMs: r.healthyMs, slowRetryMs: r.slowRetryMs, escalation: r.escalation },
    stopGraceMs: r.stopGraceMs,
    hungGraceMs: r.hungGraceMs,
    store: incidents,
    clock: w.clock,
    logger: log,
    event: (ev) => w.event(ev),
    restoreConfig: configRestorer(w),
    rollback: releaseRollback({ root: w.config.ota.root, underGuard: w.env.EDGE_AGENT_GUARD === '1', restart: (reason) => w.restart(reason), logger: log }),
    activatedAt: () => releaseActivatedAt(w.config.ota.root),
    loops: w.loops,
    loopDeadlineMs: w.config.systemd.loopDeadlineMs,
    incidentRetentionMs: r.incidentRetentionDays * 86_400_000,
  });
  const restartTargets = Object.fromEntries(supervisor.names().map((n) => [n, () => supervisor.restart(n)]));
  const adminMethods: Record<string, AdminMethod> = {};
  if (w.fault === 'block-loop') {
    adminMethods['fault-block-loop'] = (params) => {
      const ms = typeof params.ms === 'number' && params.ms > 0 && params.ms <= 600_000 ? params.ms : 5000;
      log.warn({ ms }, 'fault injection: blocking the event loop');
      // After the answer is written: the test must learn when the block starts.
      setTimeout(() => blockEventLoop(ms), 50);
      return { blockingMs: ms };
    };
  }
  return { supervisor, incidents, restartTargets, adminMethods };
}
