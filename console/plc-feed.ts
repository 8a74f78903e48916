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

export interface TagValue {
  device: string;
  group: string;
  tag: string;
  v: unknown;
  q: string;
  ts: string;
  reason?: string;
}

export interface PlcState {
  bridge: string;
  devices: Record<string, unknown>;
  tags: TagInfo[];
  values: TagValue[];
}

export interface PlcFeedOptions {
  url: string;
  mqtt: IClientOptions;
  /** `{prefix}/{gatewayId}` of the bridge. */
  root: string;
  /** The configured tags (writable or not), from the bridge's file. */
  tags: TagInfo[];
  logger: Logger;
  onChange(values: TagValue[], status?: { bridge: string; devices: Record<string, unknown> }): void;
}

interface DataMsg {
  values?: Record<string, { v?: unknown; q?: unknown; ts?: unknown; reason?: unknown }>;
}

export class PlcFeed {
  readonly name = 'console-plc';
  private client: MqttClient | undefined;
  private readonly values = new Map<string, TagValue>();
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

  snapshot(): PlcState {
    return { bridge: this.bridge, devices: this.devices, tags: this.o.tags, values: [...this.values.values()] };
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
      const changed: TagValue[] = [];
      if (this.bridge === 'offline') {
        for (const v of this.values.values()) {
          if (v.q === 'bad') continue;
          v.q = 'bad';
          v.reason = 'bridge-offline';
          changed.push(v);
        }
      }
      this.o.onChange(changed, { bridge: this.bridge, devices: this.devices });
      return;
    }
    const [device, group] = rest;
    if (rest.length !== 2 || device === undefined || group === undefined || device === 'set') return;
    const vals = (body as DataMsg).values;
    if (!vals || typeof vals !== 'object') return;
    const changed: TagValue[] = [];
    for (const [tag, x] of Object.entries(vals)) {
      if (x === null || typeof x !== 'object') continue;
      const tv: TagValue = { device, group, tag, v: x.v ?? null, q: typeof x.q === 'string' ? x.q : 'bad', ts: typeof x.ts === 'string' ? x.ts : new Date().toISOString() };
      if (typeof x.reason === 'string') tv.reason = x.reason;
      this.values.set(`${device}\u0000${tag}`, tv);
      changed.push(tv);
    }
    if (changed.length > 0) this.o.onChange(changed);
  }
}
