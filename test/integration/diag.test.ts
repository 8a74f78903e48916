/**
 * `edge-agent diag` against real things: a real Mosquitto with mTLS, the real agent binary, an
 * A/B install root whose active slot keeps a manifest signed with stock openssl, real files,
 * real sockets. Healthy (exit 0); the `diagnostics` operation over MQTT; a modified slot file;
 * a broker certificate from another CA; an expired device certificate; an unreachable PLC
 * (a TCP port with nothing listening); repeated errors in the log ring; the broker stopped (the
 * failed step is named); the daemon stopped (diag still runs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import type { DiagReport, GroupReport } from '../../health/diag/types.js';
import { SLOT_MANIFEST_DIR } from '../../health/diag/slots.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentConnected, runCli, startAgent, writeAgentConfig, type AgentProcess } from '../helpers/agent.js';
import { makeOtaRoot, makeRelease } from '../helpers/ota-root.js';
import { collect, freePort, mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { listPayload, makePki, manifestJson, stage } from '../fixtures/bundle-kit.js';

const GW = 'gw-diag';

async function diag(configPath: string, extra: string[] = []): Promise<{ code: number | null; report: DiagReport; stderr: string }> {
  const r = await runCli(['diag', '--json', '--config', configPath, ...extra]);
  let report: DiagReport;
  try {
    report = JSON.parse(r.stdout) as DiagReport;
  } catch {
    throw new Error(`diag printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

const groupOf = (r: DiagReport, name: string): GroupReport => {
  const g = r.groups.find((x) => x.name === name);
  assert.ok(g, `group ${name} in ${JSON.stringify(r.groups.map((x) => x.name))}`);
  return g;
};
const check = (r: DiagReport, group: string, name: string): GroupReport['checks'][number] => {
  const c = groupOf(r, group).checks.find((x) => x.name === name);
  assert.ok(c, `check ${group}/${name} in ${JSON.stringify(groupOf(r, group).checks)}`);
  return c;
};
const notOk = (r: DiagReport): string =>
  JSON.stringify(r.groups.flatMap((g) => g.checks.filter((c) => c.status !== 'ok').map((c) => `${g.name}/${c.name}: ${c.status}: ${c.message}`)), null, 1);

/** Keeps the bundle's head members in slot A, as the updater does: manifest.json signed by a code-signing cert. */
function signSlot(slotDir: string, work: string): string {
  const pki = makePki(join(work, 'pki'));
  const files = listPayload(slotDir);
  const head = join(slotDir, SLOT_MANIFEST_DIR);
  mkdirSync(head, { recursive: true });
  stage(head, manifestJson(files, { version: '1.0.0', securityVersion: 0 }), pki.signers.ec);
  const trust = join(work, 'trust.pem');
  writeFileSync(trust, pki.ca.certPem);
  return trust;
}

describe('edge-agent diag', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let root: string;
  let baseConfig: Record<string, unknown>;
  let wms: MqttClient | undefined;

  before(async () => {
    broker = await startBroker({ tls: true, acl: true, gatewayId: GW });
    const work = tempDir('diag-work');
    const release = join(work, 'release');
    makeRelease(release, '1.0.0');
    const ota = makeOtaRoot({ releaseDir: release, version: '1.0.0', config: {} });
    root = ota.root;
    const trust = signSlot(join(root, 'slots', 'A'), work);
    const pki = broker.pki!;
    baseConfig = {
      mqtt: { url: broker.tlsUrl, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } },
      ota: { root, trustAnchors: trust },
      plcBridge: { launch: 'never' },
    };
    agent = startAgent({ dataDir: join(tempDir('diag-agent'), 'data'), gatewayId: GW, config: baseConfig });
    chmodSync(agent.configPath, 0o640);
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await wms?.endAsync(true);
    if (agent.proc.exitCode === null) await agent.stop();
    await broker.stop();
  });

  test('everything healthy: every group ok, exit 0; text output has no colour when not on a terminal', async () => {
    const { code, report } = await diag(agent.configPath);
    assert.equal(code, 0, notOk(report));
    assert.deepEqual(report.groups.map((g) => g.name), ['configuration', 'identity', 'connectivity', 'time', 'storage', 'slots', 'components', 'plc', 'maintenance', 'logs']);
    assert.deepEqual([report.overall, report.daemon, report.source, report.summary.failure, report.summary.warning], ['ok', 'running', 'cli', 0, 0]);
    assert.equal(check(report, 'connectivity', 'mqtt').status, 'ok');
    assert.equal(check(report, 'connectivity', 'tls').status, 'ok');
    assert.equal(check(report, 'connectivity', 'agent-link').status, 'ok');
    assert.match(check(report, 'slots', 'files').message, /all \d+ entries match the manifest of 1\.0\.0/);
    assert.match(check(report, 'slots', 'manifest').message, /is signed by/);
    assert.match(check(report, 'identity', 'expiry').message, /valid for 36\d more days/);
    assert.equal(check(report, 'components', 'daemon').status, 'ok');
    assert.equal(check(report, 'storage', 'store').status, 'ok');
    const text = await runCli(['diag', '--config', agent.configPath]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^connectivity {2}ok/m);
    assert.match(text.stdout, /all good: \d+ ok, 0 warnings, 0 failures/);
    assert.doesNotMatch(text.stdout, /\x1b\[/);
  });

  test('the diagnostics operation over MQTT returns the report on ~/res/{id}', async () => {
    wms = await mqttClient(broker.url);
    const got = await collect(wms, `edge/${GW}/res/+`);
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'diag-op-1' }), { qos: 1 });
    await waitFor(() => got.some((m) => (m.payload as { id?: string; status?: string }).id === 'diag-op-1' && (m.payload as { status: string }).status === 'successful'), {
      timeoutMs: 20_000,
      what: `diagnostics successful\n${agent.logText().slice(-2000)}`,
    });
    const res = got.filter((m) => m.topic === `edge/${GW}/res/diag-op-1`).map((m) => m.payload as { status: string; result?: DiagReport & Record<string, unknown> });
    const result = res.at(-1)!.result!;
    assert.equal(result.source, 'daemon');
    assert.equal(result.overall, 'ok', notOk(result));
    assert.equal(result.groups.length, 10);
    assert.equal(check(result, 'connectivity', 'mqtt').status, 'ok');
    // The first version's fields are still there, first.
    assert.deepEqual(Object.keys(result).slice(0, 2), ['daemon', 'pid']);
    assert.equal((result.store as { integrity: string }).integrity, 'ok');
  });

  test('a file in the active slot modified: slots fails naming the file, exit 2', async () => {
    const file = join(root, 'slots', 'A', 'dist', 'lib', 'version.js');
    const before = readFileSync(file);
    writeFileSync(file, Buffer.concat([before, Buffer.from('\n// changed on the device\n')]));
    try {
      const { code, report } = await diag(agent.configPath, ['--only', 'slots']);
      assert.equal(code, 2);
      const files = check(report, 'slots', 'files');
      assert.equal(files.status, 'failure');
      assert.match(files.message, /changed: dist\/lib\/version\.js/);
      assert.ok(files.recommendation);
    } finally {
      writeFileSync(file, before);
    }
  });

  test('a broker certificate from another CA: the tls step fails and says why', async () => {
    const dir = tempDir('diag-wrong-ca');
    const other = join(dir, 'other-ca.pem');
    writeFileSync(other, createCa({ commonName: 'some other CA' }).certPem);
    const pki = broker.pki!;
    const cfg = writeAgentConfig(join(dir, 'data'), GW, { ...baseConfig, mqtt: { url: broker.tlsUrl, tls: { ca: other, cert: pki.clientCert, key: pki.clientKey } } });
    const { code, report } = await diag(cfg, ['--only', 'connectivity']);
    assert.equal(code, 2);
    const tls = check(report, 'connectivity', 'tls');
    assert.equal(tls.status, 'failure');
    assert.match(tls.message, /TLS handshake with localhost:\d+ failed/);
    assert.match(tls.recommendation ?? '', /not signed by the CA in mqtt\.tls\.ca/);
    assert.equal(groupOf(report, 'connectivity').checks.some((c) => c.name === 'mqtt'), false, 'no MQTT step after a failed handshake');
  });

  test('an expired device certificate: identity fails with the expiry date', async () => {
    const dir = tempDir('diag-expired');
    const ca = createCa({ commonName: 'device CA' });
    const expired = issueCert(ca, { commonName: GW, kind: 'client', notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    writeFileSync(join(dir, 'device.pem'), expired.certPem);
    writeFileSync(join(dir, 'device.key'), expired.keyPem, { mode: 0o600 });
    const cfg = writeAgentConfig(join(dir, 'data'), GW, { ...baseConfig, mqtt: { url: broker.tlsUrl, tls: { ca: broker.pki!.ca, cert: join(dir, 'device.pem'), key: join(dir, 'device.key') } } });
    const { code, report } = await diag(cfg, ['--only', 'identity']);
    assert.equal(code, 2);
    assert.equal(check(report, 'identity', 'key').status, 'ok');
    const expiry = check(report, 'identity', 'expiry');
    assert.equal(expiry.status, 'failure');
    assert.match(expiry.message, /the device certificate expired on \d{4}-/);
    assert.ok(!JSON.stringify(report).includes('PRIVATE KEY'), 'the key is never in the report');
  });

  test('a PLC unreachable: the device check names it, host and port', async () => {
    const dir = tempDir('diag-plc');
    const port = await freePort(); // nothing listens there
    const bridgeConfig = join(dir, 'plc-bridge.yaml');
    writeFileSync(bridgeConfig, stringify({ gatewayId: GW, dataDir: join(dir, 'bridge'), devices: [{ name: 'press1', host: '127.0.0.1', port, unitId: 1, groups: [] }] }));
    const cfg = writeAgentConfig(join(dir, 'data'), GW, { ...baseConfig, plcBridge: { config: bridgeConfig, launch: 'never' } });
    const { code, report } = await diag(cfg, ['--only', 'plc']);
    assert.equal(code, 2);
    const press = check(report, 'plc', 'device:press1');
    assert.equal(press.status, 'failure');
    assert.match(press.message, new RegExp(`press1 is unreachable at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    assert.equal(check(report, 'plc', 'bridge').status, 'failure', 'no bridge answers either');
  });

  test('repeated errors in the log ring are grouped by component and code with counts and first/last seen', async () => {
    const dir = tempDir('diag-logs');
    const cfg = writeAgentConfig(join(dir, 'data'), GW, baseConfig);
    mkdirSync(join(dir, 'data', 'logs'), { recursive: true });
    const t0 = Date.now() - 10 * 60_000;
    const line = (s: number, o: Record<string, unknown>): string => JSON.stringify({ time: new Date(t0 + s * 1000).toISOString(), pid: 1, name: 'edge-agent', ...o }) + '\n';
    // The older file of the ring, then the current one: a group spans both.
    writeFileSync(join(dir, 'data', 'logs', 'agent.log.1'), line(0, { level: 50, component: 'ota', code: 'download-failed', msg: 'download failed' }) + line(1, { level: 30, msg: 'info' }));
    for (let i = 1; i <= 4; i++) appendFileSync(join(dir, 'data', 'logs', 'agent.log'), line(10 * i, { level: 50, component: 'ota', code: 'download-failed', msg: `download failed ${i}` }));
    appendFileSync(join(dir, 'data', 'logs', 'agent.log'), line(60, { level: 40, component: 'outbox', code: 'outbox-full', msg: 'dropping telemetry' }));
    const { code, report } = await diag(cfg, ['--only', 'logs']);
    assert.equal(code, 1, 'errors in the last hour are a warning');
    const recent = check(report, 'logs', 'recent');
    assert.equal(recent.status, 'warning');
    const groups = (recent.details as { groups: { component: string; code: string; level: string; count: number; firstSeen: string; lastSeen: string; message: string }[] }).groups;
    assert.deepEqual(groups, [
      { component: 'ota', code: 'download-failed', level: 'error', count: 5, firstSeen: new Date(t0).toISOString(), lastSeen: new Date(t0 + 40_000).toISOString(), message: 'download failed 4' },
      { component: 'outbox', code: 'outbox-full', level: 'warn', count: 1, firstSeen: new Date(t0 + 60_000).toISOString(), lastSeen: new Date(t0 + 60_000).toISOString(), message: 'dropping telemetry' },
    ]);
    const text = await runCli(['diag', '--only', 'logs', '--config', cfg]);
    assert.match(text.stdout, /error +5x {2}ota\/download-failed/);
  });

  test('the broker stopped: connectivity fails at the tcp step, exit 2; the agent\'s own errors are grouped', async () => {
    await broker.stop();
    const { code, report } = await diag(agent.configPath);
    assert.equal(code, 2);
    const tcp = check(report, 'connectivity', 'tcp');
    assert.equal(tcp.status, 'failure');
    assert.match(tcp.message, /cannot connect to localhost:\d+: connect ECONNREFUSED/);
    assert.ok(tcp.recommendation);
    assert.equal(check(report, 'connectivity', 'agent-link').status, 'failure');
    // The agent logs each failed reconnect at warn; they end up in one group.
    await waitFor(
      async () => {
        const r = (await diag(agent.configPath, ['--only', 'logs'])).report;
        const groups = (check(r, 'logs', 'recent').details as { groups: { component: string; count: number }[] }).groups;
        return (groups.find((g) => g.component === 'wms-link')?.count ?? 0) >= 2;
      },
      { timeoutMs: 30_000, intervalMs: 1000, what: `two wms-link warnings grouped\n${agent.logText().slice(-2000)}` },
    );
  });

  test('the daemon stopped: diag still runs every group and says the daemon is not running', async () => {
    await agent.stop();
    const t0 = Date.now();
    const { code, report } = await diag(agent.configPath);
    assert.ok(Date.now() - t0 < 30_000);
    assert.equal(code, 2);
    assert.equal(report.daemon, 'not running');
    assert.equal(report.groups.length, 10);
    const daemon = check(report, 'components', 'daemon');
    assert.equal(daemon.status, 'failure');
    assert.match(daemon.message, /the daemon is not running \(last started .*, stopped /);
    assert.equal(check(report, 'storage', 'store').status, 'ok', 'the store is checked read-only');
    assert.equal(check(report, 'slots', 'files').status, 'ok');
    assert.equal(check(report, 'configuration', 'valid').status, 'ok');
    assert.equal(check(report, 'connectivity', 'agent-link').skipped, true);
  });
});
