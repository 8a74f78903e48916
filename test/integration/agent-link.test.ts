/**
 * The WMS link against a real Mosquitto: plain and mTLS listeners, an ACL, the retained status
 * and its Last Will, and a command round trip.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { writeFileSync } from 'node:fs';

const statusOf = (got: Received[], topic: string): string[] =>
  got.filter((m) => m.topic === topic).map((m) => (m.payload as { state: string }).state);

describe('WMS link over plain MQTT', () => {
  let broker: Broker;
  const agents: AgentProcess[] = [];
  before(async () => {
    broker = await startBroker();
    if (broker.kind !== 'mosquitto') console.warn('mosquitto not installed: these tests run against the embedded aedes broker');
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await broker.stop();
  });

  test('retained status online with version and slot; diagnostics round trip; Last Will on kill -9', async () => {
    const wms = await mqttClient(broker.url, { protocolVersion: 5 });
    const got = await collect(wms, 'edge/gw-plain/#');
    const a = startAgent({ dataDir: join(tempDir('agent-'), 'data'), gatewayId: 'gw-plain', config: { mqtt: { url: broker.url } }, env: { EDGE_AGENT_SLOT: 'B' } });
    agents.push(a);
    await waitFor(() => statusOf(got, 'edge/gw-plain/status').includes('online'), { timeoutMs: 10_000, what: 'status online' });
    const online = got.find((m) => m.topic === 'edge/gw-plain/status')!.payload as Record<string, unknown>;
    assert.equal(online.version, '1.0.0');
    assert.equal(online.slot, 'B');
    assert.ok(typeof online.since === 'string' && typeof online.ts === 'string');

    // A late subscriber gets the retained status.
    const late = await mqttClient(broker.url);
    const lateGot = await collect(late, 'edge/gw-plain/status');
    await waitFor(() => lateGot.some((m) => m.retain), { timeoutMs: 5000, what: 'retained status' });
    await late.endAsync();

    await wms.publishAsync('edge/gw-plain/cmd/diagnostics', JSON.stringify({ id: 'diag-1' }), { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === 'edge/gw-plain/res/diag-1' && (m.payload as { status: string }).status === 'successful'), {
      timeoutMs: 10_000,
      what: 'diagnostics successful',
    });
    const res = got.filter((m) => m.topic === 'edge/gw-plain/res/diag-1').map((m) => m.payload as { status: string; result?: Record<string, unknown> });
    assert.deepEqual(res.map((r) => r.status).filter((s, i, arr) => arr.indexOf(s) === i), ['accepted', 'executing', 'successful']);
    const report = res.at(-1)!.result!;
    assert.equal(report.version, '1.0.0');
    assert.equal((report.broker as { connected: boolean }).connected, true);
    assert.equal((report.store as { integrity: string }).integrity, 'ok');

    await a.kill9();
    await waitFor(() => statusOf(got, 'edge/gw-plain/status').at(-1) === 'offline', { timeoutMs: 15_000, what: 'Last Will offline' });
    await wms.endAsync();
  });
});

describe('WMS link over mTLS with an ACL', () => {
  let broker: Broker;
  const agents: AgentProcess[] = [];
  before(async () => {
    broker = await startBroker({ tls: true, acl: true, gatewayId: 'gw-tls' });
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await broker.stop();
  });

  test('the agent connects with its client certificate and works inside its ACL', { skip: !process.env.PATH }, async () => {
    const pki = broker.pki!;
    const wms = await mqttClient(broker.url);
    const got = await collect(wms, 'edge/#');
    const a = startAgent({
      dataDir: join(tempDir('agent-tls-'), 'data'),
      gatewayId: 'gw-tls',
      config: { mqtt: { url: broker.tlsUrl, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } } },
    });
    agents.push(a);
    await agentConnected(a);
    await waitFor(() => statusOf(got, 'edge/gw-tls/status').includes('online'), { timeoutMs: 10_000, what: 'status online over mTLS' });
    await wms.publishAsync('edge/gw-tls/cmd/diagnostics', JSON.stringify({ id: 'tls-1' }), { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === 'edge/gw-tls/res/tls-1' && (m.payload as { status: string }).status === 'successful'), {
      timeoutMs: 10_000,
      what: 'diagnostics over mTLS',
    });
    // The ACL limits this identity to edge/gw-tls/#: a command for another gateway never reaches it.
    await wms.publishAsync('edge/gw-other/cmd/diagnostics', JSON.stringify({ id: 'other-1' }), { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.filter((m) => m.topic.startsWith('edge/gw-other/res/')).length, 0);
    await wms.endAsync();
  });

  test('a client certificate from a foreign CA is refused and the agent says why', async () => {
    const dir = tempDir('foreign-');
    const foreign = createCa({ commonName: 'foreign CA' });
    const cert = issueCert(foreign, { commonName: 'gw-tls', kind: 'client' });
    writeFileSync(join(dir, 'c.pem'), cert.certPem);
    writeFileSync(join(dir, 'c.key'), cert.keyPem, { mode: 0o600 });
    const a = startAgent({
      dataDir: join(dir, 'data'),
      gatewayId: 'gw-tls',
      config: { mqtt: { url: broker.tlsUrl, tls: { ca: broker.pki!.ca, cert: join(dir, 'c.pem'), key: join(dir, 'c.key') }, reconnect: { initialMs: 100, maxMs: 500 } } },
    });
    agents.push(a);
    await waitFor(
      async () => {
        const s = (await a.admin('status').catch(() => undefined)) as { broker?: { lastError?: string; attempts?: number } } | undefined;
        return (s?.broker?.attempts ?? 0) >= 2 && !!s?.broker?.lastError;
      },
      { timeoutMs: 15_000, what: 'failed TLS attempts reported in status' },
    );
    const s = (await a.admin('status')) as { broker: { connected: boolean; lastError: string } };
    assert.equal(s.broker.connected, false);
    assert.ok(s.broker.lastError.length > 0);
    assert.ok(!a.logText().includes('BEGIN'), 'no key or certificate material in the log');
  });

  test('a server certificate from the wrong CA is refused', async () => {
    const dir = tempDir('wrongca-');
    const other = createCa({ commonName: 'some other CA' });
    writeFileSync(join(dir, 'ca.pem'), other.certPem);
    const a = startAgent({
      dataDir: join(dir, 'data'),
      gatewayId: 'gw-tls',
      config: { mqtt: { url: broker.tlsUrl, tls: { ca: join(dir, 'ca.pem'), cert: broker.pki!.clientCert, key: broker.pki!.clientKey }, reconnect: { initialMs: 100, maxMs: 500 } } },
    });
    agents.push(a);
    await waitFor(
      async () => {
        const s = (await a.admin('status').catch(() => undefined)) as { broker?: { lastError?: string } } | undefined;
        return /certificate/i.test(s?.broker?.lastError ?? '');
      },
      { timeoutMs: 15_000, what: 'a certificate error in status' },
    );
  });
});
