/**
 * The outbox measurements and their references, each in its own process (started by
 * outbox-bench.ts with --expose-gc) so one measurement's heap never inflates another's RSS.
 * Prints one JSON object on its last stdout line.
 *
 *   outbox  enqueue N events with no sender (broker down): RSS growth and rate; then attach an
 *           mqtt.js client the way agent/wms-link.ts does and time the drain to depth 0
 *   array   reference for memory: the same N messages kept in a JS array (an in-memory queue)
 *   sqlite  reference for the enqueue rate: the same rows INSERTed with plain better-sqlite3,
 *           same schema and pragmas, 1000 rows per transaction
 *   raw     reference for the drain: the same N payloads published by plain mqtt.js, QoS 1,
 *           with the same window kept in flight, no outbox
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as turn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { Outbox, OUTBOX_MIGRATIONS, type OutboxMessage } from '../agent/outbox.js';
import { systemClock } from '../lib/clock.js';
import { silentLogger } from '../lib/log.js';
import { openDatabase } from '../lib/sqlite.js';
import { growth, payload, settledMem } from './child-memory.js';

const TOPIC = 'edge/bench/events';
const YIELD_EVERY = 10_000;

/** Connects with the options agent/wms-link.ts uses (persistent MQTT 5 session, no auto-reconnect). */
async function connectLikeAgent(a: Args): Promise<MqttClient> {
  const { url, clientId, protocolVersion } = a;
  const client = mqtt.connect(url, {
    clientId,
    protocolVersion,
    clean: false,
    keepalive: 30,
    connectTimeout: 10_000,
    reconnectPeriod: 0,
    resubscribe: false,
    ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
  });
  return client;
}

interface Args {
  n: number;
  url: string;
  dir: string;
  inflight: number;
  clientId: string;
  protocolVersion: 4 | 5;
  timeoutMs: number;
}

async function outboxMode(a: Args): Promise<Record<string, unknown>> {
  const db = openDatabase(join(a.dir, 'outbox.db'), { migrations: [OUTBOX_MIGRATIONS] });
  const outbox = new Outbox({
    db,
    logger: silentLogger(),
    clock: systemClock,
    limits: { maxMessages: Math.max(200_000, a.n), maxBytes: 256 * 1024 * 1024, inflight: a.inflight },
  });
  outbox.open();
  const before = await settledMem();
  const t0 = performance.now();
  for (let i = 0; i < a.n; i++) {
    outbox.enqueue({ topic: TOPIC, payload: payload(i), kind: 'event' });
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
  }
  outbox.flush();
  const enqueueMs = performance.now() - t0;
  const after = await settledMem();
  const depthBefore = outbox.stats().depth;

  const client = await connectLikeAgent(a);
  const t1 = performance.now();
  outbox.attach({ publish: (topic, p, opts, cb) => client.publish(topic, p, opts, (err) => cb(err ?? undefined)) });
  const drained = await outbox.waitDrained(a.timeoutMs);
  const drainMs = performance.now() - t1;
  const st = outbox.stats();
  outbox.close();
  await client.endAsync();
  db.close();
  if (!drained || st.depth !== 0) throw new Error(`outbox not drained after ${a.timeoutMs} ms: depth ${st.depth}, acked ${st.acked}`);
  return {
    ...growth(before, after),
    enqueueMs,
    enqueueRate: a.n / (enqueueMs / 1000),
    depthBefore,
    drainMs,
    drainRate: a.n / (drainMs / 1000),
    sent: st.sent,
    acked: st.acked,
  };
}

async function arrayMode(a: Args): Promise<Record<string, unknown>> {
  const before = await settledMem();
  const queue: OutboxMessage[] = [];
  for (let i = 0; i < a.n; i++) {
    queue.push({ topic: TOPIC, payload: payload(i), kind: 'event' });
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
  }
  const after = await settledMem();
  return { ...growth(before, after), kept: queue.length };
}

async function sqliteMode(a: Args): Promise<Record<string, unknown>> {
  const db = openDatabase(join(a.dir, 'plain.db'), { migrations: [OUTBOX_MIGRATIONS] });
  const insert = db.prepare<[number, string, Buffer, string, number, number]>(
    'INSERT INTO outbox(seq, topic, payload, kind, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const commit = db.transaction((rows: [number, Buffer][]) => {
    const now = Date.now();
    for (const [seq, p] of rows) insert.run(seq, TOPIC, p, 'event', 0, now);
  });
  const t0 = performance.now();
  let rows: [number, Buffer][] = [];
  for (let i = 0; i < a.n; i++) {
    rows.push([i + 1, Buffer.from(payload(i), 'utf8')]);
    if (rows.length === 1000) {
      commit(rows);
      rows = [];
    }
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
  }
  commit(rows);
  const insertMs = performance.now() - t0;
  db.close();
  return { insertMs, insertRate: a.n / (insertMs / 1000) };
}

async function rawMode(a: Args): Promise<Record<string, unknown>> {
  const payloads = Array.from({ length: a.n }, (_, i) => Buffer.from(payload(i), 'utf8'));
  const client = await connectLikeAgent(a);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let acked = 0;
    const timer = setTimeout(() => reject(new Error(`raw publish: ${acked}/${a.n} acknowledged after ${a.timeoutMs} ms`)), a.timeoutMs);
    const sendOne = (): void => {
      const p = payloads[next++]!;
      client.publish(TOPIC, p, { qos: 1, retain: false }, (err) => {
        if (err) return reject(err);
        acked++;
        if (next < a.n) sendOne();
        else if (acked === a.n) {
          clearTimeout(timer);
          resolve();
        }
      });
    };
    for (let k = 0; k < a.inflight && next < a.n; k++) sendOne();
  });
  const publishMs = performance.now() - t0;
  await client.endAsync();
  return { publishMs, publishRate: a.n / (publishMs / 1000) };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      n: { type: 'string', default: '100000' },
      url: { type: 'string', default: '' },
      dir: { type: 'string', default: '' },
      inflight: { type: 'string', default: '256' },
      'client-id': { type: 'string', default: `bench-${process.pid}` },
      'timeout-ms': { type: 'string', default: '600000' },
      protocol: { type: 'string', default: '5' },
    },
  });
  const a: Args = {
    n: Number(values.n),
    url: values.url,
    dir: values.dir,
    inflight: Number(values.inflight),
    clientId: values['client-id'],
    timeoutMs: Number(values['timeout-ms']),
    protocolVersion: values.protocol === '4' ? 4 : 5,
  };
  const modes: Record<string, (a: Args) => Promise<Record<string, unknown>>> = { outbox: outboxMode, array: arrayMode, sqlite: sqliteMode, raw: rawMode };
  const mode = positionals[0];
  const run = mode === undefined ? undefined : modes[mode];
  if (!run) throw new Error(`usage: outbox-child outbox|array|sqlite|raw [--n N] [--url URL] [--dir DIR]`);
  const result = await run(a);
  process.stdout.write(JSON.stringify({ mode, n: a.n, ...result }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`outbox-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
