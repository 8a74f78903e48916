/**
 * A tiny WMS: one mqtt.js client that subscribes `{prefix}/{gw}/#`, prints every message in one
 * readable line (the PLC bridge's data, several a second, summed up once a second: plc-view.ts),
 * sends commands (CONTRACT.md section 2) and PLC writes (section 3), and waits for statuses with
 * a deadline. Waiting is event-driven: a waiter is checked against each message as it arrives,
 * never polled.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { dataTopic, formatValue, PlcView } from './plc-view.js';

export const TERMINAL = ['successful', 'failed', 'cancelled', 'rejected'] as const;

export interface Received {
  /** Arrival order, from 1; `mark()` returns the last one. */
  seq: number;
  /** The topic below the root `~`, e.g. `res/d-1`, `status`, `events`. */
  sub: string;
  payload: Record<string, unknown>;
  retain: boolean;
  /** The same bytes arrived on the same topic before: a re-send, not a new status. */
  again: boolean;
}

export interface StatusMessage {
  id: string;
  op: string;
  status: string;
  ts: string;
  progress?: { step: string; percent?: number };
  reason?: { code: string; message: string };
  result?: unknown;
}

interface Waiter {
  pred(m: Received): boolean;
  resolve(m: Received): void;
}

export interface WmsSimOptions {
  url: string;
  gatewayId: string;
  prefix?: string;
  print: (line: string) => void;
}

export class WmsSim {
  readonly received: Received[] = [];
  private client: MqttClient | undefined;
  private readonly waiters = new Set<Waiter>();
  private readonly seen = new Set<string>();
  private readonly root: string;
  private readonly plc: PlcView;

  constructor(private readonly opts: WmsSimOptions) {
    this.root = `${opts.prefix ?? 'edge'}/${opts.gatewayId}`;
    this.plc = new PlcView({ print: opts.print });
  }

  async start(): Promise<void> {
    const client = await mqtt.connectAsync(this.opts.url, { clientId: 'demo-wms', protocolVersion: 4, reconnectPeriod: 200, connectTimeout: 5000 });
    client.on('message', (topic, buf, packet) => this.onMessage(topic, buf, packet.retain));
    await client.subscribeAsync(`${this.root}/#`, { qos: 1 });
    this.client = client;
    this.plc.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.waiters.clear();
    this.plc.stop();
    if (client) await client.endAsync();
  }

  /** The seq of the last message so far: wait for what comes after it. */
  mark(): number {
    return this.received.length;
  }

  /** Publishes to `~/cmd/{op}`; a string body is sent as is (to show malformed input). */
  async send(op: string, body: string | Record<string, unknown>): Promise<void> {
    if (!this.client) throw new Error('the WMS simulator is not started');
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    this.opts.print(`WMS -> cmd/${op.padEnd(11)} ${text}`);
    await this.client.publishAsync(`${this.root}/cmd/${op}`, text, { qos: 1 });
  }

  /** Publishes a write to `~/plc/{device}/set` (CONTRACT.md section 3); answered on `~/res/{id}`. */
  async set(device: string, body: { id: string; tags: Record<string, unknown>; expiresAt?: string }): Promise<void> {
    if (!this.client) throw new Error('the WMS simulator is not started');
    const text = JSON.stringify(body);
    this.opts.print(`WMS -> plc/${device}/set ${text}`);
    await this.client.publishAsync(`${this.root}/plc/${device}/set`, text, { qos: 1 });
  }

  /** The first message after `after` that matches; rejects naming `what` at the deadline. */
  waitFor(what: string, pred: (m: Received) => boolean, timeoutMs: number, after: number): Promise<Received> {
    const seen = this.received.find((m) => m.seq > after && pred(m));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred: (m) => m.seq > after && pred(m),
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no ${what} arrived within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** The terminal status of command `id` published after `after`. */
  async terminal(id: string, timeoutMs: number, after: number): Promise<StatusMessage> {
    const isTerminal = (m: Received): boolean => m.sub === `res/${id}` && (TERMINAL as readonly unknown[]).includes(m.payload.status);
    const m = await this.waitFor(`terminal status on res/${id}`, isTerminal, timeoutMs, after);
    return m.payload as unknown as StatusMessage;
  }

  /** How many `~/res/+` messages arrived, how many were terminal, how many were re-sends. */
  statusCounts(): { all: number; terminal: number; again: number } {
    const res = this.received.filter((m) => m.sub.startsWith('res/'));
    const terminal = res.filter((m) => (TERMINAL as readonly unknown[]).includes(m.payload.status));
    return { all: res.length, terminal: terminal.length, again: res.filter((m) => m.again).length };
  }

  private onMessage(topic: string, buf: Buffer, retain: boolean): void {
    const sub = topic.startsWith(`${this.root}/`) ? topic.slice(this.root.length + 1) : topic;
    if (sub.startsWith('cmd/') || sub.endsWith('/set')) return; // our own commands and writes, echoed by the wildcard subscription
    let payload: Record<string, unknown>;
    try {
      const doc = JSON.parse(buf.toString('utf8')) as unknown;
      payload = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : { value: doc };
    } catch {
      payload = { text: buf.toString('utf8') };
    }
    const key = `${sub}\n${buf.toString('base64')}`;
    const m: Received = { seq: this.received.length + 1, sub, payload, retain, again: this.seen.has(key) };
    this.seen.add(key);
    this.received.push(m);
    if (dataTopic(sub)) this.plc.add(m);
    else this.opts.print(describe(m));
    for (const w of [...this.waiters]) {
      if (w.pred(m)) {
        this.waiters.delete(w);
        w.resolve(m);
      }
    }
  }
}

/** One line per message: `WMS <- res/d-1  diagnostics  successful  {version: 1.0.0, ...}`. */
export function describe(m: Received): string {
  const p = m.payload;
  const s = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '-');
  const head = `WMS <- ${m.sub.padEnd(12)}`;
  if (m.sub.startsWith('res/')) {
    const st = p as unknown as StatusMessage;
    let detail = '';
    const readBack = (st.result as { readBack?: unknown } | undefined)?.readBack;
    if (st.reason) detail = `${st.reason.code}: ${st.reason.message}`;
    else if (readBack !== null && typeof readBack === 'object') detail = `read back ${Object.entries(readBack).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ')}`;
    else if (st.result !== undefined) detail = brief(st.result);
    else if (st.progress) detail = `step ${st.progress.step}${st.progress.percent === undefined ? '' : ` ${st.progress.percent}%`}`;
    return `${head} ${s(st.op).padEnd(11)} ${s(st.status).padEnd(10)} ${detail}`.trimEnd() + (m.again ? '  (sent again)' : '');
  }
  if (m.sub === 'status') return `${head} ${s(p.state).padEnd(11)} v${s(p.version)} slot ${s(p.slot)}${m.retain ? '  (retained)' : ''}`;
  if (m.sub === 'plc/status') {
    const devices = p.devices !== null && typeof p.devices === 'object' ? Object.entries(p.devices as Record<string, { link?: unknown }>).map(([n, d]) => `${n} ${s(d.link)}`) : [];
    return `${head} ${s(p.state).padEnd(11)} v${s(p.version)} session ${s(p.session)} ${devices.join(', ')}${m.retain ? '  (retained)' : ''}`;
  }
  if (m.sub === 'events') return `${head} ${`${s(p.type)}/${s(p.severity)}`.padEnd(11)} ${s(p.code)}: ${s(p.message)}`;
  return `${head} ${brief(p)}`;
}

/** `{a: 1, b: {…}, c: [3]}`, cut at `max` characters. */
export function brief(v: unknown, max = 110): string {
  const one = (x: unknown): string => {
    if (x === null || typeof x !== 'object') return typeof x === 'string' ? x : String(x);
    return Array.isArray(x) ? `[${x.length}]` : '{…}';
  };
  const text =
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? `{${Object.entries(v)
          .filter(([, x]) => x !== undefined)
          .map(([k, x]) => `${k}: ${one(x)}`)
          .join(', ')}}`
      : one(v);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
