/**
 * The fleet broker configuration (deploy/mosquitto/fleet.conf and fleet.acl) on a real
 * Mosquitto, with test certificates from certs/devca.ts: the shipped files are used as they
 * are, only their paths and port moved into a temp dir. Gateway A's certificate can neither
 * subscribe to nor publish on gateway B's topics; the WMS account reads every gateway's results
 * through a shared subscription; the real agent and PLC bridge work under it.
 *
 * An absence is shown by ordering, not by waiting: after the forbidden attempt, a message on a
 * topic the same client may use is sent, and everything the broker would have delivered from
 * the forbidden one comes before it (MQTT 5 section 4.6, one publisher's messages in order).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { findMosquitto } from '../helpers/broker.js';
import { REPO, startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgeSocketOf, onePlc, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { rpcRequest } from '../../lib/rpc.js';
import { canConnect, collect, freePort, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';

const ETC = '/etc/mosquitto/fleet/';
let dir: string;
let port: number;
let url: string;
let broker: ChildProcess | undefined;
const brokerLog: string[] = [];
const certs = new Map<string, { cert: string; key: string }>();
let caPath: string;
const clients: MqttClient[] = [];
let agent: AgentProcess | undefined;
let bridge: BridgeProcess | undefined;

before(async () => {
  const bin = findMosquitto();
  assert.ok(bin, 'mosquitto is installed');
  dir = tempDir('fleet-acl');
  const ca = createCa({ commonName: 'fleet test CA' });
  caPath = join(dir, 'ca.pem');
  writeFileSync(caPath, ca.certPem);
  const server = issueCert(ca, { commonName: 'localhost', kind: 'server' });
  writeFileSync(join(dir, 'broker.pem'), server.certPem);
  writeFileSync(join(dir, 'broker.key'), server.keyPem, { mode: 0o600 });
  for (const cn of ['gw-a', 'gw-b', 'wms']) {
    const c = issueCert(ca, { commonName: cn, kind: 'client' });
    const paths = { cert: join(dir, `${cn}.pem`), key: join(dir, `${cn}.key`) };
    writeFileSync(paths.cert, c.certPem);
    writeFileSync(paths.key, c.keyPem, { mode: 0o600 });
    certs.set(cn, paths);
  }
  port = await freePort();
  url = `mqtts://localhost:${port}`;
  // The shipped files, with their paths and port moved here.
  const conf = readFileSync(join(REPO, 'deploy', 'mosquitto', 'fleet.conf'), 'utf8')
    .replaceAll(ETC, `${dir}/`)
    .replace('persistence_location /var/lib/mosquitto/', `persistence_location ${dir}/data/`)
    .replace('log_dest syslog', 'log_dest stderr')
    .replace(/^listener 8883$/m, `listener ${port} 127.0.0.1`);
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'fleet.acl'), readFileSync(join(REPO, 'deploy', 'mosquitto', 'fleet.acl')));
  // As root, mosquitto would switch to user "mosquitto", who cannot read the temp dir.
  writeFileSync(join(dir, 'fleet.conf'), (process.getuid?.() === 0 ? 'user root\n' : '') + conf);
  broker = spawn(bin, ['-c', join(dir, 'fleet.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  broker.stderr?.setEncoding('utf8').on('data', (s: string) => brokerLog.push(s));
  await waitFor(() => canConnect(port), { what: `mosquitto on ${port}: ${brokerLog.join('')}`, timeoutMs: 10_000 });
});

after(async () => {
  await bridge?.stop();
  await agent?.stop();
  for (const c of clients) await c.endAsync(true);
  broker?.kill('SIGTERM');
});

async function as(cn: string): Promise<MqttClient> {
  const p = certs.get(cn)!;
  const c = await mqttClient(url, { clientId: `${cn}-${clients.length}`, protocolVersion: 5, ca: readFileSync(caPath), cert: readFileSync(p.cert), key: readFileSync(p.key), rejectUnauthorized: true });
  clients.push(c);
  return c;
}

/** Waits for `marker` in `got`; returns what came before it. */
async function upTo(got: Received[], marker: string): Promise<Received[]> {
  await waitFor(() => got.some((m) => m.topic === marker), { what: `${marker} delivered`, timeoutMs: 10_000, intervalMs: 10 });
  return got.slice(0, got.findIndex((m) => m.topic === marker));
}

test("gateway A's certificate can neither subscribe to nor publish on gateway B's topics", async () => {
  const a = await as('gw-a');
  const b = await as('gw-b');
  const wms = await as('wms');
  // A subscribes to B's subtree: refused, or at least nothing of B's reaches it.
  const granted = await a.subscribeAsync('edge/gw-b/#', { qos: 1 });
  const aGot = await collect(a, 'edge/#');
  await b.publishAsync('edge/gw-b/res/secret', JSON.stringify({ id: 'secret' }), { qos: 1, retain: true });
  await b.publishAsync('edge/gw-b/events', 'private', { qos: 1 });
  await a.publishAsync('edge/gw-a/marker-1', 'x', { qos: 1 });
  assert.deepEqual((await upTo(aGot, 'edge/gw-a/marker-1')).map((m) => m.topic), [], `A received B's messages; its subscription was granted ${JSON.stringify(granted)}`);
  // A publishes a command on B's topic: B (and the WMS) never get it.
  const bGot = await collect(b, 'edge/gw-b/#');
  const wmsGot = await collect(wms, 'edge/#');
  await a.publishAsync('edge/gw-b/cmd/update', JSON.stringify({ id: 'forged', params: { url: 'http://evil/' } }), { qos: 1 }).catch(() => undefined);
  await a.publishAsync('edge/gw-a/marker-2', 'x', { qos: 1 });
  const wmsBefore = await upTo(wmsGot, 'edge/gw-a/marker-2');
  assert.ok(!wmsBefore.some((m) => m.topic === 'edge/gw-b/cmd/update'), 'the forged command reached the broker');
  await b.publishAsync('edge/gw-b/marker-3', 'x', { qos: 1 });
  assert.ok(!(await upTo(bGot, 'edge/gw-b/marker-3')).some((m) => m.topic === 'edge/gw-b/cmd/update'), 'B received the forged command');
  // The WMS account reads every gateway's topics (B's retained result came on its subscribe).
  assert.ok(wmsGot.some((m) => m.topic === 'edge/gw-b/res/secret' && m.retain), JSON.stringify(wmsGot.map((m) => m.topic)));
});

test('the agent and the PLC bridge work under the fleet ACL; the WMS reads results with a shared subscription', async () => {
  const wms = await as('wms');
  const shared: Received[] = [];
  wms.on('message', (topic, payload, packet) => {
    if (topic.startsWith('edge/gw-a/res/')) shared.push({ topic, payload: JSON.parse(payload.toString()) as unknown, retain: packet.retain });
  });
  const granted = await wms.subscribeAsync('$share/wms/edge/+/res/+', { qos: 1 });
  assert.ok(granted.every((g) => g.qos < 0x80), JSON.stringify(granted));
  const statuses = await collect(wms, 'edge/gw-a/+/status');
  const agentStatus = await collect(wms, 'edge/gw-a/status');
  const tls = { ca: caPath, cert: certs.get('gw-a')!.cert, key: certs.get('gw-a')!.key };
  agent = startAgent({ dataDir: join(tempDir('fleet-agent'), 'data'), gatewayId: 'gw-a', config: { mqtt: { url, tls, reconnect: { initialMs: 100, maxMs: 1000 } } } });
  const bridgeDir = tempDir('fleet-bridge');
  bridge = startBridge(writeBridgeConfig(bridgeDir, { ...onePlc(url, await freePort(), [{ name: 'g', intervalMs: 1000, tags: [{ name: 'r0', area: 'holding', address: 0, type: 'uint16' }] }]), gatewayId: 'gw-a', mqtt: { url, tls, reconnect: { initialMs: 100, maxMs: 1000 } } }));
  await waitFor(() => agentStatus.some((m) => (m.payload as { state?: string }).state === 'online'), { what: `the agent online\n${agent.logText().slice(-2000)}`, timeoutMs: 20_000 });
  await waitFor(() => statuses.some((m) => m.topic === 'edge/gw-a/plc/status' && (m.payload as { state?: string }).state === 'online'), { what: `the bridge online\n${bridge.logText().slice(-2000)}`, timeoutMs: 20_000 });
  // A command in, its result out through the shared subscription.
  for (let n = 1; ; n++) {
    await wms.publishAsync('edge/gw-a/cmd/no-such-op', JSON.stringify({ id: `acl-${n}` }), { qos: 1 });
    try {
      await waitFor(() => shared.some((m) => (m.payload as { id?: string }).id === `acl-${n}`), { what: `the result of acl-${n}`, timeoutMs: 1000 });
      break;
    } catch (err) {
      if (n >= 20) throw err;
    }
  }
  const s = (await rpcRequest(bridgeSocketOf(bridgeDir), 'status')) as { mqtt?: { connected?: boolean } };
  assert.equal(s.mqtt?.connected, true);
  assert.equal(((await agent.admin('status')) as { broker?: { connected?: boolean } }).broker?.connected, true);
});
