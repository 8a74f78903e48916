/**
 * The PLC bridge's composition root (`edge-agent plc-bridge --config FILE [--handover]`). It
 * imports nothing from agent/ or ota/: it must keep running while the agent is stopped,
 * restarted, updated or rolled back.
 *
 * Start: config -> store -> device connections -> MQTT link -> pollers -> control socket ->
 * READY=1. With --handover it starts as a standby and takes the role over from the running
 * instance (handover.ts). Stop (SIGTERM/SIGINT) is the reverse, with `offline` on ~/plc/status.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../lib/log.js';
import { systemClock } from '../lib/clock.js';
import { errorCode, errorMessage } from '../lib/errors.js';
import { PlcError } from './errors.js';
import { RpcServer, socketAlive } from '../lib/rpc.js';
import { socketIn } from './paths.js';
import { SdNotify, watchdogIntervalMs } from '../lib/sdnotify.js';
import { LoopMonitor } from '../lib/loops.js';
import { buildInfo } from '../lib/version.js';
import { loadBridgeConfig, type BridgeConfig } from './config.js';
import { ForwardStore } from './store.js';
import { DeviceConnection } from './connection.js';
import { BridgeLink, bridgeTopics } from './mqtt-link.js';
import { Bridge } from './bridge.js';
import { Writer } from './writer.js';
import { SET_ID } from './write-plan.js';
import { HANDOVER_TOKEN_ENV, predecessorMethods, startSuccessor, takeOver, type SuccessorId } from './handover.js';
import { MemoryBudget } from '../lib/memory-budget.js';
import { memoryAction } from './memory-guard.js';
import { leakFaultMethods } from './fault-leak.js';

/** How long the control socket's `write` waits for the terminal status (a queue may be ahead of it). */
const CONTROL_WRITE_WAIT_MS = 20_000;
const ORIGIN = /^[A-Za-z0-9_.:-]{1,160}$/;

/** The params of the control socket's `write`, checked (the set's own validation is the writer's). Pure. */
export function controlWrite(p: Record<string, unknown>): { id: string; device: string; tags: Record<string, unknown>; origin: string } {
  const { id, device, tags, origin } = p;
  if (typeof id !== 'string' || !SET_ID.test(id)) throw new PlcError('invalid-params', 'id: [A-Za-z0-9_.:-]{1,128}');
  if (typeof device !== 'string' || device.length === 0) throw new PlcError('invalid-params', 'device: a device name');
  if (tags === null || typeof tags !== 'object' || Array.isArray(tags)) throw new PlcError('invalid-params', 'tags: an object of tag names to values');
  // Who asked, as the audit trail names it: the socket is the agent's and its group's (0660).
  if (typeof origin !== 'string' || !ORIGIN.test(origin)) throw new PlcError('invalid-params', 'origin: who asked, e.g. console:s-1a2b3c4d');
  return { id, device, tags: tags as Record<string, unknown>, origin };
}

/** EX_CONFIG, as the agent's `run`. */
export const EXIT_CONFIG = 78;

export interface BridgeRunOptions {
  configPath: string;
  handover: boolean;
  overrides?: { broker?: string | undefined; gatewayId?: string | undefined; dataDir?: string | undefined };
  env?: NodeJS.ProcessEnv;
}

export async function runBridge(opts: BridgeRunOptions): Promise<number> {
  const env = opts.env ?? process.env;
  let config: BridgeConfig;
  try {
    config = loadBridgeConfig(opts.configPath, opts.overrides ?? {});
  } catch (err) {
    process.stderr.write(`edge-agent plc-bridge: ${errorMessage(err)}\n`);
    return errorCode(err)?.startsWith('config-') ? EXIT_CONFIG : 1;
  }
  const logger = createLogger({ level: config.log.level, name: 'plc-bridge' });
  const clock = systemClock;
  const version = buildInfo().version;
  const session = `${Date.now().toString(36)}-${process.pid}`;
  const mainSocket = socketIn(config.dataDir);
  const ownSocket = join(config.dataDir, `plc-bridge.${process.pid}.sock`);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o750 });

  const predecessor = await socketAlive(mainSocket);
  if (predecessor && !opts.handover) {
    logger.fatal({ socket: mainSocket, code: 'already-running' }, 'another bridge runs with this data directory; not starting');
    return 1;
  }
  const standby = opts.handover && predecessor;
  // Given by the bridge that spawned this process; not passed on (a successor of ours gets its own).
  const handoverToken = env[HANDOVER_TOKEN_ENV];
  delete env[HANDOVER_TOKEN_ENV];
  /** Data silenced by a handover that was never completed: an incident, on ~/plc/status and in `status`. */
  const stalls: { count: number; last?: { at: string; code: 'handover-stalled'; successor: number; silencedMs: number; reason: string } } = { count: 0 };

  const store = new ForwardStore({ path: join(config.dataDir, 'plc-bridge.db'), maxBytes: config.store.maxBytes, maxAgeSec: config.store.maxAgeSec, clock, logger: logger.child({ component: 'plc-store' }) });
  store.open();
  const connections = new Map(config.devices.map((d) => [d.name, new DeviceConnection({ device: d, logger: logger.child({ component: 'modbus', device: d.name }), clock })]));
  const loops = new LoopMonitor({ clock, maxLagMs: 5000 });
  const maxInterval = Math.max(...config.devices.flatMap((d) => d.groups.map((g) => g.intervalMs)));
  loops.register('poll', Math.max(10_000, 10 * maxInterval));

  const topics = bridgeTopics(config.mqtt.prefix, config.gatewayId);
  const statusBody = (): Record<string, unknown> => {
    const devices: Record<string, unknown> = {};
    for (const [name, d] of Object.entries(bridge.devices())) devices[name] = { link: connections.get(name)?.link ?? 'down', lastReadAt: d.lastReadAt ?? null };
    // Data the store had to drop (its bounds), so the WMS knows how much history is missing.
    return { state: 'online', session, version, devices, dropped: store.stats().dropped, ...(stalls.count > 0 ? { stalls } : {}) };
  };
  const link = new BridgeLink({
    mqtt: config.mqtt,
    topics,
    // Two instances run side by side during a handover: each needs its own client id.
    clientId: `${config.mqtt.clientId ?? `${config.gatewayId}-plc-bridge`}-${process.pid}`,
    store,
    logger: logger.child({ component: 'plc-mqtt' }),
    clock,
    replayPerSec: config.store.replayPerSec,
    status: statusBody,
    // Sets arrive only after the link connected, by which time the writer exists.
    onSet: (device, payload) => writer.handle(device, payload),
    announce: !standby,
  });
  const bridge = new Bridge({ config, readers: connections, sink: link, clock, logger: logger.child({ component: 'plc-poll' }), role: standby ? 'standby' : 'active', onTick: () => loops.tick('poll') });
  const writer = new Writer({ devices: config.devices, io: (name) => connections.get(name), ledger: store, publish: (id, body) => link.publishResult(id, body), clock, logger: logger.child({ component: 'plc-write' }), maxSetBytes: config.maxSetBytes });
  const notify = new SdNotify({ socketPath: env.NOTIFY_SOCKET, logger: logger.child({ component: 'systemd' }) });

  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping = false;
  let handedOver = false;
  const timers: NodeJS.Timeout[] = [];
  const stopAll = async (graceful: boolean): Promise<void> => {
    for (const t of timers) clock.clearInterval(t);
    await budget.stop();
    bridge.stop();
    // Sets already taken off the socket get their answer too.
    link.drainSets();
    await Promise.race([writer.drain(), new Promise<void>((r) => clock.setTimeout(() => r(), 5000))]);
    await link.stop({ graceful });
    await Promise.all([...connections.values()].map((c) => c.stop()));
    await control.stop();
    loops.stop();
    store.close();
    notify.close();
  };
  const shutdown = async (reason: string, graceful: boolean, code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'bridge stopping');
    // After a handover the unit's main process is the successor: STOPPING=1 from us would tell
    // systemd the whole service is going down (NotifyAccess=all).
    if (!handedOver) notify.notify('STOPPING=1');
    try {
      await stopAll(graceful);
    } catch (err) {
      logger.error({ err }, 'bridge stop failed');
      code = 1;
    }
    logger.info({ code }, 'bridge stopped');
    resolveDone(code);
  };

  const control = new RpcServer({
    name: 'plc-control',
    path: standby ? ownSocket : mainSocket,
    logger: logger.child({ component: 'plc-control' }),
    methods: {
      ping: () => ({ pid: process.pid, version, cli: process.argv[1], instance: process.pid, role: bridge.role, session, ts: new Date(clock.now()).toISOString(), loopsOk: loops.peek().ok }),
      status: () => ({
        ...statusBody(),
        role: bridge.role,
        pid: process.pid,
        devices: Object.fromEntries(
          Object.entries(bridge.devices()).map(([name, d]) => {
            const c = connections.get(name);
            return [name, { link: c?.link ?? 'down', ...d, ...(c?.lastError ? { error: c.lastError } : {}) }];
          }),
        ),
        groups: bridge.groupStats(),
        store: store.stats(),
        mqtt: link.stats(),
        writes: writer.counters,
        memory: { rssBytes: process.memoryUsage().rss, heapUsedBytes: process.memoryUsage().heapUsed, budget: memoryWatch },
      }),
      // A local write (the console, through the agent): the same validation, queue, ledger and
      // ~/res/{id} as a set from the WMS; answered with its terminal status (docs/plc-bridge.md).
      write: async (params) => {
        const w = controlWrite(params);
        if (bridge.role === 'standby') throw new PlcError('not-active', 'this instance is a standby');
        const answer = writer.terminal(w.id, CONTROL_WRITE_WAIT_MS);
        writer.handle(w.device, Buffer.from(JSON.stringify({ id: w.id, tags: w.tags })), w.origin);
        return (await answer) ?? { id: w.id, op: 'set', status: 'executing', message: `no terminal status within ${CONTROL_WRITE_WAIT_MS} ms: it follows on ~/res/${w.id}` };
      },
      // The agent's audit trail reads the writes from its cursor on (agent/plc-write-audit.ts).
      'write-log': (params) => {
        const after = typeof params.after === 'number' && Number.isInteger(params.after) && params.after >= 0 ? params.after : 0;
        const limit = typeof params.limit === 'number' && Number.isInteger(params.limit) ? Math.min(Math.max(params.limit, 1), 1000) : 500;
        return store.writeLog(after, limit);
      },
      // A new release's agent asks for this after an update or a rollback (agent/bridge-upgrade.ts).
      upgrade: async (params) => {
        if (typeof params.cli !== 'string') throw new PlcError('invalid-params', 'cli: the path of the release entry point is required');
        return upgrade(params.cli);
      },
      ...predecessorMethods({
        bridge,
        clock,
        logger,
        timeoutMs: config.handover.timeoutMs,
        successor: () => successor,
        onStall: (s) => {
          stalls.count++;
          stalls.last = { at: new Date(clock.now()).toISOString(), code: 'handover-stalled', ...s };
          logger.error({ code: 'handover-stalled', ...s }, 'a handover silenced the data and was never completed: took the role back');
          link.publishStatus();
        },
        retire: async () => {
          handedOver = true;
          await control.unlisten();
          setImmediate(() => void shutdown('handed over', false, 0));
        },
      }),
      ...leakFaultMethods(env.EDGE_AGENT_FAULT, logger.child({ component: 'fault' })),
    },
  });

  let upgrading: Promise<{ pid: number }> | undefined;
  let successor: SuccessorId | undefined;
  const upgrade = (cli: string): Promise<{ pid: number }> => {
    if (bridge.role !== 'active') return Promise.reject(new PlcError('not-active', `this instance is ${bridge.role}`));
    upgrading ??= startSuccessor({
      cli,
      ownCli: process.argv[1] ?? '',
      args: process.argv.slice(2),
      mainSocket,
      timeoutMs: config.handover.timeoutMs,
      logger,
      clock,
      env,
      expect: (s) => (successor = s),
    }).finally(() => {
      upgrading = undefined;
      successor = undefined;
    });
    return upgrading;
  };
  // memory-guard.ts: a budget reached this soon after start is below a fresh instance's baseline.
  let activeAt = clock.now();
  let baseline = { rss: 0, heap: 0 };
  let memoryWatch: 'watching' | 'off-below-baseline' = 'watching';
  const budget = new MemoryBudget({
    budget: { rssBytes: config.memory.rssBytes, heapBytes: config.memory.heapBytes },
    checkIntervalMs: config.memory.checkIntervalMs,
    clock,
    logger: logger.child({ component: 'memory' }),
    // A restart in place would lose polls; a handover to a fresh instance of the same release does not.
    onExceeded: (info) => {
      if (memoryAction(clock.now() - activeAt, config.memory.checkIntervalMs) === 'below-baseline') {
        // The budget fires once per start: no more memory handovers from this instance.
        memoryWatch = 'off-below-baseline';
        logger.error({ budget: info.budget, baseline, rss: info.rss, heap: info.heap, over: info.over }, 'memory budget below what a fresh bridge needs: not handing over for memory, running on without a budget');
        return;
      }
      logger.warn({ rss: info.rss, heap: info.heap, over: info.over }, 'memory budget reached: handing over to a fresh instance');
      upgrade(process.argv[1] ?? '').catch((err: unknown) => {
        logger.error({ err }, 'handover failed; restarting instead');
        void shutdown('memory budget', true, 75);
      });
    },
  });

  const onSignal = (sig: NodeJS.Signals): void => void shutdown(sig, true, 0);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  loops.start();
  // A new session (no other instance shares the store): writes a stopped process left open get
  // their one terminal status now, before any new set is taken (they wait in the store for the
  // broker like every answer).
  if (!standby) writer.closeInterrupted();
  for (const c of connections.values()) {
    c.onLink(() => link.publishStatus());
    c.start();
  }
  link.start();
  if (!standby) link.setSetsEnabled(true);
  bridge.start();
  try {
    await control.start();
    if (standby) {
      await takeOver({
        bridge,
        clock,
        logger,
        mainSocket,
        ownSocket,
        timeoutMs: config.handover.timeoutMs,
        token: handoverToken,
        linkUp: (d) => connections.get(d)?.link === 'up',
        activate: async () => {
          link.setSetsEnabled(true);
          link.setAnnounce(true);
          // The predecessor keeps its set subscription until it leaves; it may leave only once
          // ours is granted, or a set sent in between would reach nobody. A broker that is down
          // holds this up to the deadline, then sets wait for the reconnect like everything else.
          const until = clock.now() + config.handover.timeoutMs;
          while (!link.setsReady && clock.now() < until) await new Promise<void>((r) => clock.setTimeout(() => r(), 10));
          // Under systemd the unit follows us from here on, before the predecessor exits
          // (edge-plc-bridge.service: NotifyAccess=all).
          notify.notify(`MAINPID=${process.pid}`);
        },
      });
    }
  } catch (err) {
    logger.error({ err, code: errorCode(err) }, standby ? 'handover failed; the running bridge keeps the role' : 'bridge start failed');
    await shutdown('start failed', false, 1);
    return done;
  }
  activeAt = clock.now();
  baseline = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
  void budget.start();
  // The first watchdog ping goes with READY=1: after a handover the predecessor's last one may be
  // most of a watchdog period old.
  notify.notify(`MAINPID=${process.pid}\nREADY=1${watchdogIntervalMs(env) !== undefined ? '\nWATCHDOG=1' : ''}`);
  logger.info({ version, session, devices: config.devices.length, handover: standby }, 'bridge ready');
  const wdMs = watchdogIntervalMs(env);
  if (wdMs !== undefined) {
    timers.push(
      clock.setInterval(() => {
        if (loops.check(wdMs).ok) notify.notify('WATCHDOG=1');
      }, wdMs),
    );
  }
  const code = await done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return code;
}
