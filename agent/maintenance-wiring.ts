/**
 * The maintenance module's wiring (docs/maintenance.md): the run store, the runner with the
 * built-in actions implemented over the agent's own parts (the watchdog's restarts, the PLC
 * bridge's handover, the store keeper's backups and checks, the diagnostics groups), the
 * metrics that checks read, and the operations registered on the router.
 *
 * The built-in actions live here, not in maintenance/, because they call recovery/, health/ and
 * the PLC bridge's control socket, which maintenance/ must not import (test/unit/layers.test.ts).
 */
import { readdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { rpcRequest } from '../lib/rpc.js';
import { errorMessage } from '../lib/errors.js';
import { secretValues } from '../lib/redact.js';
import { logRingDir, type AgentConfig } from '../core/config.js';
import { legacyScheduleNotes } from '../core/legacy-keys.js';
import type { AgentEvent, Component } from '../core/ports.js';
import type { ActionImpls, ActionResult } from '../maintenance/actions.js';
import { CatalogCache, shippedProceduresDir } from '../maintenance/catalog.js';
import type { MetricsSnapshot } from '../maintenance/checks.js';
import { RunStore } from '../maintenance/run-store.js';
import { isTerminal } from '../maintenance/run-state.js';
import { Runner, type RunnerLimits } from '../maintenance/runner.js';
import { matchingProcedures, TriggerBook, type TriggerSource } from '../maintenance/triggers.js';
import { Scheduler, type StartResult } from '../maintenance/scheduler.js';
import { MaintenanceWindows } from '../maintenance/windows.js';
import { windowOpsPort } from '../maintenance/window-answer.js';
import type { Catalog } from '../maintenance/catalog.js';
import type { SchedulableProcedure } from '../maintenance/schedule-plan.js';
import { agentUidFor } from '../maintenance/safety.js';
import { cleanQuarantine } from '../recovery/quarantine.js';
import { checkCopy, integrityCheckOffThread, listStoreBackups, pruneStoreBackups } from '../recovery/store-backup.js';
import type { DaemonDiagnostics, DaemonDiagOptions } from '../health/diag/daemon.js';
import type { GroupName } from '../health/diag/types.js';
import { maintenanceOperations } from './ops/maintenance.js';
import type { Router } from './router.js';
import { agentStoreReader } from './store-reader.js';
import { reviewActions } from './maintenance-reviews.js';
import { compareKnownGood } from '../recovery/known-good.js';
import { optimizeStore, treeCpuMs, type OptimizeOptions } from './store-optimize.js';

export interface MaintenanceWiring {
  config: AgentConfig;
  db: Db;
  clock: Clock;
  logger: Logger;
  router: Router;
  event(ev: AgentEvent): void;
  /** ~/status `maintenance` while a disruptive run runs; `online` after. */
  setState(state: 'online' | 'maintenance'): void;
  /** Health metrics sampled now; undefined with health disabled. */
  sample?: (() => Promise<Record<string, number>>) | undefined;
  /** Component name -> state (the watchdog's view plus the agent's own parts). */
  components(): Record<string, string>;
  brokerConnected(): boolean;
  /** The watchdog's restarts, one per supervised component. */
  restartTargets: Record<string, () => Promise<void>>;
  /** The PLC bridge's control socket; undefined without a bridge. */
  bridgeSocket: string | undefined;
  /** The store keeper (restore-wiring.ts). */
  keeper: { backupNow(): Promise<{ path: string; bytes: number; ms: number } | undefined>; checkNow(): string[]; checkNowOffThread?: () => Promise<string[]>; readonly lastCheck?: { problems: string[] } | undefined; readonly backingUp?: boolean };
  /** For the diagnostics groups behind slot-verify, config-verify, cert-expiry, diagnostics. */
  diag: Omit<DaemonDiagOptions, 'storeReader'>;
  limits?: Partial<RunnerLimits>;
  /** Where a triggered repair is noted on its incident. */
  incidents?: { note(id: number, text: string): void };
}

export interface MaintenanceParts {
  runner: Runner;
  store: RunStore;
  catalog: CatalogCache;
  component: Component;
  /** Every event the agent sends: incidents and raised alerts start the procedures whose triggers name them. */
  onEvent(ev: AgentEvent): void;
  /** The procedures changed (the procedure watch): the scheduler's schedules follow. */
  onCatalog(catalog: Catalog): void;
  scheduler: Scheduler;
  windows: MaintenanceWindows;
}

const ok = (message: string, details?: Record<string, unknown>): ActionResult => ({ ok: true, message, ...(details ? { details } : {}) });
const bad = (message: string, details?: Record<string, unknown>): ActionResult => ({ ok: false, message, ...(details ? { details } : {}) });

/** Removes the files (not directories) under `dir` older than `before`; what it removed. */
function removeOlder(dir: string, before: number, match: (name: string) => boolean = () => true): { path: string; bytes: number }[] {
  const out: { path: string; bytes: number }[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!match(n)) continue;
    const p = join(dir, n);
    try {
      const st = statSync(p);
      if (st.mtimeMs >= before) continue;
      rmSync(p, { recursive: true, force: true });
      out.push({ path: p, bytes: st.size });
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return out;
}

export function wireMaintenance(w: MaintenanceWiring): MaintenanceParts {
  const { config, db, clock } = w;
  const log = w.logger.child({ component: 'maintenance' });
  const store = new RunStore(db);
  const catalog = new CatalogCache({ shippedDir: shippedProceduresDir(), operatorDir: config.maintenance.proceduresDir, agentUid: agentUidFor(config.dataDir) });
  let diag: Promise<DaemonDiagnostics> | undefined;
  const groups = async (only: readonly GroupName[], pace?: () => Promise<void>): Promise<ActionResult> => {
    diag ??= import('../health/diag/daemon.js').then((m) => new m.DaemonDiagnostics({ ...w.diag, storeReader: agentStoreReader }));
    const d = await diag;
    // One group at a time, paced between them (the run's CPU budget, maintenance.maxCpuPct).
    const parts: Awaited<ReturnType<DaemonDiagnostics['groups']>>[] = [];
    for (const g of only) {
      parts.push(await d.groups([g]));
      await pace?.();
    }
    const rank = { ok: 0, warning: 1, failure: 2 } as Record<string, number>;
    const report = { groups: parts.flatMap((p) => p.groups), overall: parts.map((p) => p.overall).reduce((a, b) => ((rank[b] ?? 0) > (rank[a] ?? 0) ? b : a), 'ok' as (typeof parts)[number]['overall']) };
    const checks = report.groups.flatMap((g) => g.checks.map((c) => ({ group: g.name, name: c.name, status: c.status, message: c.message })));
    const failures = checks.filter((c) => c.status === 'failure');
    const warnings = checks.filter((c) => c.status === 'warning');
    const summary = `${checks.length} checks: ${failures.length} failures, ${warnings.length} warnings`;
    const first = [...failures, ...warnings].slice(0, 3).map((c) => `${c.group}/${c.name}: ${c.message}`);
    return { ok: failures.length === 0, message: first.length > 0 ? `${summary}; ${first.join('; ')}` : summary, details: { overall: report.overall, checks } };
  };

  const handover = async (signal: AbortSignal): Promise<ActionResult> => {
    const socket = w.bridgeSocket;
    if (!socket) return bad('no PLC bridge is configured (plcBridge.config)');
    const before = (await rpcRequest(socket, 'ping', {}, 5000)) as { cli?: string; pid?: number; role?: string };
    if (before.role !== 'active' || typeof before.cli !== 'string') return bad(`the PLC bridge is not active (${before.role ?? 'no role'})`);
    const t0 = clock.now();
    // The old instance answers once its successor has the role, but it exits then too, and the
    // answer may not make it out (agent/bridge-upgrade.ts): who answers `ping` afterwards counts.
    let failure: unknown;
    let r: { pid?: number } = {};
    const asked = rpcRequest(socket, 'upgrade', { cli: before.cli }, 60_000).then(
      (x) => {
        r = x as { pid?: number };
      },
      (err: unknown) => {
        failure = err;
      },
    );
    await Promise.race([asked, new Promise((res) => setTimeout(res, 60_000))]);
    for (let i = 0; i < 100 && !signal.aborted; i++) {
      try {
        const now = (await rpcRequest(socket, 'ping', {}, 2000)) as { pid?: number; role?: string };
        if (now.role === 'active' && now.pid !== before.pid) return ok(`the PLC bridge was handed over from pid ${before.pid} to pid ${now.pid} in ${clock.now() - t0} ms`, { fromPid: before.pid, toPid: now.pid, ms: clock.now() - t0 });
      } catch {
        // the socket is changing hands
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    return bad(`the handover to pid ${r.pid ?? '?'} did not show as active${failure !== undefined ? `: ${errorMessage(failure)}` : ''}`, { fromPid: before.pid });
  };

  const actions: ActionImpls = {
    'component-restart': async (a, ctx) => {
      const name = a.component as string;
      if (name === 'agent') return bad('a procedure cannot restart the agent that runs it: use the restart operation');
      // A bridge that runs is handed over (no data gap); one that does not is restarted.
      if (name === 'plc-bridge' && w.bridgeSocket) {
        const alive = await rpcRequest(w.bridgeSocket, 'ping', {}, 2000).then(
          (p) => (p as { role?: string }).role === 'active',
          () => false,
        );
        if (alive) return handover(ctx.signal);
      }
      const target = w.restartTargets[name];
      if (!target) return bad(`no supervised component ${name} (there are: ${Object.keys(w.restartTargets).join(', ') || 'none'})`);
      await target();
      return ok(`${name} restarted through the watchdog`);
    },
    'plc-bridge-handover': async (_a, ctx) => handover(ctx.signal),
    'files-cleanup': async (a, ctx) => {
      const maxAgeMs = (a.tempMaxAgeHours as number) * 3600_000;
      const before = clock.now() - maxAgeMs;
      const removed = [
        // Support bundles a crash left behind (the diagnostics operation removes its own).
        ...removeOlder(tmpdir(), before, (n) => n.startsWith('edge-agent-support-')),
        ...removeOlder(join(config.dataDir, 'tmp'), before),
      ];
      await ctx.pace?.();
      // Quarantined files older than tempMaxAgeHours (by their stamp), and the oldest beyond the kept number.
      removed.push(...cleanQuarantine(config.dataDir, before));
      await ctx.pace?.();
      let logBytes = 0;
      {
        // The ring's bound (diag.logRing: files x maxBytes) unless the step names one; files
        // beyond the ring's count (left by a larger diag.logRing.files) go first.
        const ring = config.diag.logRing;
        const bound = (a.logMaxBytes as number | undefined) ?? ring.files * ring.maxBytes;
        const dir = logRingDir(config);
        for (const n of (() => { try { return readdirSync(dir); } catch { return []; } })()) {
          const m = /^agent\.log\.(\d+)$/.exec(n);
          if (!m || Number(m[1]) < ring.files) continue;
          const p = join(dir, n);
          const size = (() => { try { return statSync(p).size; } catch { return 0; } })();
          rmSync(p, { force: true });
          removed.push({ path: p, bytes: size });
          logBytes += size;
        }
        let files: { p: string; size: number; mtime: number }[] = [];
        try {
          files = readdirSync(dir).map((n) => ({ p: join(dir, n), ...(() => { const s = statSync(join(dir, n)); return { size: s.size, mtime: s.mtimeMs }; })() })).sort((x, y) => y.mtime - x.mtime);
        } catch {
          files = [];
        }
        let total = 0;
        // The newest file is the one being written: never removed.
        for (const [i, f] of files.entries()) {
          total += f.size;
          if (i > 0 && total > bound) {
            rmSync(f.p, { force: true });
            removed.push({ path: f.p, bytes: f.size });
            logBytes += f.size;
          }
        }
      }
      const bytes = removed.reduce((s, r) => s + r.bytes, 0);
      return ok(removed.length === 0 ? 'nothing to clean: every file is within its bound' : `removed ${removed.length} files (${bytes} bytes)`, { removed: removed.map((r) => r.path), bytes, logBytes });
    },
    'disk-space': async (a) => {
      const s = statfsSync(config.dataDir);
      const freePct = s.blocks > 0 ? Math.round((s.bavail / s.blocks) * 1000) / 10 : 100;
      const inodesPct = s.files > 0 ? Math.round((s.ffree / s.files) * 1000) / 10 : 100;
      const details = { path: config.dataDir, freePct, freeInodesPct: inodesPct, freeBytes: s.bavail * s.bsize };
      const problems = [
        ...(freePct < (a.minFreePct as number) ? [`${freePct} % free space (at least ${String(a.minFreePct)} % wanted)`] : []),
        ...(inodesPct < (a.minFreeInodesPct as number) ? [`${inodesPct} % free inodes (at least ${String(a.minFreeInodesPct)} % wanted)`] : []),
      ];
      return problems.length > 0 ? bad(`${config.dataDir}: ${problems.join('; ')}`, details) : ok(`${config.dataDir}: ${freePct} % free space, ${inodesPct} % free inodes`, details);
    },
    'store-check': async (a, ctx) => {
      // A quiet moment: no command but this run, no backup (each reads the whole file; the check blocks the agent).
      const waitUntil = clock.now() + (a.quietWaitSec as number) * 1000;
      const quiet = (): boolean => !w.keeper.backingUp && w.router.current().every((c) => c.id === ctx.runId);
      while (!quiet() && clock.now() < waitUntil && !ctx.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
      const t0 = clock.now();
      // The full check reads the whole file: in a worker, through its own read-only connection, so the loop goes on.
      const problems = a.full ? (db.name && db.name !== ':memory:' ? await integrityCheckOffThread(db.name) : (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).filter((x) => x !== 'ok')) : w.keeper.checkNowOffThread ? await w.keeper.checkNowOffThread() : w.keeper.checkNow();
      const details = { full: a.full, ms: clock.now() - t0, problems: problems.slice(0, 20) };
      return problems.length === 0 ? ok(`the store passed ${a.full ? 'integrity_check' : 'quick_check'}`, details) : bad(`the store failed its check: ${problems.slice(0, 3).join('; ')}`, details);
    },
    'store-optimize': async (a, ctx) => {
      const r = await optimizeStore(db, { vacuum: a.vacuum as OptimizeOptions['vacuum'], maxCpuPct: a.maxCpuPct as number, minFreePct: a.minFreePct as number }, ctx.signal);
      return ok(r.message, r.details);
    },
    'store-backup': async () => {
      const r = await w.keeper.backupNow();
      return r ? ok(`backup ${r.path} (${r.bytes} bytes) in ${r.ms} ms`, { ...r }) : bad('no backup was taken: one is already running, or the store is being restored');
    },
    'store-verify-backup': async () => {
      const newest = listStoreBackups(config.dataDir)[0];
      if (!newest) return bad('there is no backup of the store yet');
      const problems = checkCopy(newest.path);
      return problems.length === 0 ? ok(`the newest backup ${newest.path} opens and passes quick_check`, { path: newest.path }) : bad(`the newest backup ${newest.path} is damaged: ${problems.slice(0, 3).join('; ')}`, { path: newest.path, problems });
    },
    'store-rotate-backups': async (a) => {
      const before = listStoreBackups(config.dataDir).length;
      pruneStoreBackups(config.dataDir, a.keep as number);
      const after = listStoreBackups(config.dataDir).length;
      return ok(`kept ${after} backups, removed ${before - after}`, { kept: after, removed: before - after });
    },
    'slot-verify': async (_a, ctx) => groups(['slots'], ctx.pace),
    'config-verify': async (a, ctx) => {
      const r = await groups(['configuration'], ctx.pace);
      // Each configuration file against its newest known-good copy (recovery/known-good.ts).
      const knownGood = [w.diag.configPath, config.plcBridge.config].filter((p): p is string => typeof p === 'string').map((p) => compareKnownGood(config.dataDir, p));
      const differ = knownGood.filter((k) => k.state === 'differs');
      const message = differ.length > 0 ? `${differ.map((k) => `${k.source} differs from its known-good copy ${k.copy ?? ''}`).join('; ')}; ${r.message}` : `${knownGood.filter((k) => k.state === 'same').length} of ${knownGood.length} configuration files match their known-good copies; ${r.message}`;
      const failed = (r.details?.checks as { status: string }[]).some((c) => c.status === 'failure');
      return { ok: a.failOnDifference ? r.ok && differ.length === 0 : !failed, message, details: { ...r.details, knownGood } };
    },
    'cert-expiry': async (_a, ctx) => groups(['identity'], ctx.pace),
    ...reviewActions({ config, configPath: w.diag.configPath, db, clock }),
    diagnostics: async (a, ctx) => {
      const r = await groups(['configuration', 'identity', 'connectivity', 'time', 'storage', 'slots', 'components', 'plc', 'maintenance', 'logs'], ctx.pace);
      const warned = (r.details?.checks as { status: string }[]).some((c) => c.status === 'warning');
      return a.failOnWarning && warned ? { ...r, ok: false } : r;
    },
  };

  const metrics = async (): Promise<MetricsSnapshot> => {
    const m: Record<string, number | boolean | string> = {};
    if (w.sample) {
      try {
        Object.assign(m, await w.sample());
      } catch (err) {
        log.warn({ err }, 'health sample for a check failed');
      }
    }
    for (const [name, state] of Object.entries(w.components())) {
      m[`component.${name}.state`] = state;
      m[`component.${name}.running`] = state === 'running';
    }
    m['broker.connected'] = w.brokerConnected();
    // The keeper's last quick_check (hourly, and each store-check step): running one here would
    // read the whole store for every check of every step, on the event loop.
    const last = w.keeper.lastCheck;
    if (last) m['store.integrityOk'] = last.problems.length === 0;
    return m;
  };

  const runner = new Runner({
    store,
    clock,
    logger: log,
    actions,
    metrics,
    snapshot: async () => ({ metrics: await metrics(), components: w.components() }),
    event: (ev) => w.event(ev),
    setMaintenance: (on) => w.setState(on ? 'maintenance' : 'online'),
    secrets: () => [...secretValues(config)],
    limits: { maxReports: config.maintenance.maxReports, maxOutputBytes: config.maintenance.maxOutputBytes, maxCpuPct: config.maintenance.maxCpuPct, ...(w.limits ?? {}) },
    cpu: { usedMs: () => treeCpuMs(process.pid) },
  });
  // Maintenance windows (announced on ~/events, deferred or skipped by the WMS) and the schedules.
  const m = config.maintenance;
  const later: { scheduler?: Scheduler } = {};
  const windows = new MaintenanceWindows({
    db,
    log,
    clock,
    windows: m.windows,
    announceSec: m.announceSec,
    maxDeferSec: m.maxDeferSec,
    emit: (e) => w.event(e as unknown as AgentEvent),
    planned: (s, e) => later.scheduler?.plannedIn(s, e) ?? [],
  });
  /** A scheduled run: submitted like any command (origin `schedule`); `done` settles with its end. */
  const startScheduled = async (procedureId: string, o: { trigger: 'schedule'; startedBy: string; runId: string }): Promise<StartResult> => {
    const id = o.runId;
    let first: (m: { status: string; reason?: { code: string; message: string } }) => void = () => undefined;
    const firstStatus = new Promise<{ status: string; reason?: { code: string; message: string } }>((r) => (first = r));
    let finish: (v: { state: string }) => void = () => undefined;
    const done = new Promise<{ state: string }>((r) => (finish = r));
    let seen = false;
    const off = w.router.onStatus((msg) => {
      if (msg.id !== id) return;
      if (!seen) {
        seen = true;
        first(msg);
      }
      if (['successful', 'failed', 'cancelled', 'rejected'].includes(msg.status)) {
        off();
        const report = msg.result as { state?: string } | undefined;
        finish({ state: report?.state ?? msg.status });
      }
    });
    w.router.submit('maintenance', { procedure: procedureId }, { id, origin: { trigger: o.trigger, actor: o.startedBy } });
    w.router.flushIntake();
    const s = await firstStatus;
    if (s.status === 'rejected') return { ok: false, code: s.reason?.code ?? 'rejected', message: s.reason?.message ?? 'rejected' };
    return { ok: true, runId: id, done };
  };
  /**
   * A scheduled run of the previous process (its run id is its command id): ended (the run
   * store's terminal state), going on (the router resumed its command: its end arrives as a
   * status), or unknown. Listening first, then reading, so an end in between is not missed.
   */
  const followScheduled = (runId: string): { state: string } | Promise<{ state: string }> | undefined => {
    let off: () => void = () => undefined;
    const end = new Promise<{ state: string }>((resolve) => {
      off = w.router.onStatus((msg) => {
        if (msg.id !== runId || !['successful', 'failed', 'cancelled', 'rejected'].includes(msg.status)) return;
        off();
        resolve({ state: (msg.result as { state?: string } | undefined)?.state ?? msg.status });
      });
    });
    const row = store.get(runId);
    if (row && isTerminal(row.record.state)) {
      off();
      return { state: row.record.state };
    }
    if (w.router.queue(10_000).some((e) => e.id === runId)) return end;
    off();
    return undefined;
  };
  const schedulable = (c: Catalog): SchedulableProcedure[] => c.entries.flatMap((e) => (e.status === 'valid' && e.procedure ? [e.procedure] : []));
  const sched = new Scheduler({ db, log, clock, runner: { start: startScheduled, follow: followScheduled }, windows, procedures: schedulable(catalog.get()), overrides: m.schedules });
  later.scheduler = sched;
  for (const h of maintenanceOperations({ runner, catalog: () => catalog.get(), windows: windowOpsPort(windows), now: () => clock.now() })) w.router.register(h);

  const book = new TriggerBook(db);
  const onEvent = (ev: AgentEvent): void => {
    let src: TriggerSource | undefined;
    if (ev.type === 'incident' && typeof ev.component === 'string' && typeof ev.cause === 'string') src = { kind: 'incident', component: ev.component, cause: ev.cause, incident: typeof ev.incident === 'number' ? ev.incident : undefined };
    else if (ev.type === 'alert' && typeof ev.metric === 'string') src = { kind: 'alert', metric: ev.metric, code: ev.code };
    if (!src) return;
    let matches: ReturnType<typeof matchingProcedures>;
    try {
      matches = matchingProcedures(catalog.get(), src);
    } catch (err) {
      log.error({ err }, 'reading the procedures for a trigger failed');
      return;
    }
    for (const m of matches) {
      const v = book.claim(m, clock.now());
      const what = src.kind === 'incident' ? `incident ${src.incident ?? '?'} (${src.component} ${src.cause})` : `alert ${src.metric}`;
      if (!v.run) {
        log.info({ procedure: m.id, why: v.why, trigger: what }, 'a repair procedure matches, but it does not run again yet');
        continue;
      }
      const actor = src.kind === 'incident' ? `incident:${src.incident ?? src.component}` : `alert:${src.metric}`;
      // A repair runs when the fault is there, also outside a maintenance window (force), ahead of routine work.
      const id = w.router.submit('maintenance', { procedure: m.id, force: true }, { origin: { trigger: src.kind, actor }, priority: 'high' });
      log.warn({ procedure: m.id, run: id, trigger: what }, 'started a repair procedure for it');
      if (src.kind === 'incident' && src.incident !== undefined) {
        try {
          w.incidents?.note(src.incident, `repair procedure ${m.id} started as run ${id}`);
        } catch (err) {
          log.warn({ err }, 'noting the repair on its incident failed');
        }
      }
    }
  };

  return {
    runner,
    store,
    catalog,
    onEvent,
    onCatalog: (c) => sched.setProcedures(schedulable(c)),
    scheduler: sched,
    windows,
    component: {
      name: 'maintenance',
      // After the router resumed its commands: a run whose command is gone ends `interrupted`.
      start: async () => {
        const n = runner.sweep((id) => {
          const q = w.router.queue(10_000);
          return q.some((e) => e.id === id);
        });
        if (n > 0) log.warn({ runs: n }, 'procedure runs left without their command ended interrupted');
        for (const note of legacyScheduleNotes(config)) log.warn({ note }, 'a configuration key of an earlier release was mapped onto a maintenance schedule');
        windows.start();
        sched.start();
      },
      stop: async () => {
        sched.stop();
        windows.stop();
      },
    },
  };
}

