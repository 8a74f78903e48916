/**
 * PLC values for the console, from a local MQTT subscription to the bridge's own data topics
 * (CONTRACT.md section 3: `~/plc/{device}/{group}` and the retained `~/plc/status`).
 *
 * Why a subscription and not the bridge's control socket: the bridge already publishes every
 * value with its quality and its own timestamp, by exception, at its poll rate; a subscriber costs
 * the bridge nothing (the broker fans out), whereas polling the control socket would put the
 * console on the socket that carries the bridge's handover and health checks. The retained status
 * and the bridge's Last Will tell the console when the bridge itself is gone: every value then
 * shows `bad` (reason `bridge-offline`) instead of a last value that looks alive.
 *
 * Everything in these messages is field data: names and values are kept as strings/JSON and the
 * pages render them as text only.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../lib/log.js';

export interface TagInfo {
  device: string;
  group: string;
  tag: string;
  writable: boolean;
  type: string;
}

/** One value as the bridge publishes it (CONTRACT.md section 3), normalized: `q` and `ts` strings. */
export interface Val {
  v: unknown;
  q: string;
  ts: string;
  reason?: string;
}

/** What goes on the stream: one group's changed values (the bridge's own shape), or the bridge's status. */
export type PlcChange = { device: string; group: string; values: Record<string, Val> } | { bridge: string; devices: Record<string, unknown> };

export interface PlcState {
  bridge: string;
  devices: Record<string, unknown>;
  tags: TagInfo[];
  /** The latest value of every tag, by device and group. */
  groups: { device: string; group: string; values: Record<string, Val> }[];
}

export interface PlcFeedOptions {
  url: string;
  mqtt: IClientOptions;
  /** `{prefix}/{gatewayId}` of the bridge. */
  root: string;
  /** The configured tags (writable or not), from the bridge's file. */
  tags: TagInfo[];
  logger: Logger;
  onChange(change: PlcChange): void;
}

/** A kept value: updated in place; `q` and `reason` are ours when they can be (no new string kept a second). */
interface Kept {
  v: unknown;
  q: string;
  tsMs: number;
  reason: string | undefined;
}

const QUALITIES = new Map([
  ['good', 'good'],
  ['stale', 'stale'],
  ['bad', 'bad'],
]);

function keep(k: Kept, v: Val, tsMs: number): Kept {
  k.v = v.v;
  k.q = QUALITIES.get(v.q) ?? v.q;
  k.tsMs = tsMs;
  k.reason = v.reason === undefined ? undefined : v.reason === 'bridge-offline' ? 'bridge-offline' : v.reason;
  return k;
}

function toVal(k: Kept): Val {
  const v: Val = { v: k.v, q: k.q, ts: new Date(k.tsMs).toISOString() };
  if (k.reason !== undefined) v.reason = k.reason;
  return v;
}

interface DataMsg {
  values?: Record<string, unknown>;
}

/**
 * Invariants: each message's values object (parsed once, normalized in place) is forwarded as
 * is and not kept; what is kept is one object per tag made once and updated in place, holding
 * the time as a number and the quality as one of our own strings, so 2,000 values a second
 * allocate nothing that lives long enough to age into the old heap. A value older than the one
 * kept (data the bridge replays after a broker outage) does not replace it.
 */
export class PlcFeed {
  readonly name = 'console-plc';
  private client: MqttClient | undefined;
  /** `{device}\u0000{group}` -> tag -> its latest value. */
  private readonly groups = new Map<string, { device: string; group: string; values: Map<string, Kept> }>();
  private bridge = 'unknown';
  private devices: Record<string, unknown> = {};

  constructor(private readonly o: PlcFeedOptions) {}

  async start(): Promise<void> {
    const c = mqtt.connect(this.o.url, { ...this.o.mqtt, clientId: `console-${process.pid}-${Date.now().toString(36)}`, clean: true, reconnectPeriod: 1000 });
    this.client = c;
    c.on('connect', () => {
      c.subscribe([`${this.o.root}/plc/status`, `${this.o.root}/plc/+/+`], { qos: 0 }, (err) => {
        if (err) this.o.logger.warn({ err }, 'console: subscribing to the PLC bridge topics failed');
      });
    });
    c.on('error', (err) => this.o.logger.debug({ err }, 'console: PLC subscription error'));
    c.on('message', (topic, payload) => this.message(topic, payload));
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await c.endAsync(true);
  }

  /** The bridge's state without the values: what every tab's stream snapshot carries. */
  brief(): { bridge: string; devices: Record<string, unknown> } {
    return { bridge: this.bridge, devices: this.devices };
  }

  snapshot(): PlcState {
    return {
      bridge: this.bridge,
      devices: this.devices,
      tags: this.o.tags,
      groups: [...this.groups.values()].map((g) => ({ device: g.device, group: g.group, values: Object.fromEntries([...g.values].map(([tag, k]) => [tag, toVal(k)])) })),
    };
  }

  private message(topic: string, payload: Buffer): void {
    const rest = topic.slice(this.o.root.length + 5).split('/');
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    if (body === null || typeof body !== 'object') return;
    if (rest.length === 1 && rest[0] === 'status') {
      const s = body as { state?: unknown; devices?: unknown };
      this.bridge = typeof s.state === 'string' ? s.state : 'unknown';
      this.devices = s.devices !== null && typeof s.devices === 'object' ? (s.devices as Record<string, unknown>) : {};
      if (this.bridge === 'offline') {
        for (const g of this.groups.values()) {
          const changed: Record<string, Val> = {};
          for (const [tag, v] of g.values) {
            if (v.q === 'bad') continue;
            v.q = 'bad';
            v.reason = 'bridge-offline';
            changed[tag] = toVal(v);
          }
          if (Object.keys(changed).length > 0) this.o.onChange({ device: g.device, group: g.group, values: changed });
        }
      }
      this.o.onChange({ bridge: this.bridge, devices: this.devices });
      return;
    }
    const [device, group] = rest;
    if (rest.length !== 2 || device === undefined || group === undefined || group === 'set') return;
    const vals = (body as DataMsg).values;
    if (!vals || typeof vals !== 'object' || Array.isArray(vals)) return;
    const k = `${device}\u0000${group}`;
    let g = this.groups.get(k);
    if (!g) this.groups.set(k, (g = { device, group, values: new Map() }));
    // The bridge's own object goes on the stream unless some of its entries are left out.
    let left: Set<string> | undefined;
    let n = 0;
    for (const tag of Object.keys(vals)) {
      const x = vals[tag] as Record<string, unknown> | null;
      if (x === null || typeof x !== 'object' || Array.isArray(x)) {
        (left ??= new Set()).add(tag);
        continue;
      }
      // Normalized in place: the object is kept and forwarded as the bridge sent it.
      if (typeof x.q !== 'string') x.q = 'bad';
      if (typeof x.ts !== 'string') x.ts = new Date().toISOString();
      if (x.v === undefined) x.v = null;
      if (x.reason !== undefined && typeof x.reason !== 'string') delete x.reason;
      const v = x as unknown as Val;
      const tsMs = Date.parse(v.ts);
      const at = Number.isFinite(tsMs) ? tsMs : Date.now();
      const old = g.values.get(tag);
      if (old && old.tsMs > at) {
        (left ??= new Set()).add(tag);
        continue;
      }
      if (old) keep(old, v, at);
      else g.values.set(tag, keep({ v: null, q: 'bad', tsMs: 0, reason: undefined }, v, at));
      n++;
    }
    if (n === 0) return;
    const values = left ? Object.fromEntries(Object.entries(vals).filter(([t]) => !left.has(t))) : vals;
    this.o.onChange({ device, group, values: values as Record<string, Val> });
  }
}
