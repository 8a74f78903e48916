/**
 * The PLC bench's side of the broker (plc-bench.ts): one subscriber that records every data
 * message of the bridge and of the reference (receive time, cycle time, values in it), the
 * terminal answers to writes, and broker round trips of plain probe messages; and one publisher
 * for the probes and the writes. Times are epoch ms with sub-ms precision from the same clock as
 * the bridge's `ts` (same machine).
 *
 * Invariant: stop() ends both clients and every probe timer; a write that gets no terminal
 * answer within its deadline settles as 'timeout', it never hangs the bench.
 */
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import type { DataRec } from './plc-stats.js';

const TERMINAL = new Set(['successful', 'failed', 'rejected', 'cancelled']);

export const hrNow = (): number => performance.timeOrigin + performance.now();

export interface PlcTopics {
  /** Prefix of the bridge's data topics, `edge/{gw}/plc/`; only group `data` is counted. */
  bridgeData: string;
  /** `edge/{gw}/res/` */
  bridgeRes: string;
  /** The reference's root (plc-child.ts --topic). */
  ref: string;
}

export interface WriteOutcome {
  ms: number;
  status: string;
}

async function connect(url: string, protocolVersion: 4 | 5, clientId: string): Promise<MqttClient> {
  const c = mqtt.connect(url, { protocolVersion, clientId, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

export class PlcRecorder {
  recs: DataRec[] = [];
  /** Bytes of the latest bridge data message: the probes' size. */
  sampleBytes = 0;
  private sub: MqttClient | undefined;
  private pub: MqttClient | undefined;
  private readonly waiters = new Map<string, (status: string, at: number) => void>();
  private probe: { timer: NodeJS.Timeout; lat: number[] } | undefined;
  private readonly probeTopic = `bench-probe/${process.pid}`;

  constructor(private readonly opts: { url: string; protocolVersion: 4 | 5; topics: PlcTopics }) {}

  async start(): Promise<void> {
    const t = this.opts.topics;
    this.sub = await connect(this.opts.url, this.opts.protocolVersion, `bench-plc-sub-${process.pid}`);
    this.pub = await connect(this.opts.url, this.opts.protocolVersion, `bench-plc-pub-${process.pid}`);
    this.sub.on('message', (topic, payload) => this.onMessage(topic, payload));
    await this.sub.subscribeAsync([`${t.bridgeData}+/data`, `${t.bridgeRes}+`, `${t.ref}/data/+`, `${t.ref}/res/+`, this.probeTopic], { qos: 1 });
  }

  async stop(): Promise<void> {
    if (this.probe) clearInterval(this.probe.timer);
    this.probe = undefined;
    for (const w of this.waiters.values()) w('stopped', hrNow());
    await Promise.all([this.sub?.endAsync(true), this.pub?.endAsync(true)]);
  }

  /** Forgets what was recorded (between runs, so one long run does not grow the next's work). */
  clear(): void {
    this.recs = [];
  }

  /** Data records whose topic starts with `prefix`. */
  of(prefix: string): DataRec[] {
    return this.recs.filter((r) => r.topic.startsWith(prefix));
  }

  /** Publishes a probe of `bytes` every `everyMs` until stopProbes(). */
  startProbes(bytes: number, everyMs = 100): void {
    const pad = 'x'.repeat(Math.max(0, bytes - 40));
    const lat: number[] = [];
    const timer = setInterval(() => this.pub?.publish(this.probeTopic, JSON.stringify({ sent: hrNow(), pad }), { qos: 1 }), everyMs);
    this.probe = { timer, lat };
  }

  /** Broker round trips (publish -> this subscriber) since startProbes(), ms. */
  stopProbes(): number[] {
    const p = this.probe;
    this.probe = undefined;
    if (!p) return [];
    clearInterval(p.timer);
    return p.lat;
  }

  /** Publishes a write and resolves with the time until its terminal answer on `{res}{id}`. */
  async write(topic: string, id: string, body: Record<string, unknown>, timeoutMs = 10_000): Promise<WriteOutcome> {
    const pub = this.pub;
    if (!pub) throw new Error('recorder not started');
    const t0 = hrNow();
    const done = new Promise<WriteOutcome>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve({ ms: hrNow() - t0, status: 'timeout' });
      }, timeoutMs);
      this.waiters.set(id, (status, at) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve({ ms: at - t0, status });
      });
    });
    await pub.publishAsync(topic, JSON.stringify(body), { qos: 1 });
    return done;
  }

  private onMessage(topic: string, payload: Buffer): void {
    const at = hrNow();
    const t = this.opts.topics;
    if (topic === this.probeTopic) {
      if (this.probe) this.probe.lat.push(at - (JSON.parse(payload.toString('utf8')) as { sent: number }).sent);
      return;
    }
    const body = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    if (topic.startsWith(t.bridgeRes) || topic.startsWith(`${t.ref}/res/`)) {
      const id = typeof body.id === 'string' ? body.id : '';
      if (typeof body.status === 'string' && TERMINAL.has(body.status)) this.waiters.get(id)?.(body.status, at);
      return;
    }
    const tick = typeof body.ts === 'string' ? Date.parse(body.ts) : NaN;
    const seq = typeof body.seq === 'number' ? body.seq : NaN;
    let n: number;
    if (topic.startsWith(t.bridgeData)) {
      n = Object.keys((body.values as object | undefined) ?? {}).length;
      this.sampleBytes = payload.length;
    } else {
      n = (body.regs as number[][] | undefined)?.reduce((sum, r) => sum + r.length, 0) ?? 0;
    }
    this.recs.push({ topic, seq, tick, n, at, historical: body.historical === true });
  }
}
