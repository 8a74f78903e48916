/**
 * The console's PLC feed against a real Mosquitto: it keeps the bridge's own value objects
 * (normalized) and forwards each message's values as they came; a value older than the one kept
 * (data the bridge replays after an outage) does not replace it; the bridge's Last Will marks
 * every value bad; `set` requests on the bridge's topics are not values.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { mqttClient, waitFor } from '../helpers/util.js';
import { silentLogger } from '../../lib/log.js';
import { PlcFeed, type PlcChange } from '../../console/plc-feed.js';

const ROOT = 'edge/gw-feed';
let broker: Broker;
let pub: MqttClient;
let feed: PlcFeed;
const changes: PlcChange[] = [];

before(async () => {
  broker = await startBroker();
  pub = await mqttClient(broker.url);
  feed = new PlcFeed({ url: broker.url, mqtt: {}, root: ROOT, tags: [{ device: 'plc0', group: 'g', tag: 'a', writable: false, type: 'uint16' }], logger: silentLogger(), onChange: (c) => changes.push(c) });
  await feed.start();
  // Subscribed once a status message comes through.
  await waitFor(
    async () => {
      await pub.publishAsync(`${ROOT}/plc/status`, JSON.stringify({ state: 'online', devices: { plc0: { link: 'up' } } }));
      return changes.some((c) => 'bridge' in c);
    },
    { timeoutMs: 10_000, what: 'the feed subscribed' },
  );
});

after(async () => {
  await feed?.stop();
  pub?.end(true);
  await broker?.stop();
});

const values = (): Record<string, { v: unknown; q: string; ts: string; reason?: string }> => {
  const g = feed.snapshot().groups.find((x) => x.device === 'plc0' && x.group === 'g');
  return g?.values ?? {};
};

test('values are kept and forwarded as the bridge sent them; an older one does not replace a newer one', async () => {
  const t1 = '2026-12-07T07:00:01.000Z';
  const t0 = '2026-12-07T07:00:00.000Z';
  changes.length = 0;
  await pub.publishAsync(`${ROOT}/plc/plc0/g`, JSON.stringify({ seq: 2, ts: t1, values: { a: { v: 7, q: 'good', ts: t1 }, b: { v: 1 } } }));
  await waitFor(() => values().a?.v === 7, { timeoutMs: 5000, what: 'a = 7' });
  assert.deepEqual(values().b, { v: 1, q: 'bad', ts: values().b!.ts }, 'no quality: bad, with a time');
  const sent = changes.find((c) => 'device' in c);
  assert.deepEqual(sent && 'values' in sent ? Object.keys(sent.values) : [], ['a', 'b']);
  // Replayed after an outage: older than what is kept.
  await pub.publishAsync(`${ROOT}/plc/plc0/g`, JSON.stringify({ seq: 1, ts: t0, historical: true, values: { a: { v: 6, q: 'good', ts: t0 }, c: { v: 3, q: 'good', ts: t0 } } }));
  await waitFor(() => values().c?.v === 3, { timeoutMs: 5000, what: 'c = 3' });
  assert.equal(values().a?.v, 7, 'the newer value stays');
  const last = changes.at(-1);
  assert.deepEqual(last && 'values' in last ? Object.keys(last.values) : [], ['c'], 'only what was taken is forwarded');
  // A set request on the bridge's topic is not a value.
  await pub.publishAsync(`${ROOT}/plc/plc0/set`, JSON.stringify({ id: 'x', values: { a: { v: 99, q: 'good', ts: '2027-01-01T00:00:00.000Z' } } }));
  await pub.publishAsync(`${ROOT}/plc/status`, JSON.stringify({ state: 'offline' }));
  await waitFor(() => values().a?.q === 'bad', { timeoutMs: 5000, what: 'a bad after the Last Will' });
  assert.equal(values().a?.v, 7);
  assert.equal(values().a?.reason, 'bridge-offline');
  assert.deepEqual(feed.brief(), { bridge: 'offline', devices: {} });
});
