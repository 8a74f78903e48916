/**
 * The bridge's MQTT link and its store against a real Mosquitto: live data, a broker outage with
 * replay (`historical: true`, in order, nothing lost, live data flowing meanwhile), a result
 * published while offline, the Last Will when the link's process is killed with kill -9, the
 * retained `offline` of a graceful stop, and `set` delivery only while enabled.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Socket } from 'node:net';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { BridgeLink, bridgeTopics, type BridgeMqttConfig } from '../../plc-bridge/mqtt-link.js';
import { ForwardStore } from '../../plc-bridge/store.js';
import { silentLogger } from '../../lib/log.js';

const mqttConf = (url: string): BridgeMqttConfig => ({
  url,
  prefix: 'edge',
  keepaliveSec: 5,
  qos: 1,
  connectTimeoutMs: 3000,
  reconnect: { initialMs: 100, maxMs: 500, factor: 2, jitter: 0.5 },
  tls: { rejectUnauthorized: true },
});

interface Rig {
  link: BridgeLink;
  store: ForwardStore;
  sets: { device: string; body: unknown }[];
}

function rig(url: string, gatewayId: string, replayPerSec = 200, announce = true): Rig {
  const store = new ForwardStore({ path: join(tempDir('plc-link'), 'plc-bridge.db'), maxBytes: 1 << 24, maxAgeSec: 3600, logger: silentLogger() });
  store.open();
  const sets: Rig['sets'] = [];
  const link = new BridgeLink({
    mqtt: mqttConf(url),
    topics: bridgeTopics('edge', gatewayId),
    clientId: `plc-bridge-${gatewayId}-${process.pid}`,
    store,
    logger: silentLogger(),
    replayPerSec,
    status: () => ({ devices: { d1: { link: 'up', lastReadAt: null } } }),
    onSet: (device, payload) => sets.push({ device, body: JSON.parse(payload.toString()) }),
    announce,
  });
  return { link, store, sets };
}

interface DataMsg {
  seq: number;
  historical?: boolean;
}

const dataOf = (got: Received[], topic: string): DataMsg[] => got.filter((m) => m.topic === topic).map((m) => m.payload as DataMsg);
const statesOf = (got: Received[], topic: string): string[] => got.filter((m) => m.topic === topic).map((m) => (m.payload as { state: string }).state);

interface Proxy {
  port: number;
  /** Stops forwarding in both directions while the sockets stay open (a half-open link). */
  blackhole(on: boolean): void;
  /** Destroys every proxied connection. */
  cut(): void;
  /** Closes new connections at once. */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

/** A TCP proxy in front of the broker, to cut the link's connection at a chosen moment. */
async function startProxy(targetPort: number): Promise<Proxy> {
  let hole = false;
  let refusing = false;
  const socks = new Set<Socket>();
  const server = createServer((down) => {
    if (refusing) return down.destroy();
    const up = connect(targetPort, '127.0.0.1');
    for (const s of [down, up]) {
      socks.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        socks.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.on('data', (d: Buffer) => hole || up.write(d));
    up.on('data', (d: Buffer) => hole || down.write(d));
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy: no TCP address');
  const cut = (): void => {
    for (const s of socks) s.destroy();
  };
  return {
    port: addr.port,
    blackhole: (on) => (hole = on),
    cut,
    refuse: (on) => (refusing = on),
    close: async () => {
      cut();
      await new Promise((res) => server.close(res));
    },
  };
}

describe('the PLC bridge MQTT link', () => {
  let broker: Broker;
  const cleanups: (() => unknown)[] = [];
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await broker.stop();
  });

  test('live data; a broker outage is replayed in order with historical while live data keeps flowing; an offline result arrives', async () => {
    const gw = 'gw-h3-outage';
    const topic = `edge/${gw}/plc/d1/fast`;
    // A persistent session, so the simulated WMS misses nothing across the broker restart.
    const wms = await mqttClient(broker.url, { protocolVersion: 4, clean: false, clientId: `wms-${gw}` });
    cleanups.push(() => wms.endAsync(true));
    const got = await collect(wms, `edge/${gw}/#`);
    const r = rig(broker.url, gw, 50);
    cleanups.push(async () => {
      await r.link.stop({ graceful: false });
      r.store.close();
    });
    r.link.start();
    await waitFor(() => r.link.connected, { timeoutMs: 10_000, what: 'link connected' });
    await waitFor(() => statesOf(got, `edge/${gw}/plc/status`).includes('online'), { timeoutMs: 5000, what: 'birth status' });

    let seq = 0;
    const publish = (): void => r.link.publishData('d1', 'fast', { seq: ++seq, ts: new Date().toISOString(), values: { speed: { v: seq, q: 'good' } } });
    for (let i = 0; i < 5; i++) publish();
    await waitFor(() => dataOf(got, topic).length >= 5, { timeoutMs: 5000, what: 'live data' });
    assert.ok(dataOf(got, topic).every((m) => m.historical === undefined), 'live data is not historical');

    await broker.stop();
    await waitFor(() => !r.link.connected, { timeoutMs: 10_000, what: 'link down' });
    const outageFirst = seq + 1;
    for (let i = 0; i < 100; i++) publish();
    const outageLast = seq;
    r.link.publishResult('set-1', { id: 'set-1', op: 'set', status: 'successful', ts: new Date().toISOString() });
    await waitFor(() => r.store.stats().depth === 101, { timeoutMs: 5000, what: 'outage data in the store' });

    await broker.restart();
    await waitFor(() => r.link.connected, { timeoutMs: 15_000, what: 'link reconnected' });
    // Live data while the replay runs (100 rows at 50/s take about two seconds).
    const liveFirst = seq + 1;
    const ticker = setInterval(publish, 20);
    try {
      await waitFor(() => dataOf(got, topic).filter((m) => m.historical).length >= 100, { timeoutMs: 20_000, what: 'the replay' });
    } finally {
      clearInterval(ticker);
    }
    const liveLast = seq;
    await waitFor(() => new Set(dataOf(got, topic).map((m) => m.seq)).size >= liveLast, { timeoutMs: 10_000, what: 'every message' });

    const all = dataOf(got, topic);
    const historical = all.filter((m) => m.historical === true).map((m) => m.seq);
    const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    assert.deepEqual(historical, range(outageFirst, outageLast), 'every outage message exactly once, in order, historical');
    // First sightings: the broker itself may deliver a live message twice to the WMS's persistent
    // session across its restart (QoS 1 is at least once).
    const live = all.filter((m, i) => m.historical === undefined && all.findIndex((o) => o.seq === m.seq) === i).map((m) => m.seq);
    assert.deepEqual(live, [...range(1, outageFirst - 1), ...range(liveFirst, liveLast)], 'live data in order, none historical');
    const lastHistoricalAt = all.findIndex((m) => m.seq === outageLast);
    assert.ok(all.slice(0, lastHistoricalAt).some((m) => m.seq >= liveFirst), 'live data arrived while the replay was still running');

    // The result is the store's last row: replayed after the 100 data messages, so it may still be
    // on its way when they have all arrived.
    await waitFor(() => got.some((m) => m.topic === `edge/${gw}/res/set-1`), { timeoutMs: 10_000, what: 'the result published while offline' });
    const result = got.find((m) => m.topic === `edge/${gw}/res/set-1`);
    assert.ok(result, 'the result published while offline arrived');
    assert.equal((result.payload as { status: string }).status, 'successful');
    assert.equal((result.payload as { historical?: boolean }).historical, undefined, 'results are replayed unchanged');
    await waitFor(() => r.store.stats().depth === 0, { timeoutMs: 5000, what: 'store drained by acks' });
    const st = r.link.stats();
    assert.equal(st.replayed, 101);
    assert.equal(st.dropped, 0);
    // The birth comes again after the reconnect, before the replay.
    const births = got.flatMap((m, i) => (m.topic === `edge/${gw}/plc/status` && (m.payload as { state: string }).state === 'online' ? [i] : []));
    assert.ok(births.length >= 2, 'a birth on each connect');
    assert.ok(births[1]! < got.findIndex((m) => (m.payload as DataMsg).historical === true), 'the birth before the first replayed message');
  });

  test('under load across a connection cut: messages unacknowledged at the cut are replayed, no sequence gap, order kept', async () => {
    const gw = 'gw-h3-load';
    const topic = `edge/${gw}/plc/d1/fast`;
    const wms = await mqttClient(broker.url);
    cleanups.push(() => wms.endAsync(true));
    const got = await collect(wms, topic);
    const proxy = await startProxy(broker.port);
    cleanups.push(() => proxy.close());
    const r = rig(`mqtt://127.0.0.1:${proxy.port}`, gw, 500);
    cleanups.push(async () => {
      await r.link.stop({ graceful: false });
      r.store.close();
    });
    r.link.start();
    await waitFor(() => r.link.connected, { timeoutMs: 10_000, what: 'link connected' });
    let seq = 0;
    const ticker = setInterval(() => {
      for (let i = 0; i < 5; i++) r.link.publishData('d1', 'fast', { seq: ++seq, ts: new Date().toISOString(), values: {} });
    }, 10);
    try {
      await waitFor(() => seq > 200, { timeoutMs: 5000, what: 'load running' });
      // A half-open connection: what is published now is neither delivered nor acknowledged.
      proxy.blackhole(true);
      const holeAt = seq;
      await waitFor(() => seq > holeAt + 200, { timeoutMs: 5000, what: 'load into the black hole' });
      proxy.refuse(true);
      proxy.cut();
      proxy.blackhole(false);
      await waitFor(() => !r.link.connected && r.link.stats().stored > 300, { timeoutMs: 10_000, what: 'data stored after the cut' });
      proxy.refuse(false);
      await waitFor(() => r.link.connected, { timeoutMs: 15_000, what: 'link reconnected' });
      const reconnectedAt = seq;
      await waitFor(() => seq > reconnectedAt + 200, { timeoutMs: 10_000, what: 'load after the reconnect' });
    } finally {
      clearInterval(ticker);
    }
    const last = seq;
    await waitFor(() => r.store.stats().depth === 0, { timeoutMs: 20_000, what: 'store drained' });
    await waitFor(() => new Set(dataOf(got, topic).map((m) => m.seq)).size >= last, { timeoutMs: 10_000, what: 'every seq' }).catch(() => undefined);
    const all = dataOf(got, topic);
    const seqs = new Set(all.map((m) => m.seq));
    const missing = Array.from({ length: last }, (_, i) => i + 1).filter((n) => !seqs.has(n));
    assert.deepEqual(missing, [], 'no sequence gap');
    const increasing = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x > xs[i - 1]!);
    const historical = all.filter((m) => m.historical === true).map((m) => m.seq);
    assert.ok(historical.length > 300, 'the black-holed and the offline messages were replayed');
    assert.ok(increasing(historical), 'historical in order');
    assert.ok(increasing(all.filter((m) => m.historical === undefined).map((m) => m.seq)), 'live in order');
  });

  test('a standby (announce off) has no birth and no will; setAnnounce(true) installs both without losing data', async () => {
    const gw = 'gw-h3-standby';
    const statusTopic = `edge/${gw}/plc/status`;
    const topic = `edge/${gw}/plc/d1/fast`;
    const wms = await mqttClient(broker.url);
    cleanups.push(() => wms.endAsync(true));
    const got = await collect(wms, `edge/${gw}/#`);
    const proxy = await startProxy(broker.port);
    cleanups.push(() => proxy.close());
    const r = rig(`mqtt://127.0.0.1:${proxy.port}`, gw, 500, false);
    cleanups.push(async () => {
      await r.link.stop({ graceful: false });
      r.store.close();
    });
    r.link.start();
    await waitFor(() => r.link.connected, { timeoutMs: 10_000, what: 'standby connected' });
    const connects = r.link.stats().connects;
    proxy.cut(); // an abrupt death: a will would fire now
    // The first reconnect waits a random fraction of the initial backoff: the disconnected moment
    // can be shorter than a poll, so the new connection is what is waited for.
    await waitFor(() => r.link.connected && r.link.stats().connects > connects, { timeoutMs: 10_000, what: 'standby reconnected after the cut' });
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(statesOf(got, statusTopic), [], 'neither birth nor will from a standby');

    let seq = 0;
    const ticker = setInterval(() => r.link.publishData('d1', 'fast', { seq: ++seq, values: {} }), 5);
    try {
      await waitFor(() => seq > 50, { timeoutMs: 5000, what: 'data flowing' });
      r.link.setAnnounce(true);
      await waitFor(() => statesOf(got, statusTopic).includes('online'), { timeoutMs: 10_000, what: 'birth after setAnnounce' });
      const at = seq;
      await waitFor(() => seq > at + 50, { timeoutMs: 5000, what: 'data after the swap' });
    } finally {
      clearInterval(ticker);
    }
    const last = seq;
    await waitFor(() => new Set(dataOf(got, topic).map((m) => m.seq)).size >= last, { timeoutMs: 10_000, what: 'every seq' }).catch(() => undefined);
    const seen = new Set(dataOf(got, topic).map((m) => m.seq));
    assert.deepEqual(Array.from({ length: last }, (_, i) => i + 1).filter((n) => !seen.has(n)), [], 'no data lost across the swap');
    // Held while the Last Will was installed and sent live after it: a standby that takes over
    // shows no gap in live data (nothing was cut here, so nothing is replayed as historical).
    assert.deepEqual(dataOf(got, topic).filter((m) => m.historical === true).map((m) => m.seq), [], 'the swap\'s data went out live, not stored and replayed');

    // The will fires at the cut; the link may reconnect (and send its birth) before the next look,
    // since the first reconnect waits only a random fraction of the backoff: any offline after the cut.
    const before = statesOf(got, statusTopic).length;
    proxy.cut();
    await waitFor(() => statesOf(got, statusTopic).slice(before).includes('offline'), { timeoutMs: 10_000, what: 'the will, now installed' });
  });

  test('set messages reach onSet only while enabled; a graceful stop leaves a retained offline', async () => {
    const gw = 'gw-h3-set';
    const wms = await mqttClient(broker.url);
    cleanups.push(() => wms.endAsync(true));
    const seen = await collect(wms, `edge/${gw}/plc/+/set`);
    const r = rig(broker.url, gw);
    cleanups.push(async () => {
      await r.link.stop({ graceful: false });
      r.store.close();
    });
    r.link.setSetsEnabled(true); // before start: applied at connect
    r.link.start();
    await waitFor(() => r.link.connected, { timeoutMs: 10_000, what: 'link connected' });
    const send = (device: string, id: string): Promise<unknown> =>
      wms.publishAsync(`edge/${gw}/plc/${device}/set`, JSON.stringify({ id, tags: { speed: 1 } }), { qos: 1 });
    // The subscription is made right after CONNACK; resend until the first one comes through.
    await waitFor(
      async () => {
        if (r.sets.length === 0) await send('d1', 'a');
        return r.sets.length > 0;
      },
      { timeoutMs: 5000, intervalMs: 100, what: 'first set delivered' },
    );
    assert.deepEqual(r.sets[0], { device: 'd1', body: { id: 'a', tags: { speed: 1 } } });

    r.link.setSetsEnabled(false);
    await send('d2', 'b');
    await waitFor(() => seen.some((m) => (m.payload as { id: string }).id === 'b'), { timeoutMs: 5000, what: 'b through the broker' });
    // The link's copy (if any) travels with the watcher's; give it time to be (not) delivered.
    await new Promise((res) => setTimeout(res, 300));
    r.link.setSetsEnabled(true);
    await waitFor(
      async () => {
        if (!r.sets.some((s) => (s.body as { id: string }).id === 'c')) await send('d3', 'c');
        return r.sets.some((s) => (s.body as { id: string }).id === 'c');
      },
      { timeoutMs: 5000, intervalMs: 100, what: 'set c after re-enable' },
    );
    assert.ok(!r.sets.some((s) => (s.body as { id: string }).id === 'b'), 'b arrived while sets were disabled and was not delivered');
    assert.equal(r.sets.find((s) => (s.body as { id: string }).id === 'c')?.device, 'd3');

    await r.link.stop({ graceful: true });
    assert.equal(r.link.connected, false);
    const late = await mqttClient(broker.url);
    cleanups.push(() => late.endAsync(true));
    const status = await collect(late, `edge/${gw}/plc/status`);
    await waitFor(() => status.length > 0, { timeoutMs: 5000, what: 'retained status' });
    assert.equal(status[0]!.retain, true);
    assert.equal((status[0]!.payload as { state: string }).state, 'offline');
    assert.deepEqual((status[0]!.payload as { devices: unknown }).devices, { d1: { link: 'up', lastReadAt: null } });
  });

  test('the Last Will marks the status offline when the link process is killed with kill -9', async () => {
    const gw = 'gw-h3-will';
    const wms = await mqttClient(broker.url);
    cleanups.push(() => wms.endAsync(true));
    const got = await collect(wms, `edge/${gw}/plc/status`);
    const dir = tempDir('plc-link-child');
    const script = join(dir, 'child.mjs');
    const mod = (p: string): string => new URL(p, import.meta.url).href;
    writeFileSync(
      script,
      [
        `import { BridgeLink, bridgeTopics } from ${JSON.stringify(mod('../../plc-bridge/mqtt-link.js'))};`,
        `import { ForwardStore } from ${JSON.stringify(mod('../../plc-bridge/store.js'))};`,
        `import { silentLogger } from ${JSON.stringify(mod('../../lib/log.js'))};`,
        `const store = new ForwardStore({ path: ${JSON.stringify(join(dir, 'plc-bridge.db'))}, maxBytes: 1e6, maxAgeSec: 60, logger: silentLogger() });`,
        'store.open();',
        `const link = new BridgeLink({ mqtt: ${JSON.stringify(mqttConf(broker.url))}, topics: bridgeTopics('edge', ${JSON.stringify(gw)}),`,
        `  clientId: 'plc-bridge-child', store, logger: silentLogger(), replayPerSec: 100, status: () => ({ devices: {} }), onSet: () => {} });`,
        'link.start();',
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise((res) => child.once('exit', res));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`child exited: ${stderr}`);
        return statesOf(got, `edge/${gw}/plc/status`).at(-1) === 'online';
      },
      { timeoutMs: 10_000, what: 'child online' },
    );
    child.kill('SIGKILL');
    await exited;
    await waitFor(() => statesOf(got, `edge/${gw}/plc/status`).at(-1) === 'offline', { timeoutMs: 15_000, what: 'Last Will offline' });
    const will = got.filter((m) => m.topic === `edge/${gw}/plc/status`).at(-1)!.payload as Record<string, unknown>;
    assert.deepEqual(will.devices, {});
    assert.equal(typeof will.ts, 'string');
  });
});
