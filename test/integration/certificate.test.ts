/**
 * The `certificate` operation end to end (docs/certificates.md) with a real Mosquitto that
 * requires client certificates (require_certificate, use_identity_as_username, a CRL), a test CA
 * (certs/devca.ts) signing with OpenSSL's command line as a CA would, and a real agent: CSR,
 * signature, install, reconnect with the new certificate; a certificate of another CA or for
 * another key refused before anything is swapped; a revoked one refused by the broker, the old
 * one kept; and the renewal event of a short-lived certificate at 80 % of its lifetime.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { aclFile, startBroker, type Broker } from '../helpers/broker.js';
import { mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { wmsFor, type Wms } from '../helpers/config-apply.js';
import { createCa, issueCert, type CertAndKey } from '../../certs/devca.js';
import { renewalDue } from '../../certs/client-cert.js';
import type { AuditEntry } from '../../core/audit.js';

const GW = 'gw-cert';

/** A CA on disk that signs CSRs with `openssl x509 -req` and revokes with `openssl ca`. */
function caOnDisk(ca: CertAndKey, dir: string): { sign(csr: string, cn?: string): string; revoke(certPem: string): void; crl(): string } {
  mkdirSync(dir, { recursive: true });
  const caCert = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  writeFileSync(caCert, ca.certPem);
  writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'crlnumber'), '01\n');
  const cnf = join(dir, 'openssl.cnf');
  writeFileSync(cnf, `[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ${dir}/index.txt\ncrlnumber = ${dir}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n`);
  const ext = join(dir, 'client.ext');
  writeFileSync(ext, 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n');
  let n = 0;
  const crlPath = join(dir, 'crl.pem');
  const gencrl = (): void => void execFileSync('openssl', ['ca', '-config', cnf, '-gencrl', '-keyfile', caKey, '-cert', caCert, '-out', crlPath], { stdio: 'pipe' });
  gencrl();
  return {
    // `cn`: the CA puts another subject in the certificate than the CSR asked for (OpenSSL 3 x509 -subj).
    sign: (csr, cn) => {
      const i = ++n;
      writeFileSync(join(dir, `${i}.csr`), csr);
      execFileSync('openssl', ['x509', '-req', '-in', join(dir, `${i}.csr`), '-CA', caCert, '-CAkey', caKey, '-set_serial', String(1000 + i), '-days', '30', '-sha256', '-extfile', ext, ...(cn ? ['-subj', `/CN=${cn}`] : []), '-out', join(dir, `${i}.pem`)], { stdio: 'pipe' });
      return readFileSync(join(dir, `${i}.pem`), 'utf8');
    },
    revoke: (certPem) => {
      const p = join(dir, `revoke-${++n}.pem`);
      writeFileSync(p, certPem);
      execFileSync('openssl', ['ca', '-config', cnf, '-revoke', p, '-keyfile', caKey, '-cert', caCert], { stdio: 'pipe' });
      gencrl();
    },
    crl: () => crlPath,
  };
}

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();

describe('the gateway certificate with a broker that requires client certificates', () => {
  let broker: Broker;
  let client: MqttClient;
  let wms: Wms;
  let agent: AgentProcess;
  let ca: ReturnType<typeof caOnDisk>;
  const dir = tempDir('cert-it-');
  const dataDir = join(dir, 'data');
  const certPath = join(dir, 'tls', 'client.pem');
  const keyPath = join(dir, 'tls', 'client.key');
  let n = 0;

  const cmd = async (params: Record<string, unknown>): Promise<{ status: string; reason?: { code: string; message: string }; result?: Record<string, unknown> }> => {
    const id = `cert-${++n}`;
    await wms.send('certificate', id, params);
    return (await wms.outcome(id, 60_000));
  };

  before(async () => {
    broker = await startBroker({ tls: true, gatewayId: GW });
    ca = caOnDisk(broker.pki!.authority, join(dir, 'ca'));
    client = await mqttClient(broker.url);
    wms = await wmsFor(client, GW);
    mkdirSync(join(dir, 'tls'), { recursive: true });
    copyFileSync(broker.pki!.clientCert, certPath);
    copyFileSync(broker.pki!.clientKey, keyPath);
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.tlsUrl, tls: { ca: broker.pki!.ca, cert: certPath, key: keyPath } } } });
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await agent.stop().catch(() => undefined);
    await client.endAsync();
    await broker.stop();
  });

  test('CSR made on the gateway, signed by the CA, installed after a trial connection; the agent reconnects with it; the previous pair kept', async () => {
    const before = readFileSync(certPath, 'utf8');
    const s0 = await cmd({ action: 'status' });
    assert.equal(s0.status, 'successful');
    assert.equal(s0.result?.fingerprint, fingerprint(before));

    const c = await cmd({ action: 'csr' });
    assert.equal(c.status, 'successful', JSON.stringify(c));
    const csr = c.result?.csr as string;
    const subject = execFileSync('openssl', ['req', '-verify', '-noout', '-subject'], { input: csr, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
    assert.match(subject, new RegExp(`CN ?= ?${GW}`));
    assert.equal(statSync(join(dataDir, 'certs', 'pending.key')).mode & 0o777, 0o600, 'the new key is 0600');
    assert.ok(!JSON.stringify(wms.results).includes('PRIVATE KEY'), 'the key never leaves the gateway');

    // Another CA's certificate for the same key, and the right CA's for another key: refused, nothing swapped.
    const other = createCa({ commonName: 'some other CA' });
    const foreign = caOnDisk(other, join(dir, 'other-ca')).sign(csr);
    const u = await cmd({ action: 'install', cert: foreign });
    assert.equal(u.status, 'failed');
    assert.equal(u.reason?.code, 'untrusted');
    const wrongKey = issueCert(broker.pki!.authority, { commonName: GW, kind: 'client' });
    const k = await cmd({ action: 'install', cert: wrongKey.certPem });
    assert.equal(k.reason?.code, 'key-mismatch');
    assert.equal(readFileSync(certPath, 'utf8'), before, 'nothing was swapped');

    const signed = ca.sign(csr);
    const i = await cmd({ action: 'install', cert: signed });
    assert.equal(i.status, 'successful', JSON.stringify(i));
    assert.equal(i.result?.fingerprint, fingerprint(signed));
    assert.equal(readFileSync(certPath, 'utf8'), signed);
    assert.equal(readFileSync(`${certPath}.previous`, 'utf8'), before, 'the previous certificate is kept');
    assert.ok(existsSync(`${keyPath}.previous`));
    await agentConnected(agent, 20_000);
    const s1 = await cmd({ action: 'status' });
    assert.equal(s1.result?.fingerprint, fingerprint(signed));
    assert.equal(s1.result?.pendingCsr, undefined);
  });

  test('a certificate the broker refuses (revoked, in its CRL) is not swapped in: the old one stays in use', async () => {
    const before = readFileSync(certPath, 'utf8');
    const c = await cmd({ action: 'csr' });
    const signed = ca.sign(c.result?.csr as string);
    ca.revoke(signed);
    appendFileSync(join(broker.dir, 'mosquitto.conf'), `crlfile ${ca.crl()}\n`);
    await broker.restart();
    await agentConnected(agent, 30_000);
    const r = await cmd({ action: 'install', cert: signed });
    assert.equal(r.status, 'failed', JSON.stringify(r));
    assert.equal(r.reason?.code, 'broker-refused');
    assert.equal(readFileSync(certPath, 'utf8'), before, 'the old certificate stays');
    await agentConnected(agent, 20_000);

    const audit = await runCli(['audit', '--json', '--config', agent.configPath]);
    const entries = JSON.parse(audit.stdout) as AuditEntry[];
    const actions = entries.filter((e) => e.action.startsWith('certificate-')).map((e) => `${e.action}:${e.outcome}`);
    assert.deepEqual(actions, ['certificate-csr:created', 'certificate-install:refused/untrusted', 'certificate-install:refused/key-mismatch', 'certificate-install:installed', 'certificate-csr:created', 'certificate-install:refused/broker-refused']);
    assert.ok(!audit.stdout.includes('PRIVATE KEY'));
  });

  test('a certificate for another CN (a broker with use_identity_as_username would take it for another client) is refused before anything is swapped', async () => {
    // Under this broker's ACL (`pattern readwrite edge/%u/#`) such a certificate connects, and
    // Mosquitto even grants its subscription to this gateway's command topic: the agent would
    // swap it in and go deaf. So install checks the CN itself (certs/client-cert.ts).
    const before = readFileSync(certPath, 'utf8');
    const acl = join(dir, 'acl');
    writeFileSync(acl, aclFile('edge'));
    appendFileSync(join(broker.dir, 'mosquitto.conf'), `acl_file ${acl}\n`);
    await broker.restart();
    await agentConnected(agent, 30_000);
    const c = await cmd({ action: 'csr' });
    const other = ca.sign(c.result?.csr as string, 'gw-someone-else');
    assert.match(new X509Certificate(other).subject, /CN=gw-someone-else/);
    const r = await cmd({ action: 'install', cert: other });
    assert.equal(r.status, 'failed', JSON.stringify(r));
    assert.equal(r.reason?.code, 'identity-mismatch');
    assert.match(r.reason?.message ?? '', /CN=gw-someone-else/);
    assert.equal(readFileSync(certPath, 'utf8'), before, 'the old certificate stays');
    // The gateway's own identity still works under the ACL: the same key with its own CN installs.
    const own = await cmd({ action: 'install', cert: ca.sign(c.result?.csr as string) });
    assert.equal(own.status, 'successful', JSON.stringify(own));
    await agentConnected(agent, 20_000);
    assert.equal((await cmd({ action: 'status' })).status, 'successful');
  });

  test('edge-agent cert status, csr and install FILE do the same from the gateway', async () => {
    const args = ['--config', agent.configPath];
    const st = await runCli(['cert', 'status', ...args]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`fingerprint +${fingerprint(readFileSync(certPath, 'utf8'))}`));
    const csr = await runCli(['cert', 'csr', ...args]);
    assert.equal(csr.code, 0, csr.stderr);
    assert.match(csr.stdout, /^-----BEGIN CERTIFICATE REQUEST-----/);
    const file = join(dir, 'cli-signed.pem');
    writeFileSync(file, ca.sign(csr.stdout));
    const inst = await runCli(['cert', 'install', file, ...args]);
    assert.equal(inst.code, 0, inst.stdout + inst.stderr);
    assert.match(inst.stdout, /^installed: fingerprint /);
    assert.equal(readFileSync(certPath, 'utf8'), readFileSync(file, 'utf8'));
    await agentConnected(agent, 20_000);
    const again = await runCli(['cert', 'install', file, ...args]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no-pending-key/);
    assert.equal((await runCli(['cert', '--help'])).code, 0);
    assert.equal((await runCli(['cert', 'install', ...args])).code, 64);
  });
});

describe('certificate renewal on time', () => {
  let broker: Broker;
  let client: MqttClient;
  let agent: AgentProcess;

  after(async () => {
    await agent?.stop().catch(() => undefined);
    await client?.endAsync();
    await broker?.stop();
  });

  test('a short-lived certificate: certificate-renewal with a CSR at 80 % of its lifetime, and the expiry alarm in status', async () => {
    broker = await startBroker({ tls: true, gatewayId: GW });
    client = await mqttClient(broker.url);
    const wms = await wmsFor(client, GW);
    const dir = tempDir('cert-renew-');
    const now = Date.now();
    const notBefore = new Date(now - 50_000);
    const notAfter = new Date(now + 40_000);
    const short = issueCert(broker.pki!.authority, { commonName: GW, kind: 'client', notBefore, notAfter });
    mkdirSync(join(dir, 'tls'), { recursive: true });
    writeFileSync(join(dir, 'tls', 'c.pem'), short.certPem);
    writeFileSync(join(dir, 'tls', 'c.key'), short.keyPem, { mode: 0o600 });
    const due = renewalDue(Math.floor(notBefore.getTime() / 1000) * 1000, Math.floor(notAfter.getTime() / 1000) * 1000, 0.8, 0);
    agent = startAgent({
      dataDir: join(dir, 'data'),
      gatewayId: GW,
      config: { mqtt: { url: broker.tlsUrl, tls: { ca: broker.pki!.ca, cert: join(dir, 'tls', 'c.pem'), key: join(dir, 'tls', 'c.key') } }, certificates: { checkIntervalMs: 250, renewBeforeDays: 0 } },
    });
    await agentConnected(agent, 20_000);
    const renewals = (): { ts: string; csr: string; severity: string; due: string }[] => wms.events.map((e) => e.payload as { code?: string; ts: string; csr: string; severity: string; due: string }).filter((p) => p.code === 'certificate-renewal');
    await waitFor(() => renewals().length > 0, { timeoutMs: 30_000, what: 'the certificate-renewal event' });
    const ev = renewals()[0]!;
    assert.ok(Date.parse(ev.ts) >= due, `sent at ${ev.ts}, not before 80 % of the lifetime (${new Date(due).toISOString()})`);
    assert.equal(Date.parse(ev.due), due);
    assert.equal(ev.severity, 'critical', 'less than 7 days left');
    const subject = execFileSync('openssl', ['req', '-verify', '-noout', '-subject'], { input: ev.csr, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
    assert.match(subject, new RegExp(`CN ?= ?${GW}`));
    const status = (await agent.admin('status')) as { alerts: { code: string }[] };
    assert.ok(status.alerts.some((a) => a.code === 'certificate-expiring'), JSON.stringify(status.alerts));
    // Not repeated within repeatMs (a day): one event however many checks ran.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(renewals().length, 1);
  });
});
