/**
 * The support bundle with a known secret in the configuration: `edge-agent support-bundle`
 * (daemon running, real Mosquitto, real logs in the ring) writes a .tar.gz with the report,
 * logs, redacted configuration, slots and history, and the secret is in none of its bytes; the
 * `diagnostics` operation with `params.upload` PUTs the same kind of bundle to a real HTTP
 * server and reports the outcome without the URL's query or the request headers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { makeOtaRoot, makeRelease } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, waitFor } from '../helpers/util.js';

const GW = 'gw-bundle';
const SECRET = 'Zq7-very-secret-Passw0rd';
const TOKEN = 'Bearer upload-token-4711';

/** Every file of a directory tree, recursively. */
function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? allFiles(join(dir, d.name)) : [join(dir, d.name)]));
}

function assertNoSecret(dir: string): void {
  const files = allFiles(dir);
  assert.ok(files.length > 5, `files in the bundle: ${files.join(', ')}`);
  for (const f of files) {
    const bytes = readFileSync(f);
    assert.equal(bytes.includes(SECRET), false, `${f} holds the secret`);
    assert.equal(bytes.includes(encodeURIComponent(SECRET)), false, `${f} holds the URL-encoded secret`);
    assert.equal(bytes.includes('upload-token-4711'), false, `${f} holds the upload token`);
  }
}

describe('support bundle', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let http: Server;
  let httpUrl: string;
  const puts: { url: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];
  let wms: MqttClient | undefined;

  before(async () => {
    broker = await startBroker();
    const work = tempDir('bundle-work');
    makeRelease(join(work, 'release'), '1.0.0');
    const ota = makeOtaRoot({ releaseDir: join(work, 'release'), version: '1.0.0', config: {} });
    // The secret is the broker password (anonymous Mosquitto accepts any) and also a URL password.
    agent = startAgent({
      dataDir: join(tempDir('bundle-agent'), 'data'),
      gatewayId: GW,
      config: { mqtt: { url: broker.url.replace('mqtt://', `mqtt://gw:${SECRET}@`), username: 'gw', password: SECRET }, ota: { root: ota.root }, plcBridge: { launch: 'never' } },
    });
    await agentConnected(agent, 20_000);
    http = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        puts.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(req.method === 'PUT' ? 201 : 405).end();
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  after(async () => {
    await wms?.endAsync(true);
    if (agent.proc.exitCode === null) await agent.stop();
    await broker.stop();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  });

  test('edge-agent support-bundle: report, logs, redacted config, slots and history; the secret is nowhere', async () => {
    const out = join(tempDir('bundle-out'), 'support.tar.gz');
    const r = await runCli(['support-bundle', '-o', out, '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout) as { path: string; bytes: number; files: string[] };
    assert.equal(printed.path, out);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    for (const f of ['diagnostics.json', 'diagnostics.txt', 'config/config.yaml', 'config/effective.json', 'status.json', 'logs/agent.log', 'slots/slots.json', 'store/commands.json', 'store/audit.json', 'README.txt']) {
      assert.ok(printed.files.includes(f), `${f} in ${printed.files.join(', ')}`);
    }
    const dir = tempDir('bundle-x');
    execFileSync('tar', ['-xzf', out, '-C', dir]);
    assertNoSecret(dir);
    // The raw archive bytes too (file names, headers), after gunzip.
    assert.equal(gunzipSync(readFileSync(out)).includes(SECRET), false);
    const cfg = readFileSync(join(dir, 'config', 'config.yaml'), 'utf8');
    assert.match(cfg, /password: "?\[redacted\]"?/);
    assert.match(cfg, /url: mqtt:\/\/\[redacted\]@127\.0\.0\.1:\d+/);
    const audit = JSON.parse(readFileSync(join(dir, 'store', 'audit.json'), 'utf8')) as { verify: { ok: boolean }; entries: unknown[] };
    assert.equal(audit.verify.ok, true);
    assert.ok(Array.isArray(audit.entries));
    const report = JSON.parse(readFileSync(join(dir, 'diagnostics.json'), 'utf8')) as { groups: unknown[]; daemon: string };
    assert.equal(report.groups.length, 10);
    assert.equal(report.daemon, 'running');
    assert.match(readFileSync(join(dir, 'logs', 'agent.log'), 'utf8'), /agent ready/);
    assert.equal((JSON.parse(readFileSync(join(dir, 'slots', 'slots.json'), 'utf8')) as { active: string }).active, 'A');
  });

  test('the diagnostics operation with params.upload PUTs the bundle and reports the outcome', async () => {
    wms = await mqttClient(broker.url);
    const got = await collect(wms, `edge/${GW}/res/+`);
    const url = `${httpUrl}/bundles/${GW}.tar.gz?X-Signature=sig-abc123`;
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'up-1', params: { upload: { url, headers: { Authorization: TOKEN } } } }), { qos: 1 });
    await waitFor(() => got.some((m) => (m.payload as { id?: string; status?: string }).id === 'up-1' && ['successful', 'failed'].includes((m.payload as { status: string }).status)), {
      timeoutMs: 30_000,
      what: `diagnostics with upload finished\n${agent.logText().slice(-2000)}`,
    });
    const final = got.filter((m) => m.topic === `edge/${GW}/res/up-1`).at(-1)!.payload as { status: string; result: { upload: Record<string, unknown>; overall: string } };
    assert.equal(final.status, 'successful', JSON.stringify(final));
    assert.deepEqual(
      { ...final.result.upload, durationMs: 0, bytes: 0 },
      { ok: true, url: `${httpUrl}/bundles/${GW}.tar.gz`, httpStatus: 201, durationMs: 0, bytes: 0 },
    );
    assert.equal(puts.length, 1);
    const put = puts[0]!;
    assert.equal(put.url, `/bundles/${GW}.tar.gz?X-Signature=sig-abc123`);
    assert.equal(put.headers.authorization, TOKEN);
    assert.equal(put.headers['content-type'], 'application/gzip');
    assert.equal(put.body.length, final.result.upload.bytes);
    const statusText = JSON.stringify(got.filter((m) => m.topic === `edge/${GW}/res/up-1`).map((m) => m.payload));
    assert.ok(!statusText.includes('sig-abc123') && !statusText.includes('upload-token-4711'), 'neither the query nor the header is reported');
    assert.ok(!agent.logText().includes('upload-token-4711') && !agent.logText().includes('sig-abc123'), 'nor logged');
    const dir = tempDir('bundle-up');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'b.tar.gz'), put.body);
    execFileSync('tar', ['-xzf', join(dir, 'b.tar.gz'), '-C', dir]);
    assertNoSecret(dir);
    assert.ok(readdirSync(dir).includes('diagnostics.json'));
  });
});
