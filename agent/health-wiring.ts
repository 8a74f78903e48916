/**
 * Wires health/ into the agent: the sampler's inputs (outbox depth, broker link, the PLC bridge's
 * control socket), the alert rules from `health.thresholds`, the history in the agent's store,
 * and `~/health` through the WMS link. Called once by the composition root.
 */
import { rpcRequest } from '../lib/rpc.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { AlertEngine, type AlertRule } from '../health/alerts.js';
import { HealthHistory, readActiveAlerts, readRawSince } from '../health/history.js';
import { HealthMonitor } from '../health/monitor.js';
import { Sampler, type BridgeInfo } from '../health/sampler.js';
import { bridgeSocketPath } from '../plc-bridge/paths.js';
import type { AgentConfig, HEALTH_THRESHOLDS } from '../core/config.js';
import type { AgentEvent } from '../core/ports.js';
import type { Topics } from './topics.js';

type ThresholdName = (typeof HEALTH_THRESHOLDS)[number];

/** The metric each configured threshold watches (`*`: one name segment, e.g. each file system). */
export const THRESHOLD_METRICS: Record<ThresholdName, string> = {
  cpu: 'cpu.pct',
  memory: 'mem.usedPct',
  swap: 'swap.usedPct',
  disk: 'disk.*.usedPct',
  inodes: 'disk.*.inodesUsedPct',
  temperature: 'temp.maxC',
  eventLoopLag: 'agent.loopLagMs',
  outboxDepth: 'outbox.depth',
  agentMemory: 'agent.rssMB',
  plcReadAge: 'plc.*.lastGoodAgeMs',
};

/** The alert rules of a `health` section. Pure. */
export function healthRules(h: AgentConfig['health']): AlertRule[] {
  const trend = new Set<string>(h.degradation.thresholds);
  return (Object.keys(THRESHOLD_METRICS) as ThresholdName[]).map((name) => {
    const t = h.thresholds[name];
    return { name, metric: THRESHOLD_METRICS[name], raiseAbove: t.raise, clearAt: t.clear, forMs: t.forMs, trend: trend.has(name) };
  });
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const rec = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

/** The bridge's `status` answer (docs/plc-bridge.md), read defensively: it is another process's word. */
export function bridgeInfo(status: unknown): BridgeInfo {
  const s = rec(status);
  const devices: BridgeInfo['devices'] = {};
  for (const [name, d] of Object.entries(rec(s.devices))) {
    const dev = rec(d);
    devices[name] = { link: typeof dev.link === 'string' ? dev.link : 'down', lastGoodAgeMs: num(dev.lastGoodAgeMs) };
  }
  const mqtt = rec(s.mqtt);
  return {
    pid: num(s.pid),
    storeDepth: num(rec(s.store).depth),
    mqttConnected: typeof mqtt.connected === 'boolean' ? mqtt.connected : undefined,
    devices,
  };
}

export interface HealthWiring {
  config: AgentConfig;
  db: Db;
  clock: Clock;
  logger: Logger;
  topics: Topics;
  link: { stats(): { connected: boolean; rttMs: number | undefined }; publishVolatile(topic: string, payload: string): void };
  outbox: { stats(): { depth: number } };
  event: (ev: AgentEvent) => void;
  /**
   * The PLC bridge's status; undefined: asked over its control socket when a bridge is
   * configured (`plcBridge.config`), else no bridge metrics. A rejection counts as `bridge.up` 0.
   */
  bridgeStatus?: (() => Promise<BridgeInfo>) | undefined;
  /** The bridge's control socket as the caller resolved it once (reading the bridge's file); default: resolved here. */
  bridgeSocket?: string | undefined;
  components?: () => Record<string, string>;
}

/** The health monitor, a component to start after the WMS link; undefined when `health.enabled` is false. */
export function wireHealth(w: HealthWiring): HealthMonitor | undefined {
  const h = w.config.health;
  if (!h.enabled) return undefined;
  const log = w.logger.child({ component: 'health' });
  let bridge = w.bridgeStatus;
  if (!bridge) {
    const sock = 'bridgeSocket' in w ? w.bridgeSocket : bridgeSocketPath(w.config.plcBridge.config);
    if (sock !== undefined) bridge = async () => bridgeInfo(await rpcRequest(sock, 'status', {}, 2000));
  }
  const sampler = new Sampler({
    filesystems: { data: w.config.dataDir, slot: w.config.ota.root },
    clock: w.clock,
    inputs: {
      outboxDepth: () => w.outbox.stats().depth,
      broker: () => w.link.stats(),
      ...(bridge ? { bridge } : {}),
    },
  });
  const now = w.clock.now();
  const degradation = { windowMs: h.degradation.windowMs, horizonMs: h.degradation.horizonMs };
  const engine = new AlertEngine(healthRules(h), degradation, { restore: readActiveAlerts(w.db), staleMs: Math.max(10 * 60_000, 3 * h.sampleIntervalMs) });
  // The trend windows start from the stored samples, so a restart does not blind them for an hour.
  for (const s of readRawSince(w.db, now - h.degradation.windowMs)) engine.seed(s.ts, s.metrics);
  const history = new HealthHistory({ db: w.db, retention: h.retention });
  return new HealthMonitor({
    sampler,
    history,
    engine,
    clock: w.clock,
    logger: log,
    sampleIntervalMs: h.sampleIntervalMs,
    publishIntervalMs: h.publishIntervalMs,
    event: w.event,
    publish: (snapshot) => w.link.publishVolatile(w.topics.health, JSON.stringify(snapshot)),
    ...(w.components ? { components: w.components } : {}),
  });
}
