/**
 * Restore at start, with the real agent against a real Mosquitto: a corrupt configuration
 * (truncated, invalid YAML, invalid values, a wrong .sha256 sidecar) is replaced by the last
 * known-good copy; a corrupt store (random bytes over its middle, truncated, its WAL deleted after
 * a kill -9) is moved aside and restored. Each time the agent comes `online` on ~/status, the bad
 * file is in quarantine and an incident event reaches ~/events.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, prng, tempDir, waitFor, type ChildExit, type Received } from '../helpers/util.js';
import { runAgent, runCli, type AgentProcess } from '../helpers/agent.js';
import { sha256Hex } from '../../recovery/known-good.js';


interface Payload {
  state?: string;
  type?: string;
  code?: string;
  message?: string;
}

const P = (m: Received): Payload => m.payload as Payload;

describe('restore at start', () => {
  let broker: Broker;
  let wms: MqttClient;
  let got: Received[];
  const running: AgentProcess[] = [];
  const gw = `gw-restore-${process.pid}`;
  const dataDir = tempDir('restore-');
  const configPath = join(dataDir, 'config.yaml');

  before(async () => {
    broker = await startBroker();
    wms = await mqttClient(broker.url, { protocolVersion: 5, reconnectPeriod: 100 });
    got = await collect(wms, `edge/${gw}/#`);
  });
  after(async () => {
    for (const a of running) await a.kill9().catch(() => undefined);
    await wms?.endAsync(true);
    await broker?.stop();
  });

  const start = (): AgentProcess => {
    const a = runAgent(configPath, dataDir);
    running.push(a);
    return a;
  };

  /** Starts the agent and waits for a live (not retained) `online` on ~/status and for `event`. */
  async function startOnline(eventCode?: string): Promise<AgentProcess> {
    const from = got.length;
    const a = start();
    const fresh = (): Received[] => got.slice(from);
    let exit: ChildExit | undefined;
    void a.exited.then((c) => (exit = c));
    await waitFor(
      () => {
        if (exit !== undefined) throw new Error(`the agent exited with ${exit.code ?? exit.signal}\n${a.logText()}`);
        return fresh().some((m) => m.topic.endsWith('/status') && !m.retain && P(m).state === 'online');
      },
      { timeoutMs: 30_000, what: `~/status online\n${a.logText()}` },
    );
    if (eventCode) {
      await waitFor(() => fresh().some((m) => m.topic.endsWith('/events') && P(m).type === 'incident' && P(m).code === eventCode), {
        timeoutMs: 20_000,
        what: `an incident ${eventCode} on ~/events\n${a.logText()}`,
      });
    }
    return a;
  }

  /** The incidents in the store, through the CLI (`edge-agent incidents --json`). */
  const incidents = async (): Promise<{ component: string; cause: string; action: string; detail: string | null; resolvedAt: string | null }[]> => {
    const r = await runCli(['incidents', '--json', '--config', configPath]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { incidents: { component: string; cause: string; action: string; detail: string | null; resolvedAt: string | null }[] }).incidents;
  };

  const knownGoodCopies = (): string[] => {
    const root = join(dataDir, 'known-good');
    if (!existsSync(root)) return [];
    return readdirSync(root).flatMap((d) => readdirSync(join(root, d)).filter((n) => /^\d+-config\.yaml$/.test(n)));
  };
  const quarantine = (): string[] => (existsSync(join(dataDir, 'quarantine')) ? readdirSync(join(dataDir, 'quarantine')) : []);
  const storeBackups = (): string[] => (existsSync(join(dataDir, 'backups')) ? readdirSync(join(dataDir, 'backups')).filter((n) => /^store-.*\.db$/.test(n)) : []);

  const good = (): string =>
    stringify({
      gatewayId: gw,
      dataDir,
      mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 500 } },
      shutdownTimeoutMs: 5000,
    });

  test('first start: a known-good copy of the configuration and a store backup are taken', async () => {
    writeFileSync(configPath, good());
    const a = await startOnline();
    await waitFor(() => knownGoodCopies().length === 1 && storeBackups().length === 1, { timeoutMs: 20_000, what: `known-good copy and store backup\n${a.logText()}` });
    assert.equal((await a.stop()).code, 0);
  });

  const corruptions: [string, () => void][] = [
    // Cut inside a key: a cut that leaves valid YAML and values only a sidecar can catch.
    ['truncated', () => writeFileSync(configPath, good().slice(0, good().indexOf('maxMs') + 4))],
    ['cut to nothing', () => writeFileSync(configPath, '')],
    ['invalid YAML', () => writeFileSync(configPath, `${good()}mqtt: [oops\n`)],
    ['invalid values', () => writeFileSync(configPath, good().replace(/gatewayId: .*/, 'gatewayId: "not a valid id!"'))],
    [
      'a wrong .sha256 sidecar',
      () => {
        writeFileSync(configPath, good().replace('shutdownTimeoutMs: 5000', 'shutdownTimeoutMs: 6000'));
        writeFileSync(`${configPath}.sha256`, `${sha256Hex(good())}  config.yaml\n`);
      },
    ],
  ];
  for (const [name, corrupt] of corruptions) {
    test(`configuration ${name}: started on the known-good copy, bad file quarantined, incident on ~/events`, async () => {
      const before = quarantine().length;
      const bad = (() => {
        corrupt();
        return readFileSync(configPath, 'utf8');
      })();
      const a = await startOnline('config-restored');
      assert.equal(readFileSync(configPath, 'utf8'), good(), 'the configuration file is the known-good one again');
      const q = quarantine();
      assert.ok(q.length > before, 'the bad file is in quarantine');
      assert.ok(
        q.some((n) => n.endsWith('-config.yaml') && readFileSync(join(dataDir, 'quarantine', n), 'utf8') === bad),
        'quarantine holds the bad bytes',
      );
      if (name === 'a wrong .sha256 sidecar') {
        assert.equal(readFileSync(`${configPath}.sha256`, 'utf8').split(/\s/)[0], sha256Hex(good()), 'the sidecar matches the restored file');
      }
      assert.equal(existsSync(join(dataDir, 'pending-incidents.json')), false, 'the pending incident was handed over');
      assert.equal((await a.stop()).code, 0);
      const [last] = await incidents();
      assert.equal(last?.component, 'config');
      assert.equal(last?.action, 'restore-known-good');
      assert.match(last?.detail ?? '', /known-good copy/);
      assert.notEqual(last?.resolvedAt, null);
    });
  }

  test('store with random bytes over its middle: restored from the backup, incident recorded', async (t) => {
    if (broker.kind !== 'mosquitto') return t.skip('needs mosquitto to stop and restart the broker');
    rmSync(`${configPath}.sha256`, { force: true });
    // Fill the store while the broker is away, so the events stay in it (sent ones are deleted).
    const a = await startOnline();
    await broker.stop();
    const big = 'x'.repeat(3500);
    for (let i = 0; i < 1500; i += 25) {
      await Promise.all(Array.from({ length: 25 }, (_, j) => a.admin('event', { code: 'fill', message: `${i + j} ${big}` })));
    }
    const depth = ((await a.admin('status')) as { outbox: { depth: number } }).outbox.depth;
    assert.ok(depth >= 1500, `outbox depth ${depth}`);
    assert.equal((await a.stop()).code, 0);
    await broker.restart();
    await waitFor(() => wms.connected, { timeoutMs: 10_000, what: 'the test WMS client reconnected' });
    const db = join(dataDir, 'agent.db');
    const size = statSync(db).size;
    assert.ok(size > 4 * 1024 * 1024, `store size ${size}`);
    const rnd = prng(42);
    const fd = openSync(db, 'r+');
    for (const at of [0.4, 0.5, 0.6]) {
      const buf = Buffer.alloc(8192).map(() => Math.floor(rnd() * 256));
      writeSync(fd, buf, 0, buf.length, Math.floor((size * at) / 4096) * 4096);
    }
    closeSync(fd);
    const b = await startOnline('store-restored');
    const s = (await b.admin('status')) as { outbox: { depth: number } };
    assert.ok(s.outbox.depth < 1500, `the store is the backup from before the fill (depth ${s.outbox.depth})`);
    assert.ok(quarantine().some((n) => n.endsWith('-agent.db')), 'the damaged store is in quarantine');
    assert.equal((await b.stop()).code, 0);
    const [last] = await incidents();
    assert.equal(last?.component, 'store');
    assert.equal(last?.cause, 'store-corrupt');
    assert.equal(last?.action, 'restore-backup');
    assert.match(last?.detail ?? '', /restored the periodic backup/);
  });

  test('truncated store: restored, incident recorded', async () => {
    const db = join(dataDir, 'agent.db');
    const before = quarantine().filter((n) => n.endsWith('-agent.db')).length;
    truncateSync(db, Math.floor(statSync(db).size / 3));
    const a = await startOnline('store-restored');
    assert.equal(quarantine().filter((n) => n.endsWith('-agent.db')).length, before + 1);
    assert.equal((await a.stop()).code, 0);
  });

  test('WAL deleted after a kill -9: the agent starts on the checkpointed store, incident recorded', async () => {
    const a = await startOnline();
    await Promise.all(Array.from({ length: 50 }, (_, i) => a.admin('event', { code: 'wal', message: String(i) })));
    await a.kill9();
    const wal = join(dataDir, 'agent.db-wal');
    assert.ok(existsSync(wal) && statSync(wal).size > 0, 'the kill left a WAL with changes in it');
    rmSync(wal);
    const b = await startOnline('store-wal-lost');
    const d = (await b.admin('diagnostics')) as { store: { integrity: unknown } };
    assert.equal(d.store.integrity, 'ok');
    assert.equal((await b.stop()).code, 0);
  });
});
