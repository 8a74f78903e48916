/**
 * The WMS link: one MQTT connection to the cloud broker (CONTRACT.md section 2).
 *
 * - A fresh mqtt.js client for every connection attempt, with mqtt.js's own reconnect off and
 *   our capped exponential backoff with jitter instead; the durable outbox, not mqtt.js's
 *   in-memory store, decides what is sent again, so nothing is replayed out of order.
 * - Persistent session (clean=false; MQTT 5 session expiry) so QoS 1 commands wait at the broker
 *   while the agent is away. A command's PUBACK is sent only once the router has committed what
 *   it led to (the router group-commits a turn's messages, so the PUBACKs of a batch go out
 *   together, in the order the PUBLISHes came, MQTT 5 section 4.6). One the store could not
 *   commit gets no PUBACK: the broker sends it again after the next connect, and the link
 *   reconnects once the store commits again (reconnectForRedelivery).
 * - Retained `~/status` on every connect; the Last Will is the same message with state offline.
 *   A graceful stop publishes offline itself, since a clean DISCONNECT suppresses the will.
 * - Broker failover (`mqtt.urls`, lib/broker-list.ts): a failed attempt moves on to the next
 *   broker with the same backoff; `stats().url` is the broker in use (or tried next). The first
 *   reconnect after a lost connection waits a random fraction of the initial backoff, so a fleet
 *   that lost a broker together does not come back together.
 * - TLS material is read at each attempt, so renewed certificates are picked up without restart.
 * - Liveness for the watchdog (liveness()) is about the reconnect loop, not the broker: a broker
 *   that refuses or cannot be reached while attempts keep coming is healthy; a loop that stopped
 *   (no client, no retry due) is dead; one that made no attempt for twice the longest gap the
 *   backoff and the connect timeout allow is hung. restart() is stop() and start(): the outbox
 *   keeps every message, and the retained status is published again on the next connect.
 */
import { performance } from 'node:perf_hooks';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { redactUrl, type Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import { Backoff } from '../lib/backoff.js';
import { BrokerList, firstReconnectDelay } from '../lib/broker-list.js';
import { tlsConnectOptions } from '../lib/mqtt-options.js';
import type { LoopMonitor } from '../lib/loops.js';
import type { AgentConfig } from '../core/config.js';
import type { Outbox } from './outbox.js';
import type { Topics } from './topics.js';
import type { AgentState, Component } from '../core/ports.js';

export type Connect = (url: string, opts: IClientOptions) => MqttClient;

export interface WmsLinkOptions {
  mqtt: AgentConfig['mqtt'];
  gatewayId: string;
  topics: Topics;
  version: string;
  slot: string;
  outbox: Outbox;
  logger: Logger;
  clock: Clock;
  loops?: LoopMonitor;
  /** A connection supervisor that has not ticked for this long counts as hung. */
  loopDeadlineMs?: number;
  /** `ack(true)`: what the command led to is committed, send its PUBACK; `ack(false)`: do not. */
  onCommand(op: string, payload: Buffer, ack: (committed: boolean) => void): void;
  connect?: Connect;
  /**
   * MQTT 5 message expiry (s) of the retained `~/res/{id}` statuses, so a broker forgets them
   * like the agent forgets the command (commands.resultExpirySec); 0 or undefined: none.
   */
  resultExpirySec?: number;
  /** Fault injection (lib/fault.ts faultOnce, `link-stall`): true makes a lost connection's retry never happen. */
  stallFault?: () => boolean;
}

export type Liveness = 'healthy' | 'hung' | 'dead';

export interface LinkStats {
  connected: boolean;
  /** The broker in use, or tried next while disconnected. */
  url: string;
  /** With `mqtt.urls`: every broker of the list, and the index of `url` in it. */
  urls?: string[];
  brokerIndex?: number;
  since: string | undefined;
  attempts: number;
  connects: number;
  lastError: string | undefined;
  state: AgentState;
  protocolVersion: 4 | 5;
  /** PINGREQ -> PINGRESP of the last keep-alive ping, ms; undefined until one was answered. */
  rttMs: number | undefined;
}

const LOOP = 'wms-link';
/** Commands handled in one turn of the event loop at most, and for how long (deferPubacks). */
const YIELD_EVERY = 128;
const YIELD_AFTER_MS = 20;
/** Passed to mqtt.js's handleMessage callback: it then sends no PUBACK (we send it, see deferPubacks). */
const DEFERRED = new Error('PUBACK deferred until the command is committed');

export class WmsLink implements Component {
  readonly name = 'wms-link';
  private client: MqttClient | undefined;
  private connected = false;
  private connectedSince: number | undefined;
  private retry: NodeJS.Timeout | undefined;
  /** A retry is due (its timer armed, or lost to the link-stall fault). */
  private retryDue = false;
  /** The reconnect loop last moved: started, made an attempt, or lost a connection. */
  private movedAt: number;
  private tick: NodeJS.Timeout | undefined;
  private stopped = true;
  private starts = 0;
  private attempts = 0;
  private connects = 0;
  private lastError: string | undefined;
  private rttMs: number | undefined;
  private state: Exclude<AgentState, 'offline'> = 'online';
  private stateSince: number;
  private readonly backoff: Backoff;
  private readonly brokers: BrokerList;
  /** MQTT 5 unless the broker refused it; then 3.1.1 for the rest of this process's life. */
  private protocol: 4 | 5;
  private readonly log: Logger;

  constructor(private readonly opts: WmsLinkOptions) {
    this.backoff = new Backoff(opts.mqtt.reconnect);
    this.brokers = new BrokerList(opts.mqtt.url, opts.mqtt.urls);
    this.log = opts.logger;
    this.stateSince = opts.clock.now();
    this.movedAt = opts.clock.now();
    this.protocol = opts.mqtt.protocolVersion;
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    // A restart keeps the state's `since`: the state did not change, the connection did.
    if (this.starts++ === 0) this.stateSince = this.opts.clock.now();
    this.movedAt = this.opts.clock.now();
    this.backoff.reset();
    this.opts.loops?.register(LOOP, this.opts.loopDeadlineMs ?? 30_000);
    this.tick = this.opts.clock.setInterval(() => this.opts.loops?.tick(LOOP), 1000);
    this.connectOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.opts.clock.clearTimeout(this.retry);
    this.retry = undefined;
    this.retryDue = false;
    this.opts.clock.clearInterval(this.tick);
    this.tick = undefined;
    this.opts.loops?.unregister(LOOP);
    const client = this.client;
    this.client = undefined;
    this.opts.outbox.detach();
    if (!client) return;
    if (this.connected) {
      await new Promise<void>((resolve) => {
        const t = this.opts.clock.setTimeout(resolve, 2000);
        client.publish(this.opts.topics.status, this.statusPayload('offline'), { qos: 1, retain: true }, () => {
          this.opts.clock.clearTimeout(t);
          resolve();
        });
      });
    }
    this.connected = false;
    this.connectedSince = undefined;
    // A clean end waits for mqtt.js's outgoing queue, which never empties on a dead or half-open
    // connection; after a short grace period the connection is dropped.
    await new Promise<void>((resolve) => {
      const t = this.opts.clock.setTimeout(() => client.end(true, {}, () => resolve()), 1000);
      client.end(false, {}, () => {
        this.opts.clock.clearTimeout(t);
        resolve();
      });
    });
  }

  /** The watchdog's restart: a fresh client and reconnect loop; nothing queued is lost (the outbox has it). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Twice the longest a working loop goes without an attempt: the longest backoff plus a timed-out connect. */
  hungAfterMs(): number {
    return 2 * (this.opts.mqtt.reconnect.maxMs + this.opts.mqtt.connectTimeoutMs);
  }

  /** Whether the link itself works (see the file's head); whether the broker does is not asked. */
  liveness(): Liveness {
    if (this.stopped || this.connected) return 'healthy';
    if (!this.client && !this.retryDue) return 'dead';
    return this.opts.clock.now() - this.movedAt > this.hungAfterMs() ? 'hung' : 'healthy';
  }

  setState(state: Exclude<AgentState, 'offline'>): void {
    if (state === this.state) return;
    this.state = state;
    this.stateSince = this.opts.clock.now();
    if (this.client && this.connected) {
      this.client.publish(this.opts.topics.status, this.statusPayload(state), { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err }, 'status publish not acknowledged');
      });
    }
  }

  /** QoS 0, dropped while disconnected (the contract's `~/health`). */
  publishVolatile(topic: string, payload: string): void {
    if (this.client && this.connected) this.client.publish(topic, payload, { qos: 0, retain: false });
  }

  stats(): LinkStats {
    return {
      connected: this.connected,
      url: redactUrl(this.brokers.current()),
      ...(this.brokers.urls.length > 1 ? { urls: this.brokers.urls.map(redactUrl), brokerIndex: this.brokers.index() } : {}),
      since: this.connectedSince === undefined ? undefined : new Date(this.connectedSince).toISOString(),
      attempts: this.attempts,
      connects: this.connects,
      lastError: this.lastError,
      state: this.state,
      protocolVersion: this.protocol,
      rttMs: this.rttMs,
    };
  }

  isConnected(): boolean {
    return this.connected;
  }

  private statusPayload(state: AgentState): string {
    const ts = new Date(this.opts.clock.now()).toISOString();
    const since = state === 'offline' ? ts : new Date(this.stateSince).toISOString();
    return JSON.stringify({ state, version: this.opts.version, slot: this.opts.slot, since, ts });
  }

  private clientOptions(): IClientOptions {
    const m = this.opts.mqtt;
    const o: IClientOptions = {
      clientId: m.clientId ?? `edge-agent-${this.opts.gatewayId}`,
      protocolVersion: this.protocol,
      clean: false,
      keepalive: m.keepaliveSec,
      connectTimeout: m.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      // No 6 MB table of 65,536 two-byte Buffers in mqtt-packet (plc-bridge/mqtt-link.ts says more).
      writeCache: false,
      will: { topic: this.opts.topics.status, payload: Buffer.from(this.statusPayload('offline')), qos: 1, retain: true },
      ...tlsConnectOptions(m.tls),
    };
    if (this.protocol === 5) o.properties = { sessionExpiryInterval: m.sessionExpirySec };
    if (m.username !== undefined) o.username = m.username;
    if (m.password !== undefined) o.password = m.password;
    return o;
  }

  private connectOnce(): void {
    if (this.stopped) return;
    this.retry = undefined;
    this.retryDue = false;
    this.movedAt = this.opts.clock.now();
    this.attempts++;
    let client: MqttClient;
    try {
      client = (this.opts.connect ?? mqtt.connect)(this.brokers.current(), this.clientOptions());
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error({ err }, 'cannot start an MQTT connection');
      this.brokers.failed();
      return this.scheduleRetry(false);
    }
    this.client = client;
    client.on('connect', (connack) => {
      if (this.client !== client) return;
      this.connected = true;
      this.connects++;
      this.connectedSince = this.opts.clock.now();
      this.backoff.reset();
      this.lastError = undefined;
      this.log.info({ url: redactUrl(this.brokers.current()), sessionPresent: connack.sessionPresent }, 'connected to the WMS broker');
      client.publish(this.opts.topics.status, this.statusPayload(this.state), { qos: 1, retain: true });
      client.subscribe(this.opts.topics.cmdFilter, { qos: 1 }, (err, granted) => {
        if (err) this.log.error({ err }, 'subscribe to commands failed');
        else if (granted?.some((g) => g.qos > 2)) this.log.error({ granted }, 'broker refused the command subscription (ACL?)');
      });
      const expiry = this.protocol === 5 && (this.opts.resultExpirySec ?? 0) > 0 ? { messageExpiryInterval: this.opts.resultExpirySec! } : undefined;
      const resPrefix = `${this.opts.topics.root}/res/`;
      this.opts.outbox.attach({
        publish: (topic, payload, popts, cb) =>
          // MQTT 5 section 3.3.2.3.3: the broker drops the retained message when the interval has passed.
          client.publish(topic, payload, expiry && payload.length > 0 && topic.startsWith(resPrefix) ? { ...popts, properties: expiry } : popts, (err) => cb(err ?? undefined)),
      });
    });
    // Round trip from the keep-alive ping mqtt.js sends when the link is otherwise idle (health metric).
    let pingAt: number | undefined;
    client.on('packetsend', (p) => {
      if (p.cmd === 'pingreq') pingAt = this.opts.clock.now();
    });
    client.on('packetreceive', (p) => {
      if (p.cmd !== 'pingresp' || pingAt === undefined || this.client !== client) return;
      this.rttMs = this.opts.clock.now() - pingAt;
      pingAt = undefined;
    });
    this.deferPubacks(client);
    client.on('error', (err) => {
      this.lastError = err.message;
      // CONNACK "unacceptable protocol version": 1 in MQTT 3.1.1, 0x84 in MQTT 5 (section 3.2.2.2).
      const rc = (err as { code?: unknown }).code;
      if (this.protocol === 5 && !this.connected && (rc === 1 || rc === 0x84)) {
        this.protocol = 4;
        this.log.warn('the broker refused MQTT 5; using MQTT 3.1.1');
      }
      this.log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'MQTT connection error');
    });
    client.on('close', () => {
      if (this.client !== client) return;
      const wasConnected = this.connected;
      this.connected = false;
      this.connectedSince = undefined;
      this.client = undefined;
      this.movedAt = this.opts.clock.now();
      this.opts.outbox.detach();
      client.end(true);
      if (wasConnected) this.log.warn('disconnected from the WMS broker');
      // Never connected: this broker is unreachable (or refuses us); the next one is tried.
      else this.brokers.failed();
      this.scheduleRetry(wasConnected);
    });
  }

  /**
   * Commands reach the router from mqtt.js's handleMessage hook, which runs before the PUBACK
   * (mqtt.js 5, handlers/publish.js): calling its callback with an error sends no PUBACK and
   * goes on with the next packet, so the PUBACK is ours to send once the router says the
   * command is committed. PUBACKs go out in the order the PUBLISHes came: one waits for those
   * before it. A message not committed gets none (the broker sends it again after a reconnect).
   */
  private deferPubacks(client: MqttClient): void {
    const order: { messageId: number; state: 'pending' | 'ack' | 'skip' }[] = [];
    let handled = 0;
    let sliceStart = performance.now();
    const release = (): void => {
      while (order.length > 0 && order[0]!.state !== 'pending') {
        const head = order.shift()!;
        if (head.state === 'ack' && this.client === client && this.connected) {
          // The same call mqtt.js makes for its own PUBACK.
          (client as unknown as { _sendPacket(p: { cmd: 'puback'; messageId: number; reasonCode: number }): void })._sendPacket({ cmd: 'puback', messageId: head.messageId, reasonCode: 0 });
        }
      }
    };
    client.handleMessage = (packet: IPublishPacket, callback: (err?: Error) => void): void => {
      const topic = packet.topic.toString();
      if (!topic.startsWith(this.opts.topics.cmdPrefix)) return callback();
      const op = topic.slice(this.opts.topics.cmdPrefix.length);
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      if (packet.qos !== 1 || packet.messageId === undefined) {
        this.opts.onCommand(op, payload, () => undefined);
        return callback();
      }
      const slot = { messageId: packet.messageId, state: 'pending' as 'pending' | 'ack' | 'skip' };
      order.push(slot);
      this.opts.onCommand(op, payload, (committed) => {
        slot.state = committed ? 'ack' : 'skip';
        release();
      });
      // No PUBACK from mqtt.js (see above). mqtt.js handles the packets it has parsed one after
      // the other on process.nextTick, never yielding to the event loop: a broker that sends
      // thousands at once (no inflight window) would hold the loop for seconds. So after a
      // slice of messages the next one waits for the next turn (the intake commit runs first).
      if (++handled < YIELD_EVERY && performance.now() - sliceStart < YIELD_AFTER_MS) return callback(DEFERRED);
      handled = 0;
      setImmediate(() => {
        sliceStart = performance.now();
        callback(DEFERRED);
      });
    };
  }

  /**
   * The store commits again after commands went unacknowledged: a new connection makes the
   * broker send them again (MQTT delivers unacknowledged QoS 1 messages again only on a new
   * connection of the session, MQTT 5 section 4.4).
   */
  reconnectForRedelivery(): void {
    if (this.stopped || !this.client) return;
    this.log.info('reconnecting so that the broker sends the unacknowledged commands again');
    void this.restart().catch((err: unknown) => this.log.error({ err }, 'reconnect for redelivery failed'));
  }

  private scheduleRetry(lostConnection: boolean): void {
    if (this.stopped) return;
    this.retryDue = true;
    if (lostConnection && this.opts.stallFault?.()) {
      this.log.warn('fault injection (link-stall): the reconnect is never made');
      return;
    }
    const delay = lostConnection ? firstReconnectDelay(this.opts.mqtt.reconnect.initialMs) : this.backoff.next();
    this.log.info({ delayMs: delay, attempt: this.backoff.attempts, url: redactUrl(this.brokers.current()) }, 'reconnecting to the WMS broker');
    this.retry = this.opts.clock.setTimeout(() => this.connectOnce(), delay);
  }
}
