/**
 * Light simulated gateways for the fleet bench: one mqtt.js client each, many in one process.
 * Each implements the contract's command lifecycle for `update` (accepted -> executing ->
 * successful | failed, retained on ~/res/{id}, with the command's rolloutId), a retained
 * `~/status`, and an `update-health` event after a success; failures and delays are drawn from
 * per-gateway rates. Any other operation is answered `successful` at once (the capacity and
 * retained-results scenarios). Results are retained with the agent's policy: MQTT 5 message
 * expiry, or on 3.1.1 an empty retained publish when the id is forgotten. Reconnects follow the agent's policy (lib/backoff.ts, lib/broker-list.ts):
 * with `firstJitter` the first reconnect after a loss waits a random fraction of the initial
 * backoff, without it the plain first backoff step (what the agent did before issue 18).
 * Bench code, not product code: only 127.0.0.1.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { backoffDelay, type BackoffPolicy } from '../../lib/backoff.js';
import { firstReconnectDelay } from '../../lib/broker-list.js';

export interface SimOptions {
  url: string;
  ids: string[];
  backoff: BackoffPolicy;
  firstJitter: boolean;
  /** Per gateway: probability that an update fails; and the work's delay range (ms). */
  failRate(id: string): number;
  /** Gateways whose update-health after a success says healthy: false. */
  unhealthy?(id: string): boolean;
  delayMs: [number, number];
  /**
   * MQTT version per gateway (default 4). Results are retained as the agent publishes them: on 5
   * with a message expiry of `resultExpirySec` (0: none); on 4 cleared (empty retained publish)
   * `forgetMs` after their terminal status, as the agent does when it forgets a command id.
   */
  protocol?(id: string): 4 | 5;
  resultExpirySec?: number;
  forgetMs?: number;
  /** Told of every CONNACK, and of every connection attempt (what the broker sees coming). */
  onConnect?(at: number): void;
  onAttempt?(at: number): void;
}

export interface SimFleet {
  connected(): number;
  /** Gateways that received at least one command. */
  commanded(): Set<string>;
  /** Switches the first-reconnect policy for the next losses (the storm runs alternate it). */
  setFirstJitter(on: boolean): void;
  stop(): Promise<void>;
}

export async function startSimFleet(o: SimOptions, rampPerTick = 200): Promise<SimFleet> {
  const state = new Map<string, { client: MqttClient | undefined; up: boolean; attempt: number; timer: NodeJS.Timeout | undefined }>();
  const commanded = new Set<string>();
  let stopped = false;
  let up = 0;
  let firstJitter = o.firstJitter;
  const forgets = new Set<NodeJS.Timeout>();
  const connect = (id: string): void => {
    const s = state.get(id)!;
    if (stopped) return;
    o.onAttempt?.(performance.now());
    const client = mqtt.connect(o.url, { clientId: `sim-${id}`, protocolVersion: o.protocol?.(id) ?? 4, clean: true, reconnectPeriod: 0, connectTimeout: 10_000, keepalive: 60, writeCache: false, will: { topic: `edge/${id}/status`, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true } });
    s.client = client;
    client.on('connect', () => {
      s.up = true;
      s.attempt = 0;
      up++;
      o.onConnect?.(performance.now());
      client.publish(`edge/${id}/status`, JSON.stringify({ state: 'online', version: '1.0.0' }), { qos: 1, retain: true });
      client.subscribe(`edge/${id}/cmd/+`, { qos: 1 });
    });
    client.on('message', (topic, payload) => onCommand(id, client, topic, payload));
    client.on('error', () => undefined);
    client.on('close', () => {
      if (s.client !== client) return;
      const lost = s.up;
      if (s.up) up--;
      s.up = false;
      s.client = undefined;
      client.end(true);
      if (stopped) return;
      const delay = lost ? (firstJitter ? firstReconnectDelay(o.backoff.initialMs) : backoffDelay(o.backoff, 0)) : backoffDelay(o.backoff, s.attempt++);
      s.timer = setTimeout(() => connect(id), delay);
    });
  };
  const onCommand = (id: string, client: MqttClient, topic: string, payload: Buffer): void => {
    let cmd: { id?: string; params?: { rolloutId?: string } };
    try {
      cmd = JSON.parse(payload.toString()) as typeof cmd;
    } catch {
      return;
    }
    if (!cmd.id) return;
    const cmdId = cmd.id;
    const v5 = (o.protocol?.(id) ?? 4) === 5;
    const resTopic = `edge/${id}/res/${cmdId}`;
    const res = (status: string, extra: Record<string, unknown> = {}): void => {
      const expiry = v5 && (o.resultExpirySec ?? 0) > 0 ? { properties: { messageExpiryInterval: o.resultExpirySec } } : {};
      client.publish(resTopic, JSON.stringify({ id: cmdId, op: topic.slice(topic.lastIndexOf('/') + 1), status, ts: new Date().toISOString(), rolloutId: cmd.params?.rolloutId, ...extra }), { qos: 1, retain: true, ...expiry });
      if (!v5 && o.forgetMs !== undefined && ['successful', 'failed'].includes(status)) {
        const t = setTimeout(() => {
          forgets.delete(t);
          // The agent forgets the id: its retained result is cleared (a zero-length retained publish).
          if (s.client === client && s.up) client.publish(resTopic, '', { qos: 1, retain: true });
        }, o.forgetMs);
        forgets.add(t);
      }
    };
    const s = state.get(id)!;
    if (!topic.endsWith('/cmd/update')) return res('successful', { result: {} });
    commanded.add(id);
    res('accepted');
    res('executing', { progress: { step: 'download', percent: 0 } });
    const [lo, hi] = o.delayMs;
    setTimeout(() => {
      if (Math.random() < o.failRate(id)) return res('failed', { reason: { code: 'rolled-back', message: 'simulated failure' } });
      res('successful', { result: { fromVersion: '1.0.0', toVersion: '1.1.0', rolledBack: false } });
      client.publish(`edge/${id}/events`, JSON.stringify({ type: 'update-health', code: 'update-health', severity: 'info', command: cmdId, rolloutId: cmd.params?.rolloutId, restarts: 0, incidents: 0, alerts: [], healthy: o.unhealthy?.(id) !== true }), { qos: 1 });
    }, lo + Math.random() * (hi - lo));
  };
  for (const id of o.ids) state.set(id, { client: undefined, up: false, attempt: 0, timer: undefined });
  // Ramp the first connections: thousands of TLS-less CONNECTs at once would be a storm of our own.
  for (let i = 0; i < o.ids.length; i += rampPerTick) {
    for (const id of o.ids.slice(i, i + rampPerTick)) connect(id);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    connected: () => up,
    commanded: () => commanded,
    setFirstJitter: (on) => (firstJitter = on),
    stop: async () => {
      stopped = true;
      for (const t of forgets) clearTimeout(t);
      for (const s of state.values()) {
        clearTimeout(s.timer);
        s.client?.end(true);
      }
    },
  };
}
