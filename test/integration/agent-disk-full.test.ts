/**
 * The data directory's disk full, for real: a 2 MiB tmpfs filled with dd under the running agent
 * (real Mosquitto, real agent binary), then four `diagnostics` commands. While the store cannot
 * commit, nothing is published that is not committed and the commands are not acknowledged; an
 * alert says why and `status` counts only what the tables hold. Once space is freed the broker
 * delivers the commands again, each runs once and gets exactly one terminal status, and the same
 * ids sent again are duplicates, not new commands.
 *
 * Needs root (mount); skipped with the reason otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-full';
const IDS = ['full-1', 'full-2', 'full-3', 'full-4'];
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);
const root = process.getuid?.() === 0;

interface Status {
  id: string;
  status: string;
}
interface AgentStatus {
  outbox: { depth: number };
  storeCommits: unknown;
  alerts: { code: string }[];
  commands: { unacknowledged: number };
}

describe('the data directory full', { skip: root ? false : 'needs root to mount a tmpfs (run the tests as root, as CI does)' }, () => {
  let broker: Broker;
  let agent: AgentProcess;
  let wms: MqttClient;
  let got: Received[];
  const work = tempDir('agent-full-');
  const dataDir = join(work, 'data');
  let mounted = false;

  const res = (id: string): string[] => got.filter((m) => m.topic === `edge/${GW}/res/${id}`).map((m) => (m.payload as Status).status);
  const events = (): { code: string }[] => got.filter((m) => m.topic === `edge/${GW}/events`).map((m) => m.payload as { code: string });
  const status = async (): Promise<AgentStatus> => (await agent.admin('status')) as AgentStatus;
  const finishedLogs = (id: string): number => agent.logs.filter((l) => typeof l === 'object' && l.id === id && l.msg === 'command finished').length;
  const send = (id: string): Promise<unknown> => wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id }), { qos: 1 });

  before(async () => {
    mkdirSync(dataDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dataDir]);
    mounted = true;
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    got = await collect(wms, `edge/${GW}/#`);
    // Health sampling and backups write too; off, so that only the command path meets the full disk.
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url }, health: { enabled: false } } });
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await wms?.endAsync();
    await agent?.stop();
    await broker?.stop();
    if (mounted) execFileSync('umount', ['-l', dataDir]);
    rmSync(work, { recursive: true, force: true });
  });

  test('no status that is not committed, no command lost, an alert, counters that match the tables', async () => {
    // Fill every free block (dd ends with "No space left on device").
    spawnSync('dd', ['if=/dev/zero', `of=${join(dataDir, 'fill')}`, 'bs=4k'], { stdio: 'ignore' });
    for (const id of IDS) await send(id);

    await waitFor(async () => (await status()).alerts.some((a) => a.code === 'storage-full'), { timeoutMs: 20_000, what: `the storage-full alert in status\n${agent.logText().slice(-3000)}` });
    const during = await status();
    assert.notEqual(during.storeCommits, 'ok');
    // The counters say what the table holds (read through a connection of our own).
    const db = new Database(join(dataDir, 'agent.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
      assert.equal(during.outbox.depth, rows, `status says ${during.outbox.depth} waiting, the table holds ${rows}`);
      // Whatever was published for these ids is committed: the store has each such id, with a status at least as far.
      const order = ['accepted', 'executing', 'successful', 'failed', 'cancelled', 'rejected'];
      for (const id of IDS) {
        const published = res(id);
        if (published.length === 0) continue;
        const row = db.prepare('SELECT status FROM commands WHERE id = ?').get(id) as { status: string } | undefined;
        assert.ok(row, `${id} was published (${published.join(', ')}) but is not in the store`);
        assert.ok(order.indexOf(row.status) >= order.indexOf(published.at(-1)!), `${id}: published ${published.at(-1)}, stored ${row.status}`);
      }
    } finally {
      db.close();
    }

    // Space again: every command comes back (or goes on), runs once, and ends once.
    rmSync(join(dataDir, 'fill'));
    await waitFor(() => IDS.every((id) => res(id).some((s) => TERMINAL.has(s))), { timeoutMs: 60_000, what: `a terminal status for ${IDS.join(', ')}: ${JSON.stringify(IDS.map(res))}\n${agent.logText().slice(-3000)}` });
    for (const id of IDS) {
      const s = res(id);
      assert.deepEqual(s.filter((x) => TERMINAL.has(x)), ['successful'], `${id}: one terminal status: ${s.join(', ')}`);
      assert.equal(s.at(-1), 'successful', `${id}: nothing after it`);
      assert.equal(finishedLogs(id), 1, `${id} ran once`);
    }
    await waitFor(() => events().some((e) => e.code === 'storage-full') && events().some((e) => e.code === 'storage-full-cleared'), { timeoutMs: 20_000, what: `the storage-full alert and its clearing on ~/events: ${JSON.stringify(events().map((e) => e.code))}` });
    const afterward = await status();
    assert.equal(afterward.storeCommits, 'ok');
    assert.ok(!afterward.alerts.some((a) => a.code === 'storage-full'), 'the alert is cleared');

    // The same ids again: known, answered from the store, not run again.
    for (const id of IDS) await send(id);
    await waitFor(() => IDS.every((id) => res(id).filter((s) => s === 'successful').length >= 2), { timeoutMs: 20_000, what: 'the duplicates answered' });
    for (const id of IDS) assert.equal(finishedLogs(id), 1, `${id} did not run again`);
    await waitFor(async () => (await status()).outbox.depth === 0, { timeoutMs: 20_000, what: 'the outbox drained' });
  });
});
