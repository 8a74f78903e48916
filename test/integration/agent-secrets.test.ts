/**
 * Secret parameters of a command (a `diagnostics` upload's Authorization and X-Upload-Key headers,
 * a pre-signed URL's query) against a real Mosquitto, the real agent binary and a real HTTP
 * server: the upload uses them, and not one byte of them reaches a file in the data directory
 * (the store, its WAL, backups, logs). The store and its -wal/-shm are created 0640 even under
 * umask 022 in a data directory that already existed as 0755, and `edge-agent diag` warns that
 * others can read that directory.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-secret';
const SECRETS: [string, string, string] = ['Bearer-SECRET-AUTH-4b1d', 'SECRET-UPLOAD-KEY-77aa', 'SECRET-SIGNATURE-9f3e'];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

describe('secret command parameters', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let wms: MqttClient;
  let got: Received[];
  let server: Server;
  const uploads: { url: string; headers: IncomingHttpHeaders; bytes: number }[] = [];
  const dataDir = join(tempDir('agent-secret-'), 'data');
  const umask = process.umask();

  before(async () => {
    server = createServer((req, res) => {
      let bytes = 0;
      req.on('data', (b: Buffer) => (bytes += b.length));
      req.on('end', () => {
        uploads.push({ url: req.url ?? '', headers: req.headers, bytes });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    got = await collect(wms, `edge/${GW}/#`);
    // A data directory that already exists, readable by everyone; files created under umask 022.
    mkdirSync(dataDir, { recursive: true });
    chmodSync(dataDir, 0o755);
    process.umask(0o022);
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } } });
    process.umask(umask);
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    process.umask(umask);
    await wms?.endAsync();
    await agent?.stop();
    await broker?.stop();
    server?.close();
  });

  test('an upload uses its secrets, and no file in the data directory holds them', async () => {
    const port = (server.address() as AddressInfo).port;
    const cmd = {
      id: 'diag-secret-1',
      params: {
        upload: {
          url: `http://127.0.0.1:${port}/bundles/gw.tar.gz?X-Amz-Credential=AKIA&X-Amz-Signature=${SECRETS[2]}`,
          headers: { Authorization: SECRETS[0], 'X-Upload-Key': SECRETS[1] },
        },
      },
    };
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify(cmd), { qos: 1 });
    const res = (): { status: string; result?: { upload?: { ok: boolean } } }[] =>
      got.filter((m) => m.topic === `edge/${GW}/res/diag-secret-1`).map((m) => m.payload as { status: string });
    await waitFor(() => res().some((s) => s.status === 'successful' || s.status === 'failed'), { timeoutMs: 60_000, what: `diag-secret-1 finished\n${agent.logText().slice(-3000)}` });
    assert.equal(res().at(-1)?.status, 'successful');
    assert.equal(res().at(-1)?.result?.upload?.ok, true, 'the upload worked');
    // The secrets were used (held in memory for the run) ...
    assert.equal(uploads.length, 1);
    assert.equal(uploads[0]!.headers.authorization, SECRETS[0]);
    assert.equal(uploads[0]!.headers['x-upload-key'], SECRETS[1]);
    assert.ok(uploads[0]!.url.includes(SECRETS[2]));
    // ... and are nowhere else: not on the broker, not in any file the agent wrote.
    const sent = JSON.stringify(got.filter((m) => !m.topic.startsWith(`edge/${GW}/cmd/`)));
    for (const s of SECRETS) assert.ok(!sent.includes(s), `${s} was published`);
    // The same id again: answered from the store, still without secrets.
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify(cmd), { qos: 1 });
    await waitFor(() => res().filter((s) => s.status === 'successful').length >= 2, { timeoutMs: 15_000, what: 'the duplicate answered' });
    await agent.stop();
    const files = filesUnder(dataDir);
    assert.ok(files.some((f) => f.endsWith('agent.db')), `the store is among ${files.join(', ')}`);
    for (const f of files) {
      const text = readFileSync(f).toString('latin1');
      for (const s of SECRETS) assert.ok(!text.includes(s), `${f} holds the secret ${s}`);
    }
  });

  test('the store and its -wal and -shm are 0640; diag warns that others can read the data directory', async () => {
    const a = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } } });
    try {
      await agentConnected(a, 20_000);
      for (const name of ['agent.db', 'agent.db-wal', 'agent.db-shm']) {
        assert.equal((statSync(join(dataDir, name)).mode & 0o777).toString(8), '640', `${name} mode`);
      }
    } finally {
      await a.stop();
    }
    const r = await runCli(['diag', '--json', '--only', 'storage', '--config', join(dataDir, 'config.yaml')]);
    const report = JSON.parse(r.stdout) as { groups: { checks: { name: string; status: string; message: string }[] }[] };
    const check = report.groups.flatMap((g) => g.checks).find((c) => c.name === 'data-dir');
    assert.ok(check, `a data-dir check in ${r.stdout}`);
    assert.equal(check.status, 'warning', JSON.stringify(check));
    assert.match(check.message, /others can read/);
    chmodSync(dataDir, 0o750);
    const again = await runCli(['diag', '--json', '--only', 'storage', '--config', join(dataDir, 'config.yaml')]);
    const fixed = (JSON.parse(again.stdout) as typeof report).groups.flatMap((g) => g.checks).find((c) => c.name === 'data-dir');
    assert.equal(fixed?.status, 'ok', JSON.stringify(fixed));
  });
});
