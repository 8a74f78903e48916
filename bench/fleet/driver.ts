/**
 * A small rollout driver for the fleet bench (the WMS's job, not product code): waves of growing
 * size, results read through a shared subscription ($share/wms/edge/+/res/+, several members),
 * an abort threshold with a minimum sample, and the `update-health` events counted before the
 * next wave. Every command must reach exactly one distinct terminal status at the driver.
 */
import mqtt, { type MqttClient } from 'mqtt';

export interface RolloutPlan {
  url: string;
  ids: string[];
  /** Fractions of the fleet per wave, e.g. [0.01, 0.05, 0.25, 1]: cumulative. */
  waves: number[];
  /** Halt when failed / terminal in a wave is above this, once at least `minSample` are terminal. */
  abortAbove: number;
  minSample: number;
  /** Members of the shared subscription group. */
  members: number;
  waveTimeoutMs: number;
}

export interface RolloutOutcome {
  halted: boolean;
  haltedAtWave: number | undefined;
  wavesSent: number;
  sent: number;
  terminal: number;
  failed: number;
  healthEvents: number;
  /** Commands with more than one distinct terminal status, or none at the end. */
  doubleTerminal: number;
  missingTerminal: number;
  /** Gateways sent a command: none past the wave that halted. */
  commandedIds: Set<string>;
  durationMs: number;
}

const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

export async function runRollout(p: RolloutPlan): Promise<RolloutOutcome> {
  const t0 = performance.now();
  const members: MqttClient[] = [];
  const terminals = new Map<string, Set<string>>();
  let health = 0;
  for (let m = 0; m < p.members; m++) {
    const c = await mqtt.connectAsync(p.url, { clientId: `wms-${m}`, clean: true, reconnectPeriod: 0, protocolVersion: 5 });
    c.on('message', (_topic, payload) => {
      let msg: { id?: string; status?: string; type?: string };
      try {
        msg = JSON.parse(payload.toString()) as typeof msg;
      } catch {
        return;
      }
      if (msg.type === 'update-health') health++;
      else if (msg.id && msg.status && TERMINAL.has(msg.status)) {
        const s = terminals.get(msg.id) ?? new Set<string>();
        s.add(msg.status);
        terminals.set(msg.id, s);
      }
    });
    await c.subscribeAsync(['$share/wms/edge/+/res/+', '$share/wms/edge/+/events'], { qos: 1 });
    members.push(c);
  }
  const sender = members[0]!;
  const sentIds: string[] = [];
  const commandedIds = new Set<string>();
  let from = 0;
  let halted = false;
  let haltedAtWave: number | undefined;
  let wavesSent = 0;
  for (let wave = 0; wave < p.waves.length && !halted; wave++) {
    wavesSent++;
    const to = Math.min(p.ids.length, Math.max(from + 1, Math.round(p.waves[wave]! * p.ids.length)));
    const ids = p.ids.slice(from, to);
    const rolloutId = `ro-wave-${wave}`;
    const waveCmds = ids.map((gw) => ({ gw, id: `${rolloutId}-${gw}` }));
    for (const c of waveCmds) {
      commandedIds.add(c.gw);
      sentIds.push(c.id);
      sender.publish(`edge/${c.gw}/cmd/update`, JSON.stringify({ id: c.id, params: { url: 'http://127.0.0.1:1/bundle.tar', rolloutId } }), { qos: 1 });
    }
    // Wait for the wave: halt as soon as the threshold is passed with the minimum sample.
    const deadline = performance.now() + p.waveTimeoutMs;
    for (;;) {
      const done = waveCmds.filter((c) => terminals.has(c.id));
      const failed = done.filter((c) => terminals.get(c.id)!.has('failed')).length;
      if (done.length >= p.minSample && failed / done.length > p.abortAbove) {
        halted = true;
        haltedAtWave = wave;
        break;
      }
      if (done.length === waveCmds.length || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    from = to;
    if (from >= p.ids.length) break;
  }
  // Let the halted wave's stragglers finish, so every command has its terminal status.
  const end = performance.now() + p.waveTimeoutMs;
  while (sentIds.some((id) => !terminals.has(id)) && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 500));
  const failed = sentIds.filter((id) => terminals.get(id)?.has('failed')).length;
  const out: RolloutOutcome = {
    halted,
    haltedAtWave,
    wavesSent,
    sent: sentIds.length,
    terminal: sentIds.filter((id) => terminals.has(id)).length,
    failed,
    healthEvents: health,
    doubleTerminal: sentIds.filter((id) => (terminals.get(id)?.size ?? 0) > 1).length,
    missingTerminal: sentIds.filter((id) => !terminals.has(id)).length,
    commandedIds,
    durationMs: performance.now() - t0,
  };
  for (const m of members) await m.endAsync(true);
  return out;
}
