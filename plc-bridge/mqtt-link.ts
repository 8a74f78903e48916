/**
 * The bridge's own MQTT connection (CONTRACT.md section 3): `~/plc/status` with its Last Will,
 * live data, replay of the store with `historical: true`, and the `~/plc/+/set` subscription.
 *
 * - A fresh mqtt.js client per attempt, mqtt.js's reconnect off, our capped backoff with jitter;
 *   MQTT 5, falling back to 3.1.1 for the rest of the process when the broker refuses 5.
 * - Broker failover (`mqtt.urls`, lib/broker-list.ts, as the agent's link): a failed attempt
 *   moves on to the next broker with the same backoff; the first reconnect after a lost
 *   connection waits a random fraction of the initial backoff. stats().broker is the one in use.
 * - Clean sessions: each instance has its own client id (two run side by side during a
 *   handover), so a persistent session would only leave orphans at the broker. A `set` sent
 *   while the bridge is away is therefore not delivered; the WMS sees no answer and resends.
 * - Last Will = the retained status with state `offline` and no device states (willPayload: it is
 *   fixed at CONNECT, so what it said of the devices would be out of date when it is published).
 *   A clean DISCONNECT suppresses the will, so a graceful stop publishes `offline` itself, with
 *   the device states it knows then.
 * - `announce` (the active instance): birth, Last Will, status and the replay of the store. A
 *   standby in a handover connects without them, so neither its birth nor its death changes
 *   `~/plc/status`, and it leaves the shared store to the active instance. A will is fixed at
 *   CONNECT (MQTT 3.1.3.2), so setAnnounce() drains and reconnects; data published meanwhile goes
 *   through the store (historical), none is lost.
 *
 * INVARIANTS
 * - A QoS 1 message (data at qos 1, results) is either acknowledged by the broker or in the
 *   store: live ones are tracked until their PUBACK and moved to the store when the connection
 *   goes first. A PUBACK may be lost with the connection, so the WMS may see a message twice
 *   (once live, once historical), never zero times.
 * - QoS 0 data while connected is fire-and-forget: what the socket had not sent when the
 *   connection drops is lost. While disconnected it goes to the store like QoS 1 data.
 * - Replay of the store (replay.ts, with its own invariants) runs only on an announcing
 *   connection that is not being stopped or swapped.
 * - Both in-flight sets are bounded (LIVE_INFLIGHT_MAX/_BYTES divert live data to the store; replay
 *   has its own bound).
 * - A write id's retained ~/res/{id} ends on its terminal answer: a progress answer (`accepted`,
 *   `executing`) that finds the live window full is dropped, not stored, since a stored one would
 *   be replayed after the terminal answer sent live. While disconnected every answer is stored,
 *   and replay keeps their order.
 * - Callbacks of an earlier connection (generation) change nothing.
 * - Sets are taken off the socket into an inbox and handed to onSet in slices of at most
 *   SET_SLICE_MS per turn of the event loop and SETS_PER_SEC per second, so a flood of sets
 *   never holds the pollers' timers back nor takes more than a share of the CPU; past SET_INBOX_HIGH waiting sets mqtt.js is told to wait (handleMessage's callback,
 *   which also withholds the PUBACK), which stops reading the socket: the flood waits in the
 *   broker and the kernel, not in the bridge's memory. stop() hands what the inbox holds to onSet.
 */
import { performance } from 'node:perf_hooks';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { redactUrl, type Logger } from '../lib/log.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { Backoff } from '../lib/backoff.js';
import { BrokerList, firstReconnectDelay } from '../lib/broker-list.js';
import { tlsConnectOptions } from '../lib/mqtt-options.js';
import type { BridgeConfig } from './config.js';
import { isRefusal, Replay } from './replay.js';
import type { ForwardStore, Stored } from './store.js';
import type { BridgeTopics } from './topics.js';

export { bridgeTopics, type BridgeTopics } from './topics.js';

/** The `mqtt` section of the bridge config. */
export type BridgeMqttConfig = BridgeConfig['mqtt'];

export type Connect = (url: string, opts: IClientOptions) => MqttClient;

export interface BridgeLinkOptions {
  mqtt: BridgeMqttConfig;
  topics: BridgeTopics;
  clientId: string;
  store: ForwardStore;
  /** The caller's child logger ({component: 'plc-mqtt'}). */
  logger: Logger;
  clock?: Clock;
  replayPerSec: number;
  /** The retained ~/plc/status body (without ts), asked for at each connect and each publishStatus(). */
  status: () => Record<string, unknown>;
  /** A message on ~/plc/{device}/set; only delivered while setsEnabled. */
  onSet: (device: string, payload: Buffer) => void;
  /** Birth, Last Will, status and replay (default true); false for a standby. See setAnnounce(). */
  announce?: boolean;
  connect?: Connect;
}

export interface BridgeLinkStats {
  connected: boolean;
  /** Connections made since start (a reconnect counts; with the first reconnect's jitter it can be quicker than a poll). */
  connects: number;
  /** The broker in use, or tried next while disconnected (redacted). */
  broker: string;
  /** Live messages the broker acknowledged (QoS 1) or that were handed to the socket (QoS 0). */
  published: number;
  /** Messages this link put into the store. */
  stored: number;
  /** Stored messages replayed and acknowledged. */
  replayed: number;
  /** Rows in the store. */
  replayPending: number;
  /** Data dropped by the store's bounds (persistent). */
  dropped: number;
  /** Messages the broker refused with a PUBACK reason code (MQTT 5, e.g. not authorized): dropped. */
  refused: number;
  /** `accepted`/`executing` answers not sent because the live window was full (their terminal answer was). */
  progressDropped: number;
}

interface Outgoing {
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
  kind: Stored['kind'];
  /** An `accepted` or `executing` answer: superseded by the terminal one that follows. */
  progress?: boolean;
}

const LIVE_INFLIGHT_MAX = 5000;
/** And by bytes: 1,000-value messages are ~40 KB each, and memory is what the bound is for. */
const LIVE_INFLIGHT_BYTES = 8 * 1024 * 1024;
const STOP_WAIT_MS = 2000;
/** Sets waiting in the inbox beyond which the socket is no longer read; below the low mark it is again. */
const SET_INBOX_HIGH = 200;
const SET_INBOX_LOW = 50;
/** At most this long handing sets to onSet in one turn of the event loop. */
const SET_SLICE_MS = 5;
/**
 * Sets taken per second at most (a token bucket holding a tenth of a second's worth): a flood
 * takes a bounded share of the CPU the pollers share with it (bench/plc-bench.ts, write flood);
 * the rest waits at the broker. A WMS sends a few sets a second per device.
 */
const SETS_PER_SEC = 500;
const SET_BURST = SETS_PER_SEC / 10;
const END_GRACE_MS = 1000;

export class BridgeLink {
  private client: MqttClient | undefined;
  private isConnected = false;
  private stopped = true;
  private generation = 0;
  private retry: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private readonly brokers: BrokerList;
  private protocol: 4 | 5;
  private setsEnabled = false;
  private readonly live = new Map<number, Outgoing>();
  private liveBytes = 0;
  private liveKey = 0;
  private readonly replay: Replay;
  private readonly drainWaiters = new Set<() => void>();
  private announce: boolean;
  /** Set while setAnnounce() drains the connection it is about to replace: new messages go to the store. */
  private swapping = false;
  /**
   * Messages sent while a connection is swapped for one with the Last Will (setAnnounce): held
   * here and published live, in order, once the new connection is up, rather than stored and
   * replayed as historical (a standby becoming active would otherwise show a gap in live data).
   * Bounded like the live in-flight window; beyond it, or when the swap does not end in a
   * connection, they go to the store as before. Undefined when no swap runs.
   */
  private held: Outgoing[] | undefined;
  private heldBytes = 0;
  /** The broker granted the set subscription on the current connection. */
  private setsGranted = false;
  private counts = { published: 0, stored: 0, replayed: 0, refused: 0, progressDropped: 0 };
  private inbox: { device: string; payload: Buffer }[] = [];
  private inboxHead = 0;
  private inboxTimer: NodeJS.Timeout | undefined;
  private setTokens = SET_BURST;
  private setTokensAt = 0;
  /** mqtt.js's callback for the message that filled the inbox: called once it has room again. */
  private heldAck: (() => void) | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: BridgeLinkOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.backoff = new Backoff(opts.mqtt.reconnect);
    this.brokers = new BrokerList(opts.mqtt.url, opts.mqtt.urls);
    this.protocol = 5;
    this.announce = opts.announce ?? true;
    this.replay = new Replay({
      store: opts.store,
      clock: this.clock,
      replayPerSec: opts.replayPerSec,
      client: () => (this.isConnected && !this.stopped && !this.swapping && this.announce ? this.client : undefined),
      generation: () => this.generation,
      settled: (row, err) => {
        if (err) this.refused(row, err);
        else this.counts.replayed++;
        this.checkDrained();
      },
    });
  }

  get connected(): boolean {
    return this.isConnected;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connectOnce();
  }

  async stop(opts: { graceful: boolean } = { graceful: true }): Promise<void> {
    if (this.stopped) return;
    this.drainSets();
    this.stopped = true;
    this.clock.clearTimeout(this.inboxTimer);
    this.inboxTimer = undefined;
    this.clock.clearTimeout(this.retry);
    this.replay.stop();
    const client = this.client;
    if (client && this.isConnected) {
      const waits = [this.whenDrained()];
      if (opts.graceful && this.announce) waits.push(this.publishAwait(client, this.opts.topics.status, this.statusPayload('offline'), true));
      await this.bounded(Promise.all(waits), STOP_WAIT_MS);
    }
    const wasConnected = this.isConnected;
    this.detach();
    this.releaseHeld(); // stopped: to the store
    this.opts.store.flush();
    if (client) await this.end(client, wasConnected);
  }

  /**
   * Takes on (or gives up) birth, Last Will, status and replay: the standby of a handover that
   * becomes active, or the reverse. When connected, the connection is drained and replaced,
   * since the will is part of CONNECT.
   */
  setAnnounce(on: boolean): void {
    if (on === this.announce) return;
    this.announce = on;
    if (this.client && this.isConnected && !this.stopped) void this.swapConnection(this.client);
  }

  publishData(device: string, group: string, body: Record<string, unknown>): void {
    this.send({ topic: this.opts.topics.data(device, group), payload: JSON.stringify(body), qos: this.opts.mqtt.qos, retain: false, kind: 'data' });
  }

  publishResult(id: string, body: Record<string, unknown>): void {
    const progress = body.status === 'accepted' || body.status === 'executing';
    this.send({ topic: this.opts.topics.result(id), payload: JSON.stringify(body), qos: 1, retain: true, kind: 'result', ...(progress ? { progress } : {}) });
  }

  publishStatus(): void {
    const client = this.client;
    if (!client || !this.isConnected || this.stopped || this.swapping || !this.announce) return; // the birth at the next connect carries it
    client.publish(this.opts.topics.status, this.statusPayload('online'), { qos: 1, retain: true }, (err) => {
      if (err) this.log.warn({ err }, 'status publish not acknowledged');
    });
  }

  setSetsEnabled(on: boolean): void {
    if (on === this.setsEnabled) return;
    this.setsEnabled = on;
    const client = this.client;
    if (!client || !this.isConnected) return; // applied at the next connect
    if (on) this.subscribeSets(client);
    else
      client.unsubscribe(this.opts.topics.setFilter, (err) => {
        if (err) this.log.warn({ err }, 'unsubscribe from set failed');
      });
  }

  /**
   * True once the broker granted the `set` subscription on the current, announcing connection:
   * a successor waits for it before its predecessor leaves, so no `set` finds nobody.
   */
  get setsReady(): boolean {
    return this.setsGranted && this.setsEnabled && this.announce && !this.swapping;
  }

  stats(): BridgeLinkStats {
    const s = this.opts.store.stats();
    return { connected: this.isConnected, connects: this.generation, broker: redactUrl(this.brokers.current()), ...this.counts, replayPending: s.depth, dropped: s.dropped };
  }

  private send(m: Outgoing): void {
    const client = this.client;
    if (this.held !== undefined && !this.stopped && (!client || !this.isConnected || this.swapping)) {
      if (this.held.length >= LIVE_INFLIGHT_MAX || this.heldBytes >= LIVE_INFLIGHT_BYTES) return this.toStore(m);
      this.held.push(m);
      this.heldBytes += m.payload.length;
      return;
    }
    if (!client || !this.isConnected || this.stopped || this.swapping) return this.toStore(m);
    if (m.qos === 0) {
      client.publish(m.topic, m.payload, { qos: 0, retain: m.retain });
      this.counts.published++;
      return;
    }
    if (this.live.size >= LIVE_INFLIGHT_MAX || this.liveBytes >= LIVE_INFLIGHT_BYTES) {
      // Stored, it would be replayed after the terminal answer that follows it live, and the
      // retained ~/res/{id} would end on `executing`. The terminal answer supersedes it anyway.
      if (m.progress) {
        this.counts.progressDropped++;
        return;
      }
      return this.toStore(m);
    }
    const key = ++this.liveKey;
    const gen = this.generation;
    this.live.set(key, m);
    this.liveBytes += m.payload.length;
    client.publish(m.topic, m.payload, { qos: 1, retain: m.retain }, (err) => {
      if (gen !== this.generation || !this.live.delete(key)) return;
      this.liveBytes -= m.payload.length;
      if (!err) this.counts.published++;
      else if (isRefusal(err)) this.refused(m, err);
      else this.toStore(m); // the connection is going; 'close' follows and replays it later
      this.checkDrained();
    });
  }

  /** Ends holding: the held messages are sent (live on a connection just made) or stored. */
  private releaseHeld(): void {
    const held = this.held;
    if (held === undefined) return;
    this.held = undefined;
    this.heldBytes = 0;
    for (const m of held) this.send(m);
  }

  private toStore(m: Outgoing): void {
    this.opts.store.push({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, kind: m.kind });
    this.counts.stored++;
    // An answer to a write is worth a commit of its own.
    if (m.kind === 'result') this.opts.store.flush();
    this.replay.kick();
  }

  private refused(m: Outgoing | Stored, err: Error): void {
    this.counts.refused++;
    this.log.warn({ err, topic: m.topic }, 'the broker refused a message; dropped');
  }

  private statusPayload(state: 'online' | 'offline'): string {
    const ts = new Date(this.clock.now()).toISOString();
    const body = state === 'offline' ? { ...this.opts.status(), state } : { state, ...this.opts.status() };
    return JSON.stringify({ ...body, ts });
  }

  /**
   * The Last Will: fixed at CONNECT (MQTT 3.1.3.2), published whenever the broker loses the
   * bridge, maybe hours later. So it says nothing that goes out of date: `devices` is empty (the
   * `online` messages before it say what the bridge knew of each device) and `dropped` is left
   * out; `ts` is when the connection was opened.
   */
  private willPayload(): string {
    const body: Record<string, unknown> = { ...this.opts.status(), devices: {}, state: 'offline', ts: new Date(this.clock.now()).toISOString() };
    delete body.dropped;
    return JSON.stringify(body);
  }

  private clientOptions(): IClientOptions {
    const m = this.opts.mqtt;
    const o: IClientOptions = {
      clientId: this.opts.clientId,
      protocolVersion: this.protocol,
      clean: true,
      keepalive: m.keepaliveSec,
      connectTimeout: m.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      // mqtt-packet otherwise builds a Buffer for each of the 65,536 16-bit numbers on the first
      // packet: 6 MB of heap the bridge would carry for its lifetime to save a 2-byte allocation.
      writeCache: false,
      // TLS material is read at each attempt, so renewed certificates are picked up without a restart.
      ...tlsConnectOptions(m.tls),
    };
    if (this.announce) o.will = { topic: this.opts.topics.status, payload: Buffer.from(this.willPayload()), qos: 1, retain: true };
    if (m.username !== undefined) o.username = m.username;
    if (m.password !== undefined) o.password = m.password;
    return o;
  }

  private connectOnce(): void {
    if (this.stopped) return;
    let client: MqttClient;
    try {
      client = (this.opts.connect ?? mqtt.connect)(this.brokers.current(), this.clientOptions());
    } catch (err) {
      this.log.error({ err }, 'cannot start an MQTT connection');
      this.brokers.failed();
      return this.scheduleRetry(false);
    }
    this.client = client;
    client.on('connect', () => {
      if (this.client !== client || this.stopped) return;
      this.isConnected = true;
      this.generation++;
      this.backoff.reset();
      // Nagle's algorithm held a write's answer back for a delayed ACK (~40 ms, bench/plc-bench.ts);
      // mqtt.js leaves it on. (A TLS stream passes it to its socket.)
      (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
      this.log.info({ url: redactUrl(this.brokers.current()), clientId: this.opts.clientId }, 'connected to the broker');
      // Birth first: the WMS sees the bridge online before any replayed data.
      if (this.announce) client.publish(this.opts.topics.status, this.statusPayload('online'), { qos: 1, retain: true });
      if (this.setsEnabled) this.subscribeSets(client);
      // What came while the Last Will was being installed goes out live, before any replay.
      this.releaseHeld();
      this.replay.start();
    });
    client.on('message', (topic, payload) => {
      const device = this.opts.topics.deviceOfSet(topic);
      if (device === undefined || !this.setsEnabled || this.stopped) return;
      this.inbox.push({ device, payload });
      this.scheduleSets();
    });
    // mqtt.js reads the next packet (and acknowledges this one) only once this callback runs.
    client.handleMessage = (_packet, callback) => {
      if (this.inbox.length - this.inboxHead < SET_INBOX_HIGH) return callback();
      this.heldAck = () => callback();
    };
    client.on('error', (err) => {
      // CONNACK "unacceptable protocol version": 1 in MQTT 3.1.1, 0x84 in MQTT 5 (section 3.2.2.2).
      const rc = (err as { code?: unknown }).code;
      if (this.protocol === 5 && !this.isConnected && (rc === 1 || rc === 0x84)) {
        this.protocol = 4;
        this.log.warn('the broker refused MQTT 5; using MQTT 3.1.1');
      }
      this.log.warn({ err: { message: err.message, code: rc } }, 'MQTT connection error');
    });
    client.on('close', () => {
      if (this.client !== client) return;
      const wasConnected = this.isConnected;
      this.detach();
      // A swap whose new connection failed: what it held is stored, like any offline data.
      this.releaseHeld();
      client.end(true);
      if (wasConnected) this.log.warn('disconnected from the broker');
      // Never connected: this broker is unreachable (or refuses us); the next one is tried.
      else this.brokers.failed();
      this.scheduleRetry(wasConnected);
    });
  }

  /** Hands waiting sets to onSet for at most SET_SLICE_MS, then yields to the event loop. */
  private takeSets(): void {
    this.inboxTimer = undefined;
    const now = this.clock.now();
    this.setTokens = Math.min(SET_BURST, this.setTokens + ((now - this.setTokensAt) * SETS_PER_SEC) / 1000);
    this.setTokensAt = now;
    const until = performance.now() + SET_SLICE_MS;
    while (this.inboxHead < this.inbox.length && this.setTokens >= 1 && performance.now() < until) {
      this.setTokens--;
      this.takeOne();
    }
    this.compactInbox();
  }

  /** The next slice: at once while tokens last, else when the next ones are due. */
  private scheduleSets(): void {
    if (this.inboxTimer || this.stopped) return;
    const wait = this.setTokens >= 1 ? 0 : Math.ceil(((1 - this.setTokens) * 1000) / SETS_PER_SEC);
    this.inboxTimer = this.clock.setTimeout(() => this.takeSets(), wait);
  }

  /** Every waiting set now (stop). */
  drainSets(): void {
    while (this.inboxHead < this.inbox.length) this.takeOne();
    this.compactInbox();
  }

  private takeOne(): void {
    const m = this.inbox[this.inboxHead++];
    if (!m) return;
    try {
      this.opts.onSet(m.device, m.payload);
    } catch (err) {
      this.log.error({ err, device: m.device }, 'set handler failed');
    }
  }

  private compactInbox(): void {
    if (this.inboxHead >= this.inbox.length) {
      this.inbox = [];
      this.inboxHead = 0;
    } else if (this.inboxHead > SET_INBOX_LOW) {
      this.inbox = this.inbox.slice(this.inboxHead);
      this.inboxHead = 0;
    }
    if (this.inbox.length > 0) this.scheduleSets();
    else if (this.inboxTimer) {
      this.clock.clearTimeout(this.inboxTimer);
      this.inboxTimer = undefined;
    }
    if (this.heldAck && this.inbox.length - this.inboxHead <= SET_INBOX_LOW) {
      const ack = this.heldAck;
      this.heldAck = undefined;
      ack();
    }
  }

  /** The connection is gone: unacknowledged live messages go to the store, replay pauses. */
  private detach(): void {
    // The held message's connection is gone with it (a clean session: the broker will not resend).
    this.heldAck = undefined;
    this.setsGranted = false;
    this.client = undefined;
    this.isConnected = false;
    this.generation++;
    this.replay.stop();
    for (const m of this.live.values()) this.toStore(m);
    this.live.clear();
    this.liveBytes = 0;
    this.replay.flushAcks();
    this.checkDrained();
  }

  private async swapConnection(client: MqttClient): Promise<void> {
    this.swapping = true;
    this.held ??= [];
    this.replay.stop();
    await this.bounded(this.whenDrained(), STOP_WAIT_MS);
    this.swapping = false;
    // Closed or stopped meanwhile: the ordinary paths have taken over (and take what was held).
    if (this.client !== client || this.stopped) return this.releaseHeld();
    this.log.info({ announce: this.announce }, 'reconnecting to change the Last Will');
    this.detach();
    await this.end(client, true);
    if (!this.stopped && !this.client) this.connectOnce();
  }

  /** A clean DISCONNECT (no will) waits for mqtt.js's queue, which never empties on a dead connection; after a grace period the socket is destroyed instead. */
  private end(client: MqttClient, clean: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = this.clock.setTimeout(() => client.end(true, {}, () => resolve()), clean ? END_GRACE_MS : 0);
      if (clean) {
        client.end(false, {}, () => {
          this.clock.clearTimeout(t);
          resolve();
        });
      }
    });
  }

  private subscribeSets(client: MqttClient): void {
    const generation = this.generation;
    client.subscribe(this.opts.topics.setFilter, { qos: 1 }, (err, granted) => {
      if (err) this.log.error({ err }, 'subscribe to set failed');
      else if (granted?.some((g) => g.qos > 2)) this.log.error({ granted }, 'broker refused the set subscription (ACL?)');
      else if (generation === this.generation && this.client === client && !this.swapping) this.setsGranted = true;
    });
  }

  private scheduleRetry(lostConnection: boolean): void {
    if (this.stopped) return;
    const delay = lostConnection ? firstReconnectDelay(this.opts.mqtt.reconnect.initialMs) : this.backoff.next();
    this.log.info({ delayMs: delay, attempt: this.backoff.attempts, url: redactUrl(this.brokers.current()) }, 'reconnecting to the broker');
    this.retry = this.clock.setTimeout(() => this.connectOnce(), delay);
  }

  // --- stop helpers ---------------------------------------------------------------------------

  private checkDrained(): void {
    if (this.drainWaiters.size === 0 || this.live.size > 0 || (this.replay.inflight > 0 && this.isConnected)) return;
    for (const w of this.drainWaiters) w();
    this.drainWaiters.clear();
  }

  /** Resolves once nothing live or replayed awaits its acknowledgement (or the connection is gone). */
  private whenDrained(): Promise<void> {
    return new Promise((resolve) => {
      this.drainWaiters.add(resolve);
      this.checkDrained();
    });
  }

  private publishAwait(client: MqttClient, topic: string, payload: string, retain: boolean): Promise<void> {
    return new Promise((resolve) => client.publish(topic, payload, { qos: 1, retain }, () => resolve()));
  }

  private bounded(p: Promise<unknown>, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.clock.setTimeout(resolve, ms);
      void p.then(() => {
        this.clock.clearTimeout(t);
        resolve();
      });
    });
  }
}
