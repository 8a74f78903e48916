/**
 * Proves the broker harness against a real mosquitto: plain pub/sub, mTLS acceptance and
 * refusal, the ACL's per-identity subtree, and persistent sessions surviving restart().
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { createCa } from '../../certs/devca.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { canConnect, collect, mqttClient, tempDir, waitFor } from '../helpers/util.js';

const clients: MqttClient[] = [];
async function client(url: string, opts: Parameters<typeof mqttClient>[1] = {}): Promise<MqttClient> {
  const c = await mqttClient(url, opts);
  clients.push(c);
  return c;
}
after(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
});

describe('mosquitto harness with mTLS and ACL', () => {
  let broker: Broker;
  before(async () => {
    broker = await startBroker({ tls: true, acl: true, gatewayId: 'gw-test' });
  });
  after(async () => {
    await broker?.stop();
    if (broker) rmSync(broker.dir, { recursive: true, force: true });
  });

  test('is a real mosquitto on the ports it reports', () => {
    assert.equal(broker.kind, 'mosquitto');
    assert.match(broker.url, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(broker.tlsUrl, `mqtts://localhost:${broker.tlsPort}`);
    assert.match(broker.logs(), /mosquitto version 2\.\d+\.\d+ running/);
  });

  test('plain pub/sub round trip, JSON decoded and retain flag kept', async () => {
    const sub = await client(broker.url);
    const pub = await client(broker.url);
    const got = await collect(sub, 'wms/+/echo');
    await pub.publishAsync('wms/a/echo', JSON.stringify({ n: 1 }), { qos: 1 });
    await pub.publishAsync('wms/b/echo', 'not json', { qos: 1 });
    await waitFor(() => got.length === 2, { what: 'two echoes' });
    assert.deepEqual(got, [
      { topic: 'wms/a/echo', payload: { n: 1 }, retain: false },
      { topic: 'wms/b/echo', payload: 'not json', retain: false },
    ]);
  });

  test('mTLS: the client certificate connects; no certificate or a foreign CA is refused', async () => {
    const pki = broker.pki!;
    const tls = { ca: readFileSync(pki.ca), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
    const ok = await client(broker.tlsUrl!, { ...tls, reconnectPeriod: 0 });
    assert.equal(ok.connected, true);

    // No certificate: mosquitto ends the TLS 1.3 handshake with a certificate_required alert.
    await assert.rejects(mqttClient(broker.tlsUrl!, { ca: tls.ca, reconnectPeriod: 0 }), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' });
    await waitFor(() => broker.logs().includes('peer did not return a certificate'), { what: 'the refusal in the broker log' });

    // Trusting another CA: our side rejects the broker's chain.
    const foreign = createCa({ commonName: 'someone else' });
    await assert.rejects(mqttClient(broker.tlsUrl!, { ...tls, ca: foreign.certPem, reconnectPeriod: 0 }), (err: Error & { code?: string }) => {
      assert.ok(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'].includes(err.code ?? ''), `unexpected ${err.code}: ${err.message}`);
      return true;
    });
  });

  test("ACL: a TLS identity's publish outside edge/<CN>/# is dropped, inside it is delivered", async () => {
    const pki = broker.pki!;
    const tls = { ca: readFileSync(pki.ca), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
    const wms = await client(broker.url);
    const got = await collect(wms, '#');

    // MQTT 3.1.1 has no way to say "not authorized" in a PUBACK: mosquitto acks and drops.
    const gw4 = await client(broker.tlsUrl!, { ...tls, protocolVersion: 4 });
    await gw4.publishAsync('edge/other-gw/events', '{"denied":true}', { qos: 1 });
    await gw4.publishAsync('plc/x', '{"denied":true}', { qos: 1 });
    // MQTT 5 says so: PUBACK reason 0x87, which mqtt.js turns into a rejected publish.
    const gw5 = await client(broker.tlsUrl!, { ...tls, protocolVersion: 5 });
    await assert.rejects(gw5.publishAsync('edge/other-gw/events', '{"denied":true}', { qos: 1 }), { code: 0x87 });

    // QoS 1 from one connection is forwarded in order, so once the allowed message (sent last,
    // on the same connection as the silently dropped ones) has arrived, a denied one would have
    // arrived before it. No sleep needed.
    await gw4.publishAsync('edge/gw-test/events', '{"allowed":true}', { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === 'edge/gw-test/events'), { what: 'the allowed publish', timeoutMs: 5000 });
    assert.deepEqual(
      got.map((m) => m.topic),
      ['edge/gw-test/events'],
    );

    // mosquitto 2.0's acl_file grants every SUBSCRIBE and checks read access per message on
    // delivery instead: the foreign subscription is granted but stays silent.
    const inbox = await collect(gw5, 'edge/+/cmd/#');
    await wms.publishAsync('edge/other-gw/cmd/restart', '{"id":"x"}', { qos: 1 });
    await wms.publishAsync('edge/gw-test/cmd/restart', '{"id":"y"}', { qos: 1 });
    await waitFor(() => inbox.length > 0, { what: 'the command in its own subtree' });
    assert.deepEqual(inbox, [{ topic: 'edge/gw-test/cmd/restart', payload: { id: 'y' }, retain: false }]);
  });
});

describe('mosquitto restart and kill -9', () => {
  let broker: Broker;
  before(async () => {
    broker = await startBroker({ dir: tempDir('broker-restart') });
  });
  after(async () => {
    await broker?.stop();
    if (broker) rmSync(broker.dir, { recursive: true, force: true });
  });

  test("restart() keeps a persistent session's queued QoS 1 message", async () => {
    const clientId = 'persistent-sub';
    const session = { clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 3600 } };
    const sub1 = await mqttClient(broker.url, session);
    await sub1.subscribeAsync('edge/gw-test/cmd/#', { qos: 1 });
    await sub1.endAsync();

    const pub = await client(broker.url);
    await pub.publishAsync('edge/gw-test/cmd/update', JSON.stringify({ id: 'c1' }), { qos: 1 });
    await broker.restart();

    // The handler must be in place before CONNACK: the queued message follows right behind it.
    const received: string[] = [];
    const sub2 = connect(broker.url, session);
    clients.push(sub2);
    sub2.on('message', (topic, payload) => received.push(`${topic} ${payload.toString()}`));
    await waitFor(() => received.length > 0, { what: 'the queued message after restart', timeoutMs: 5000 }).catch((err: Error) => {
      throw new Error(`${err.message}\n${broker.logs()}`);
    });
    assert.deepEqual(received, ['edge/gw-test/cmd/update {"id":"c1"}']);
  });

  test('kill9() takes the broker down hard; restart() brings it back on the same port', async () => {
    await broker.kill9();
    assert.equal(await canConnect(broker.port), false);
    await broker.restart();
    const c = await client(broker.url);
    assert.equal(c.connected, true);
    assert.equal(readFileSync(join(broker.dir, 'mosquitto.conf'), 'utf8').includes(`listener ${broker.port} 127.0.0.1`), true);
  });
});

describe('aedes fallback', () => {
  test('the embedded broker serves a plain round trip and restarts on its port', async () => {
    const broker = await startBroker({ kind: 'aedes' });
    try {
      assert.equal(broker.kind, 'aedes');
      const sub = await client(broker.url);
      const got = await collect(sub, 't/#');
      const pub = await client(broker.url);
      await pub.publishAsync('t/1', '{"a":1}', { qos: 1 });
      await waitFor(() => got.length === 1, { what: 'the message through aedes' });
      assert.deepEqual(got[0], { topic: 't/1', payload: { a: 1 }, retain: false });
      await broker.restart();
      assert.equal(await canConnect(broker.port), true);
    } finally {
      await broker.stop();
      rmSync(broker.dir, { recursive: true, force: true });
    }
  });
});
