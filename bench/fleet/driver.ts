/**
 * A small rollout driver for the fleet bench (the WMS's job, not product code): waves of growing
 * size, results read through a shared subscription ($share/wms/edge/+/res/+ and
 * $share/wms/edge/+/events, several members), an abort threshold with a minimum sample, and the
 * `update-health` events: before the next wave the driver waits for the health report of each
 * success of the wave, and a report with `healthy: false` counts as a failure. Every command must
 * reach exactly one distinct terminal status at the driver (delivery is at least once, so the
 * same status twice is one); `checkTerminals` says which did not.
 */
import mqtt, { type MqttClient } from 'mqtt';

const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

/** The WMS side: members of the shared subscription group, what they received. */
export interface Wms {
  /** Command id -> the distinct terminal statuses received. */
  terminals: Map<string, Set<string>>;
  /** Command id -> healthy, from its update-health event. */
  health: Map<string, boolean>;
  /** Command id -> when (Date.now()) its first `executing` status past `waiting` came (the work started), and its first terminal status. */
  startedAt: Map<string, number>;
  terminalAt: Map<string, number>;
  /** Gateways that published a status of a command whose id starts with `ro-` (they received a rollout command). */
  rolloutSeen: Set<string>;
  /** Command id -> progress step -> when its first `executing` status with that step came. */
  steps: Map<string, Map<string, number>>;
  send(gw: string, op: string, id: string, params?: Record<string, unknown>): void;
  close(): Promise<void>;
}

export async function connectWms(url: string, members: number, name = 'wms'): Promise<Wms> {
  const clients: MqttClient[] = [];
  const terminals = new Map<string, Set<string>>();
  const health = new Map<string, boolean>();
  const startedAt = new Map<string, number>();
  const terminalAt = new Map<string, number>();
  const rolloutSeen = new Set<string>();
  const steps = new Map<string, Map<string, number>>();
  for (let m = 0; m < members; m++) {
    const c = await mqtt.connectAsync(url, { clientId: `${name}-${m}`, clean: true, reconnectPeriod: 0, protocolVersion: 5 });
    c.on('message', (topic, payload) => {
      const at = Date.now();
      let msg: { id?: string; status?: string; type?: string; command?: string; healthy?: boolean; progress?: { step?: string } };
      try {
        msg = JSON.parse(payload.toString()) as typeof msg;
      } catch {
        return; // a cleared retained result is an empty payload
      }
      if (msg.type === 'update-health' && msg.command) health.set(msg.command, msg.healthy === true);
      if (msg.id?.startsWith('ro-') && topic.includes('/res/')) rolloutSeen.add(topic.split('/')[1] ?? '');
      // The work starts with the first step past `waiting` (an `executing` without a step, or `waiting`, is not it).
      const step = msg.progress?.step;
      if (msg.id && msg.status === 'executing' && step !== undefined && step !== 'waiting' && !startedAt.has(msg.id)) startedAt.set(msg.id, at);
      if (msg.id && msg.status === 'executing' && step) {
        const m = steps.get(msg.id) ?? new Map<string, number>();
        if (!m.has(step)) m.set(step, at);
        steps.set(msg.id, m);
      }
      if (msg.id && msg.status && TERMINAL.has(msg.status)) {
        if (!terminalAt.has(msg.id)) terminalAt.set(msg.id, at);
        const s = terminals.get(msg.id) ?? new Set<string>();
        s.add(msg.status);
        terminals.set(msg.id, s);
      }
    });
    await c.subscribeAsync(['$share/wms/edge/+/res/+', '$share/wms/edge/+/events'], { qos: 1 });
    clients.push(c);
  }
  const sender = clients[0]!;
  return {
    terminals,
    health,
    startedAt,
    terminalAt,
    rolloutSeen,
    steps,
    send: (gw, op, id, params) => void sender.publish(`edge/${gw}/cmd/${op}`, JSON.stringify({ id, ...(params ? { params } : {}) }), { qos: 1 }),
    close: async () => {
      for (const c of clients) await c.endAsync(true);
    },
  };
}

export interface TerminalCheck {
  sent: number;
  /** Commands with exactly one distinct terminal status. */
  exactlyOne: number;
  /** More than one distinct terminal status. */
  double: number;
  /** None at the end. */
  missing: number;
}

export function checkTerminals(w: Wms, ids: readonly string[]): TerminalCheck {
  const n = (id: string): number => w.terminals.get(id)?.size ?? 0;
  return { sent: ids.length, exactlyOne: ids.filter((id) => n(id) === 1).length, double: ids.filter((id) => n(id) > 1).length, missing: ids.filter((id) => n(id) === 0).length };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends every command, then waits (up to `timeoutMs`) until each has a terminal status. */
export async function runCommands(w: Wms, cmds: readonly { gw: string; op: string; id: string; params?: Record<string, unknown> }[], timeoutMs: number): Promise<TerminalCheck & { durationMs: number }> {
  const t0 = performance.now();
  for (const [i, c] of cmds.entries()) {
    w.send(c.gw, c.op, c.id, c.params);
    if (i % 500 === 499) await sleep(0); // let the socket drain and the answers in
  }
  const ids = cmds.map((c) => c.id);
  const end = t0 + timeoutMs;
  while (ids.some((id) => !w.terminals.has(id)) && performance.now() < end) await sleep(50);
  const durationMs = performance.now() - t0;
  await sleep(500); // a late second terminal status would show here
  return { ...checkTerminals(w, ids), durationMs };
}

export interface RolloutPlan {
  url: string;
  ids: string[];
  /** Fractions of the fleet per wave, e.g. [0.01, 0.05, 0.25, 1]: cumulative. */
  waves: number[];
  /** Halt when (failed + unhealthy) / terminal in a wave is above this, once at least `minSample` are terminal. */
  abortAbove: number;
  minSample: number;
  /** Members of the shared subscription group. */
  members: number;
  waveTimeoutMs: number;
  /** How long to wait for the update-health reports of a wave's successes before the next wave. */
  healthTimeoutMs: number;
  /** The bundle's URL (default: one nobody serves; simulated gateways do not download). */
  bundleUrl?: string;
  /** Extra `update` params for one gateway, e.g. a staggered `notBefore` (index: in the wave). */
  params?(gw: string, wave: number, index: number): Record<string, unknown>;
  /** A longer wait for a wave holding any of these gateways (real installs take longer than simulated ones). */
  slow?: { ids: ReadonlySet<string>; waveTimeoutMs: number };
}

export interface RolloutOutcome {
  halted: boolean;
  haltedAtWave: number | undefined;
  wavesSent: number;
  sent: number;
  terminal: number;
  failed: number;
  /** update-health events received, and those saying healthy: false. */
  healthEvents: number;
  unhealthy: number;
  /** Commands with more than one distinct terminal status, or none at the end. */
  doubleTerminal: number;
  missingTerminal: number;
  /** Gateways sent a command: none past the wave that halted. */
  commandedIds: Set<string>;
  /** The gateways of the waves up to the one that halted (all, when none did). */
  allowedIds: Set<string>;
  /** Gateways seen answering a rollout command (its statuses at the driver). */
  seenIds: Set<string>;
  /** Gateway -> its command: sent, work started, terminal (Date.now(); undefined if not seen), terminal status. */
  perGateway: Map<string, { id: string; sentAt: number; startedAt: number | undefined; terminalAt: number | undefined; status: string | undefined; healthy: boolean | undefined; steps: Record<string, number> }>;
  durationMs: number;
}

export async function runRollout(p: RolloutPlan): Promise<RolloutOutcome> {
  const t0 = performance.now();
  const w = await connectWms(p.url, p.members);
  const sentIds: string[] = [];
  const commandedIds = new Set<string>();
  const allowedIds = new Set<string>();
  let from = 0;
  let halted = false;
  let haltedAtWave: number | undefined;
  let wavesSent = 0;
  const sentAt = new Map<string, { id: string; at: number }>();
  const bad = (id: string): boolean => w.terminals.get(id)?.has('failed') === true || w.health.get(id) === false;
  for (let wave = 0; wave < p.waves.length && !halted; wave++) {
    wavesSent++;
    const to = Math.min(p.ids.length, Math.max(from + 1, Math.round(p.waves[wave]! * p.ids.length)));
    const ids = p.ids.slice(from, to);
    const rolloutId = `ro-wave-${wave}`;
    const waveCmds = ids.map((gw) => ({ gw, id: `${rolloutId}-${gw}` }));
    for (const [i, c] of waveCmds.entries()) {
      commandedIds.add(c.gw);
      allowedIds.add(c.gw);
      sentIds.push(c.id);
      sentAt.set(c.gw, { id: c.id, at: Date.now() });
      w.send(c.gw, 'update', c.id, { url: p.bundleUrl ?? 'http://127.0.0.1:1/bundle.tar', rolloutId, ...p.params?.(c.gw, wave, i) });
    }
    // Wait for the wave: halt as soon as the threshold is passed with the minimum sample.
    const deadline = performance.now() + (p.slow && ids.some((id) => p.slow!.ids.has(id)) ? p.slow.waveTimeoutMs : p.waveTimeoutMs);
    const verdict = (): boolean => {
      const done = waveCmds.filter((c) => w.terminals.has(c.id));
      if (done.length >= p.minSample && done.filter((c) => bad(c.id)).length / done.length > p.abortAbove) {
        halted = true;
        haltedAtWave = wave;
      }
      return halted;
    };
    for (;;) {
      if (verdict()) break;
      if (waveCmds.every((c) => w.terminals.has(c.id)) || performance.now() > deadline) break;
      await sleep(20);
    }
    // Post-update health: the successes' reports before the next wave (a late unhealthy one can halt).
    const healthEnd = performance.now() + p.healthTimeoutMs;
    while (!halted && waveCmds.some((c) => w.terminals.get(c.id)?.has('successful') && !w.health.has(c.id)) && performance.now() < healthEnd) {
      if (verdict()) break;
      await sleep(20);
    }
    verdict();
    from = to;
    if (from >= p.ids.length) break;
  }
  // Let the halted wave's stragglers finish, so every command has its terminal status.
  const end = performance.now() + Math.max(p.waveTimeoutMs, p.slow?.waveTimeoutMs ?? 0);
  while (sentIds.some((id) => !w.terminals.has(id)) && performance.now() < end) await sleep(20);
  await sleep(500);
  const check = checkTerminals(w, sentIds);
  const out: RolloutOutcome = {
    halted,
    haltedAtWave,
    wavesSent,
    sent: sentIds.length,
    terminal: sentIds.filter((id) => w.terminals.has(id)).length,
    failed: sentIds.filter((id) => w.terminals.get(id)?.has('failed')).length,
    healthEvents: w.health.size,
    unhealthy: [...w.health.values()].filter((h) => !h).length,
    doubleTerminal: check.double,
    missingTerminal: check.missing,
    commandedIds,
    allowedIds,
    seenIds: new Set(w.rolloutSeen),
    perGateway: new Map(
      [...sentAt].map(([gw, { id, at }]) => [gw, { id, sentAt: at, startedAt: w.startedAt.get(id), terminalAt: w.terminalAt.get(id), status: [...(w.terminals.get(id) ?? [])][0], healthy: w.health.get(id), steps: Object.fromEntries(w.steps.get(id) ?? []) }]),
    ),
    durationMs: performance.now() - t0,
  };
  await w.close();
  return out;
}
