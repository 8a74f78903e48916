/**
 * The composition root: the one place that builds every component, hands each its
 * collaborators, starts them in order, and stops them in reverse on SIGTERM/SIGINT.
 *
 * Start order: store -> outbox -> router (resumes unfinished commands) -> WMS link -> admin
 * socket -> READY=1. Stop order is the reverse; the whole stop is bounded by shutdownTimeoutMs.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { z } from 'zod';
import { createLogger, redactUrl, type Logger } from '../lib/log.js';
import { systemClock } from '../lib/clock.js';
import { openDatabase, quickCheck, type Db } from '../lib/sqlite.js';
import { SdNotify, watchdogIntervalMs } from '../lib/sdnotify.js';
import { LoopMonitor } from '../lib/loops.js';
import { faultInjector, faultOnce } from '../lib/fault.js';
import { buildInfo } from '../lib/version.js';
import { EdgeError, errorCode } from '../lib/errors.js';
import { adminSocketPath, faultFromEnv, slotFromEnv, ConfigError, EXIT_CONFIG, logRingDir, storePath, type AgentConfig, type ConfigOverrides } from '../core/config.js';
import { Outbox, OUTBOX_MIGRATIONS } from './outbox.js';
import { CommandStore, COMMAND_MIGRATIONS } from './command-store.js';
import { AGENT_INFO_MIGRATIONS, writeAgentInfo } from '../core/agent-info.js';
import { Router, rolloutField, rolloutIdOf } from './router.js';
import { UpdateHealth } from './update-health.js';
import { StoreGate } from './store-gate.js';
import { WalSync } from '../lib/wal-sync.js';
import { WmsLink } from './wms-link.js';
import { AdminServer, adminSocketAlive } from '../core/admin.js';
import { topicsFor } from './topics.js';
import { diagnosticsOperation } from './ops/diagnostics.js';
import { restartOperation } from './ops/restart.js';
import { configOperation } from './ops/config.js';
import { agentTarget, bridgeTarget } from './config-targets.js';
import { configHash } from '../core/config-edit.js';
import { takeKnownGood } from '../recovery/known-good.js';
import { Certificates } from './certificates.js';
import { trustOperation } from './ops/trust.js';
import { wireOta } from './ota-wiring.js';
import { BridgeUpgrade } from './bridge-upgrade.js';
import { bridgeSocketPath } from '../plc-bridge/paths.js';
import { wireRecovery } from './recovery-wiring.js';
import { RECOVERY_MIGRATIONS } from '../recovery/incidents.js';
import { checkStoreAtStart, loadConfigWithRestore, wireRestore, type BootConfig } from './restore-wiring.js';
import { wireHealth } from './health-wiring.js';
import { HEALTH_MIGRATIONS } from '../health/history.js';
import { AUDIT_MIGRATIONS } from '../core/audit.js';
import { SCHEDULE_MIGRATIONS } from '../maintenance/schedule-store.js';
import { wireAudit } from './audit-wiring.js';
import { PlcWriteAudit } from './plc-write-audit.js';
import type { AgentEvent, Component } from '../core/ports.js';
import { ProcedureWatch } from './procedure-watch.js';
import { shippedProceduresDir } from '../maintenance/catalog.js';
import { MAINTENANCE_MIGRATIONS } from '../maintenance/run-store.js';
import { wireMaintenance } from './maintenance-wiring.js';
import { wireConsole, type ConsoleWiring } from './console-wiring.js';

export const STORE_MIGRATIONS = [AGENT_INFO_MIGRATIONS, OUTBOX_MIGRATIONS, COMMAND_MIGRATIONS, HEALTH_MIGRATIONS, RECOVERY_MIGRATIONS, AUDIT_MIGRATIONS, MAINTENANCE_MIGRATIONS, SCHEDULE_MIGRATIONS];

/** EX_TEMPFAIL: "restart me" for systemd's Restart=on-failure. */
export const EXIT_RESTART = 75;

export interface RunOptions {
  configPath?: string | undefined;
  overrides?: ConfigOverrides;
  env?: NodeJS.ProcessEnv;
}

const noteParams = z
  .object({
    code: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a short code such as "maintenance-note"'),
    message: z.string().min(1).max(4096),
    severity: z.enum(['info', 'warning', 'critical']).default('info'),
  })
  .strict();

/** Runs the daemon until a signal stops it; resolves with the process exit code. */
export async function runDaemon(opts: RunOptions): Promise<number> {
  const env = opts.env ?? process.env;
  let config: AgentConfig;
  let configPath: string | undefined;
  let boot: BootConfig;
  try {
    // A file that fails validation or its .sha256 is replaced by its last known-good copy.
    boot = loadConfigWithRestore({ path: opts.configPath, overrides: opts.overrides ?? {}, env });
    ({ config, path: configPath } = boot);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`edge-agent: ${err.message}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
  // Info and above also go to a bounded ring in the data directory, for `edge-agent diag` and support bundles.
  const logger = createLogger({ level: config.log.level, ring: { dir: logRingDir(config), ...config.diag.logRing } });
  const startedAt = Date.now();
  const build = buildInfo();
  const slot = slotFromEnv(env);
  const clock = systemClock;
  const topics = topicsFor(config.mqtt.prefix, config.gatewayId);
  const notify = new SdNotify({ socketPath: env.NOTIFY_SOCKET, logger: logger.child({ component: 'systemd' }) });

  mkdirSync(config.dataDir, { recursive: true, mode: 0o750 });
  // One daemon per data directory: a second one must not touch the store, resume (and so fail)
  // the first one's commands, or take over its MQTT client id.
  if (await adminSocketAlive(adminSocketPath(config))) {
    logger.fatal({ socket: adminSocketPath(config), code: 'already-running' }, 'another agent runs with this data directory; not starting');
    return 1;
  }
  checkStoreAtStart(config, logger);
  let db: Db;
  try {
    db = openDatabase(storePath(config), { migrations: STORE_MIGRATIONS });
  } catch (err) {
    logger.fatal({ err, path: storePath(config) }, 'cannot open the state store');
    return 1;
  }
  writeAgentInfo(db, {
    version: build.version,
    slot,
    pid: String(process.pid),
    startedAt: new Date(startedAt).toISOString(),
    stoppedAt: undefined,
    gatewayId: config.gatewayId,
    brokerUrl: redactUrl(config.mqtt.url),
  });

  const loops = new LoopMonitor({ clock, maxLagMs: config.systemd.maxEventLoopLagMs });
  // The command path (commands, outbox) has a connection of its own at synchronous = NORMAL:
  // its commits do not fsync on the event loop; what they announce (a PUBACK, a status sent, the
  // start of the work) waits for WalSync's fsync on the thread pool instead. Everything else
  // keeps `db` (synchronous = FULL).
  let cmdDb: Db;
  try {
    cmdDb = openDatabase(storePath(config), { synchronous: 'NORMAL' });
  } catch (err) {
    logger.fatal({ err, path: storePath(config) }, 'cannot open the state store');
    return 1;
  }
  const walSync = new WalSync({ dbPath: storePath(config), onError: (err) => logger.error({ err }, 'fsync of the state store failed') });
  const store = new CommandStore(cmdDb);
  const audit = wireAudit({ db: cmdDb, clock, logger: logger.child({ component: 'audit' }), limits: config.audit, publish: (ev) => event(ev) });
  // Whether the store can commit (disk full): what the outbox and the router hold in memory meanwhile is retried.
  const storeGate = new StoreGate({ logger: logger.child({ component: 'store' }), clock, probe: () => store.probeWrite() });
  const outbox = new Outbox({ db: cmdDb, logger: logger.child({ component: 'outbox' }), clock, limits: config.outbox, gate: storeGate, sync: walSync });
  outbox.open();
  const router = new Router({
    db: cmdDb,
    store,
    outbox,
    gate: storeGate,
    sync: walSync,
    audit: audit.command,
    logger: logger.child({ component: 'router' }),
    clock,
    resultTopic: (id) => topics.result(id),
    limits: config.commands,
    // The update runner's watchdog: a cancellable operation without progress this long is stalled.
    stallMs: config.recovery.operationStallMs,
    // MQTT 3.1.1 has no message expiry: a forgotten command's retained result is cleared instead.
    clearRetained: () => link.stats().protocolVersion === 4,
    // Update outcomes also go to ~/events (CONTRACT.md section 2), for the WMS's event log.
    onFinished: (id, op, outcome) => {
      if (op !== 'update' && op !== 'rollback') return;
      if (op === 'update' && outcome.status === 'successful') updateHealth.committed(id, rolloutIdOf(store.get(id)?.params));
      const reason = 'reason' in outcome ? outcome.reason : undefined;
      event({
        type: 'update',
        severity: outcome.status === 'successful' ? 'info' : 'warning',
        code: `${op}-${outcome.status}`,
        message: reason ? `${op} ${id} ${outcome.status}: ${reason.message}` : `${op} ${id} ${outcome.status}`,
        command: id,
        ...rolloutField(store.get(id)?.params),
        ...(reason ? { reason } : {}),
        ...(outcome.result !== undefined ? { result: outcome.result } : {}),
      });
    },
  });
  const link = new WmsLink({
    mqtt: config.mqtt,
    gatewayId: config.gatewayId,
    topics,
    version: build.version,
    slot,
    outbox,
    logger: logger.child({ component: 'wms-link' }),
    clock,
    loops,
    loopDeadlineMs: config.systemd.loopDeadlineMs,
    onCommand: (op, payload, ack) => router.handle(op, payload, ack),
    resultExpirySec: config.commands.resultExpirySec ?? config.commands.retentionDays * 86_400,
    stallFault: faultOnce(faultFromEnv(env), 'link-stall'),
  });
  // The web console keeps the alerts it sees for its history page (set once it is wired).
  const consoleEvents: { onEvent: ConsoleWiring['onEvent'] } = { onEvent: () => undefined };
  /** Told of every event (the maintenance triggers); set once the maintenance module is wired. */
  const eventHooks: ((ev: AgentEvent) => void)[] = [];
  /** `durable`: committed before returning, for callers that tell someone it is queued. */
  const event = (ev: AgentEvent, durable = false): void => {
    const msg = { topic: topics.events, payload: JSON.stringify({ ...ev, ts: new Date(clock.now()).toISOString() }), kind: 'event' as const };
    if (durable) outbox.enqueueNow(msg);
    else outbox.enqueue(msg);
    consoleEvents.onEvent(ev);
    // After the caller's own work: a trigger never runs inside the code that raised the event.
    for (const hook of eventHooks) {
      setImmediate(() => {
        try {
          hook(ev);
        } catch (err) {
          logger.error({ err }, 'an event listener failed');
        }
      });
    }
  };
  // The alert while the store cannot commit: in `status`, the log, and ~/events (sent once it commits again).
  storeGate.onFault((f) => event({ type: 'alert', severity: 'critical', code: f.code, message: `the state store cannot commit (${f.message}): commands are not acknowledged until it can`, since: f.since }));
  storeGate.onRecovered((f) => {
    event({ type: 'alert', severity: 'info', code: `${f.code}-cleared`, message: `the state store commits again after ${f.failures} failed commits since ${f.since}` });
    link.reconnectForRedelivery();
  });
  const storeAlerts = (): Record<string, unknown>[] => {
    const f = storeGate.current();
    return f ? [{ code: f.code, severity: 'critical', metric: 'store.failedCommits', value: f.failures, threshold: 0, since: f.since, message: f.message }] : [];
  };
  // The event loop's lag since start (or the last `event-loop` reset): status, and bench/ (flood).
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const lagStats = (): Record<string, number> => ({
    samples: lag.count,
    p50Ms: Math.round(lag.percentile(50) / 1e4) / 100,
    p99Ms: Math.round(lag.percentile(99) / 1e4) / 100,
    maxMs: Math.round(lag.max / 1e4) / 100,
  });
  // Metrics, history, alerts and ~/health; undefined with health.enabled false.
  // Read once: the bridge's file may hold tens of thousands of tags.
  const bridgeSocket = bridgeSocketPath(config.plcBridge.config);
  // PLC writes (the bridge's own write log) into the audit trail; the console's writes go through it.
  const plcWrites = bridgeSocket ? new PlcWriteAudit({ socket: bridgeSocket, log: audit.log, db: cmdDb, clock, logger: logger.child({ component: 'plc-write-audit' }) }) : undefined;
  const health = wireHealth({ bridgeSocket, config, db, clock, logger, topics, link, outbox, event, components: () => ({ 'wms-link': link.isConnected() ? 'running' : 'degraded' }) });

  // The watchdog over the PLC bridge and the declared services; incidents; the hung-agent fault hook.
  // The agent's own parts are supervised in-process: each says whether it is hung or dead, and restarts in place.
  const inProcess = [
    { name: 'wms-link', probe: () => link.liveness(), restart: () => link.restart() },
    ...(health ? [{ name: 'health-sampler', probe: () => health.liveness(), restart: () => health.restart() }] : []),
    { name: 'update-runner', probe: () => router.liveness(), restart: () => router.abortStalled() },
  ];
  const recovery = wireRecovery({ bridgeSocket, config, db, clock, logger, loops, env, event, inProcess, restart: (reason) => void shutdown(reason, true), fault: faultFromEnv(env) });

  const status = (): Record<string, unknown> => ({
    daemon: 'running',
    pid: process.pid,
    version: build.version,
    slot,
    gatewayId: config.gatewayId,
    dataDir: config.dataDir,
    startedAt: new Date(startedAt).toISOString(),
    uptimeSec: Math.round((clock.now() - startedAt) / 1000),
    broker: link.stats(),
    outbox: outbox.stats(),
    operations: router.current(),
    commands: { ...router.counters, queued: router.queued(), uncommitted: router.uncommitted() },
    storeCommits: storeGate.current() ?? 'ok',
    eventLoopLag: lagStats(),
    components: recovery.supervisor.status(),
    alerts: [...storeAlerts(), ...certificates.alerts(), ...(health?.activeAlerts() ?? [])],
    health: health?.lastSnapshot(),
  });
  // quick_check reads the whole store: a burst of diagnostics commands shares one result a minute.
  let integrity: { at: number; problems: string[] } | undefined;
  const diagnostics = (): Record<string, unknown> => {
    if (!integrity || clock.now() - integrity.at > 60_000) integrity = { at: clock.now(), problems: quickCheck(db) };
    const problems = integrity.problems;
    return {
      ...status(),
      node: process.version,
      memory: { rssBytes: process.memoryUsage().rss, heapUsedBytes: process.memoryUsage().heapUsed },
      store: { path: storePath(config), integrity: problems.length === 0 ? 'ok' : problems, checkedAt: new Date(integrity.at).toISOString() },
      loops: loops.peek(),
    };
  };

  let shutdown: (reason: string, restart: boolean) => Promise<void> = async () => undefined;
  router.register(diagnosticsOperation({ config, configPath, db, clock, logger: logger.child({ component: 'diag' }), version: build.version, builtAt: build.builtAt, facts: diagnostics }));
  router.register(
    restartOperation(
      {
        agent: () => {
          setImmediate(() => void shutdown('restart command', true));
        },
        ...recovery.restartTargets,
      },
      process.pid,
    ),
  );

  // Remote configuration (CONTRACT.md section 7): applied through a restart, kept only once confirmed.
  const configSource = boot.source ?? configPath;
  /** Who sent command `id`, as audit entries name it: its stored origin (`local`, `console:...`) or `wms:{id}`. */
  const actorOf = (id: string): string => {
    const o = store.get(id)?.origin;
    return o && o.trigger !== 'wms' ? o.actor : `wms:${id}`;
  };
  const configOp = configOperation({
    targets: { agent: agentTarget(configSource, config), 'plc-bridge': bridgeTarget(config.plcBridge.config) },
    runningHash: boot.content ? configHash(boot.content) : undefined,
    dataDir: config.dataDir,
    clock,
    logger: logger.child({ component: 'config' }),
    healthy: () => link.isConnected() && loops.peek().ok,
    restart: (reason) => void shutdown(reason, true),
    durable: () => new Promise<void>((resolve) => walSync.after(() => resolve())),
    audit: audit.port,
    actorOf: (id) => actorOf(id),
    keepKnownGood: (source, content) => void takeKnownGood({ dataDir: config.dataDir, source, content, keep: config.restore.keepConfigs }),
    fault: faultInjector(faultFromEnv(env), config.dataDir),
    ...(bridgeSocket ? { bridge: { socket: bridgeSocket, cli: process.argv[1] ?? '', timeoutMs: 60_000 } } : {}),
  });
  router.register(configOp);
  // The client certificate: status, CSR and install; the renewal on time (CONTRACT.md section 7).
  const certificates = new Certificates({
    config,
    clock,
    logger: logger.child({ component: 'certificates' }),
    audit: audit.port,
    actorOf: (id) => actorOf(id),
    event: (ev) => event(ev, true),
    reconnect: () => link.restart(),
    connected: () => link.isConnected(),
    durable: () => new Promise<void>((resolve) => walSync.after(() => resolve())),
  });
  router.register(certificates.operation());
  // Trust anchors of update bundles: only through a signed trust update (docs/trust-updates.md).
  router.register(trustOperation({ anchorsPath: config.ota.trustAnchors, clock, audit: audit.port, actorOf: (id) => actorOf(id) }));

  // The local web console (docs/console.md); nothing listens with console.enabled false.
  const webConsole = wireConsole({
    config, db, clock, logger, router, store, audit: audit.port, status,
    ...(plcWrites ? { plcWrite: (device: string, tags: Record<string, unknown>, actor: string) => plcWrites.write(device, tags, actor) } : {}),
    operations: () => {
      const runs = new Map(maintenance.runner.running().map((r) => [r.runId, r]));
      return { operations: router.queue().map((q) => ({ ...q, ...(runs.has(q.id) ? { run: runs.get(q.id) } : {}) })) };
    },
    maintenance: () => ({
      procedures: maintenance.catalog.get().entries.map((e) => ({ id: e.id, source: e.source, status: e.status, title: (e.procedure as { title?: unknown } | undefined)?.title, disruptive: (e.procedure as { disruptive?: unknown } | undefined)?.disruptive })),
      reports: maintenance.runner.reports(30),
    }),
    procedures: () => maintenance.catalog.get().entries.flatMap((e) => (e.status === 'valid' && e.procedure ? [e.procedure] : [])),
    auditTrail: audit.log,
    diag: { config, configPath, db, clock, logger: logger.child({ component: 'diag' }), version: build.version, builtAt: build.builtAt, facts: diagnostics },
  });
  consoleEvents.onEvent = (ev) => webConsole.onEvent(ev);
  const admin = new AdminServer({
    path: adminSocketPath(config),
    logger: logger.child({ component: 'admin' }),
    methods: {
      ...recovery.adminMethods,
      ...webConsole.adminMethods,
      status,
      diagnostics,
      'event-loop': (params) => {
        const stats = lagStats();
        if (params.reset === true) lag.reset();
        return stats;
      },
      event: (params) => {
        const p = noteParams.safeParse(params);
        if (!p.success) throw new EdgeError('invalid-request', p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
        event({ type: 'note', source: 'admin', ...p.data }, true);
        return { queued: true };
      },
      // A command from the console, routed as if the WMS had sent it (`edge-agent rollback`).
      command: (params) => {
        if (typeof params.op !== 'string') throw new EdgeError('invalid-request', 'op: a string is required');
        const priority = params.priority === 'low' || params.priority === 'high' || params.priority === 'normal' ? params.priority : undefined;
        const id = router.submit(params.op, params.params ?? {}, { origin: { trigger: 'local', actor: 'local' }, ...(typeof params.id === 'string' ? { id: params.id } : {}), ...(priority ? { priority } : {}) });
        // Commit the intake now: the caller asks for the command's status next.
        router.flushIntake();
        return { id };
      },
      // The queue with what the procedure runner knows of its runs (paused, waiting for a confirm).
      operations: () => {
        const runs = new Map(maintenance.runner.running().map((r) => [r.runId, r]));
        return { operations: router.queue().map((q) => ({ ...q, ...(runs.has(q.id) ? { run: runs.get(q.id) } : {}) })) };
      },
      'config-get': (params) => {
        const out = configOp.get(params.target === 'plc-bridge' ? 'plc-bridge' : 'agent');
        if (out.status !== 'successful') throw new EdgeError('reason' in out && out.reason ? out.reason.code : 'internal', 'reason' in out && out.reason ? out.reason.message : 'no configuration');
        return out.result;
      },
      'command-status': (params) => {
        const rec = typeof params.id === 'string' ? store.get(params.id) : undefined;
        return rec ? (JSON.parse(rec.lastMessage) as unknown) : null;
      },
    },
  });

  // Hands over the incidents of a config/store restore; known-good copies, backups, memory budget.
  const restore = wireRestore({
    config, boot, db, clock, logger, event,
    incidents: recovery.incidents,
    components: () => recovery.supervisor.status(),
    healthy: () => link.isConnected() && loops.peek().ok,
    hold: () => router.current().some((c) => c.op === 'config'),
    restart: (reason) => void shutdown(reason, true),
  });
  // After an update or a rollback the PLC bridge is handed over to this release's code.
  const bridgeUpgrade = new BridgeUpgrade({
    socket: bridgeSocket,
    cli: process.argv[1] ?? '',
    waitMs: 30_000,
    handoverTimeoutMs: 60_000,
    clock,
    logger: logger.child({ component: 'bridge-upgrade' }),
  });
  // `update-health`: ota.healthReportSec after an update committed (issue 18).
  const updateHealth = new UpdateHealth({
    dataDir: config.dataDir,
    reportSec: config.ota.healthReportSec,
    version: build.version,
    slot,
    clock,
    logger: logger.child({ component: 'update-health' }),
    event,
    incidentsSince: (since) => recovery.incidents.list({ since, limit: 1000 }).length,
    alerts: () => health?.activeAlerts() ?? [],
  });
  const gate = wireOta({
    // The maintenance windows (wired below): an update with `window: true` waits for the next one.
    nextWindowStart: () => {
      const now = clock.now();
      return maintenance.windows.currentWindow(now) ? now : maintenance.windows.nextWindows(now, 1)[0]?.start;
    },
    config,
    configPath,
    db,
    router,
    link,
    loops,
    clock,
    logger,
    version: build.version,
    runningSlot: slot === 'B' ? 'B' : 'A',
    underGuard: env.EDGE_AGENT_GUARD === '1',
    fault: faultInjector(faultFromEnv(env), config.dataDir),
    restart: (reason) => void shutdown(reason, true),
    onCommitted: () => restore.committed(),
    extraHealth: () => bridgeUpgrade.health(),
    event,
    incidents: recovery.incidents,
  });

  // Procedures: the runner, its operations (maintenance, pause, resume, confirm) and built-in actions.
  const maintenance = wireMaintenance({
    config,
    db,
    clock,
    logger,
    router,
    event,
    setState: (state) => link.setState(state),
    sample: health ? () => health.sampleNow() : undefined,
    components: () => ({ 'wms-link': link.isConnected() ? 'running' : 'degraded', ...Object.fromEntries(recovery.supervisor.status().map((c) => [c.name, c.state])) }),
    brokerConnected: () => link.isConnected(),
    restartTargets: recovery.restartTargets,
    bridgeSocket,
    keeper: restore.keeper,
    diag: { config, configPath, db, clock, logger: logger.child({ component: 'diag' }), version: build.version, builtAt: build.builtAt, facts: diagnostics },
    incidents: recovery.incidents,
  });
  eventHooks.push((ev) => maintenance.onEvent(ev));

  // Invalid maintenance procedures: announced on ~/events at start and when the directory changes.
  const procedureWatch = new ProcedureWatch({
    dir: config.maintenance.proceduresDir,
    shippedDir: shippedProceduresDir(),
    agentUid: process.getuid?.() ?? 0,
    db,
    event,
    logger: logger.child({ component: 'maintenance' }),
    onCatalog: (c) => maintenance.onCatalog(c),
  });

  const components: Component[] = [
    { name: 'loops', start: async () => loops.start(), stop: async () => loops.stop() },
    audit.component,
    ...(plcWrites ? [plcWrites] : []),
    updateHealth,
    router,
    maintenance.component,
    link,
    admin,
    recovery.supervisor,
    bridgeUpgrade,
    gate,
    ...(health ? [health] : []),
    restore,
    procedureWatch,
    certificates,
    ...(webConsole.component ? [webConsole.component] : []),
  ];
  const started: Component[] = [];
  let watchdog: NodeJS.Timeout | undefined;
  let exitCode = 0;
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping = false;

  shutdown = async (reason: string, restart: boolean): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'shutting down');
    notify.notify('STOPPING=1');
    const force = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown took too long; exiting');
      resolveDone(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    clearInterval(watchdog);
    storeGate.stop();
    lag.disable();
    // Give the broker a moment to acknowledge what is in flight, so the next process does not
    // send statuses again that the WMS already has (a retained status must not go backwards).
    if (link.isConnected()) await outbox.waitDrained(Math.min(2000, config.shutdownTimeoutMs / 4));
    for (const c of [...started].reverse()) {
      try {
        await c.stop();
      } catch (err) {
        logger.error({ err, component: c.name }, 'component failed to stop');
        exitCode = 1;
      }
    }
    outbox.close();
    writeAgentInfo(db, { stoppedAt: new Date().toISOString() });
    // A store file removed under the agent is written again from the open handle, stop included.
    restore.beforeClose();
    cmdDb.close();
    walSync.close();
    db.close();
    notify.close();
    clearTimeout(force);
    if (restart) exitCode = restartProcess(env, logger);
    logger.info({ exitCode }, 'stopped');
    resolveDone(exitCode);
  };

  const onSignal = (sig: NodeJS.Signals): void => void shutdown(sig, false);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    for (const c of components) {
      await c.start();
      started.push(c);
    }
  } catch (err) {
    const code = errorCode(err);
    logger.fatal({ err, code }, 'start failed');
    await shutdown('start failed', false);
    return 1;
  }
  event({ type: 'agent', severity: 'info', code: 'agent-started', message: `edge-agent ${build.version} started`, version: build.version, slot });
  // The first ping goes with READY=1: after a restart inside the unit (the boot guard restarting
  // the agent) the previous process's last ping may be most of a watchdog period old.
  notify.notify(watchdogIntervalMs(env) !== undefined ? 'READY=1\nWATCHDOG=1' : 'READY=1');
  logger.info({ version: build.version, slot, gatewayId: config.gatewayId, broker: redactUrl(config.mqtt.url), startMs: Date.now() - startedAt }, 'agent ready');

  const wdMs = watchdogIntervalMs(env);
  if (wdMs !== undefined && notify.enabled) {
    watchdog = setInterval(() => {
      const h = loops.check(wdMs);
      if (h.ok) notify.notify('WATCHDOG=1');
      else logger.warn({ health: h }, 'withholding the systemd watchdog ping: a critical loop is unhealthy');
    }, wdMs);
  }

  const code = await done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return code;
}

/**
 * Under the boot guard (ota/boot-guard.ts, our parent; it sets EDGE_AGENT_GUARD) exit status 75
 * makes it start the active slot again at once. Under systemd without the guard
 * (INVOCATION_ID is set for services) the unit's Restart=on-failure starts us again after 75.
 * Without either (demo, tests) a detached copy of this process takes over once this one has
 * released the store and the admin socket.
 */
function restartProcess(env: NodeJS.ProcessEnv, logger: Logger): number {
  if (env.EDGE_AGENT_GUARD) return EXIT_RESTART;
  if (env.INVOCATION_ID) return EXIT_RESTART;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { detached: true, stdio: 'inherit', env });
  child.unref();
  logger.info({ replacementPid: child.pid }, 'started the replacement process');
  return 0;
}
