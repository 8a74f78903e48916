/**
 * The audit trail end to end (docs/audit.md) with a real Mosquitto and a real agent: commands
 * from the WMS and one through the admin socket are recorded in order with a valid chain;
 * `edge-agent audit --json` lists them with the daemon down; a row of the store edited with
 * better-sqlite3 while the agent is stopped makes `audit --verify` exit 2 naming it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import type { AuditEntry } from '../../core/audit.js';

const GW = 'gw-audit';

describe('the audit trail', () => {
  let broker: Broker;
  let wms: MqttClient;
  let results: Received[];
  let events: Received[];
  let agent: AgentProcess;
  const dataDir = join(tempDir('audit-it-'), 'data');

  before(async () => {
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    results = await collect(wms, `edge/${GW}/res/+`);
    events = await collect(wms, `edge/${GW}/events`);
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } } });
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await agent.stop().catch(() => undefined);
    await wms.endAsync();
    await broker.stop();
  });

  const terminal = (id: string): boolean => results.some((r) => r.topic.endsWith(`/res/${id}`) && ['successful', 'failed', 'rejected', 'cancelled'].includes((r.payload as { status?: string }).status ?? ''));

  test('commands are recorded in order with a valid chain; audit --json and --verify work with the daemon down', async () => {
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'diag-1' }), { qos: 1 });
    await waitFor(() => terminal('diag-1'), { timeoutMs: 20_000, what: 'diag-1 finished' });
    await wms.publishAsync(`edge/${GW}/cmd/frobnicate`, JSON.stringify({ id: 'bad-1' }), { qos: 1 });
    await waitFor(() => terminal('bad-1'), { timeoutMs: 20_000, what: 'bad-1 rejected' });
    await wms.publishAsync(`edge/${GW}/cmd/restart`, JSON.stringify({ id: 'rs-1', params: { component: 'nothing-such' } }), { qos: 1 });
    await waitFor(() => terminal('rs-1'), { timeoutMs: 20_000, what: 'rs-1 rejected' });
    const { id: localId } = (await agent.admin('command', { op: 'diagnostics' })) as { id: string };
    await waitFor(() => terminal(localId), { timeoutMs: 20_000, what: 'the console command finished' });

    const live = await runCli(['audit', '--json', '--config', agent.configPath]);
    assert.equal(live.code, 0, live.stderr);
    await agent.stop();

    const r = await runCli(['audit', '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as AuditEntry[];
    assert.deepEqual(
      list.map((e) => [e.actor, e.action, e.target, e.outcome]),
      [
        ['wms:diag-1', 'diagnostics', null, 'successful'],
        ['wms:bad-1', 'frobnicate', null, 'rejected/unknown-op'],
        ['wms:rs-1', 'restart', null, 'rejected/invalid-params'],
        ['local', 'diagnostics', null, 'successful'],
      ],
    );
    assert.deepEqual(list.map((e) => e.seq), [1, 2, 3, 4]);
    assert.equal(list[3]!.details?.command, localId);
    for (let i = 1; i < list.length; i++) assert.equal(list[i]!.prevHash, list[i - 1]!.hash);
    assert.deepEqual(Object.keys(list[0]!).sort(), ['action', 'actor', 'at', 'details', 'hash', 'outcome', 'prevHash', 'seq', 'target']);

    const ok = await runCli(['audit', '--verify', '--config', agent.configPath]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /the audit chain holds: 4 entries, 1 to 4/);

    // The chain's head on ~/events at start: empty for the first run, entry 4 for the next.
    const heads = (): { seq: number; hash: string }[] => events.map((e) => e.payload as { code?: string; seq: number; hash: string }).filter((p) => p.code === 'audit-head');
    assert.deepEqual(heads().map((h) => [h.seq, h.hash]), [[0, '0'.repeat(64)]]);
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } } });
    await waitFor(() => heads().length === 2, { timeoutMs: 20_000, what: 'the second audit-head event' });
    assert.deepEqual(heads().map((h) => [h.seq, h.hash])[1], [4, list[3]!.hash]);
    await agent.stop();

    const text = await runCli(['audit', '--since', '1h', '--config', agent.configPath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /#2 {2}wms:bad-1 {2}frobnicate {2}-> rejected\/unknown-op/);

    // Tampering while the agent is stopped: the outcome of the rejected command becomes a success.
    const db = new Database(join(dataDir, 'agent.db'));
    db.prepare("UPDATE audit_log SET outcome = 'successful' WHERE seq = 2").run();
    db.close();
    const bad = await runCli(['audit', '--verify', '--config', agent.configPath]);
    assert.equal(bad.code, 2, bad.stdout + bad.stderr);
    assert.match(bad.stderr, /audit-chain-broken: the audit chain is broken at entry 2/);
    const badJson = await runCli(['audit', '--verify', '--json', '--config', agent.configPath]);
    assert.equal(badJson.code, 2);
    assert.equal((JSON.parse(badJson.stdout) as { brokenSeq: number }).brokenSeq, 2);
  });

  test('--help, a malformed --since, and no store', async () => {
    const h = await runCli(['audit', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--verify/);
    const s = await runCli(['audit', '--since', 'yesterday', '--config', agent.configPath]);
    assert.equal(s.code, 64);
    const none = await runCli(['audit', '--config', agent.configPath, '--data-dir', join(tempDir('audit-none-'), 'd')]);
    assert.equal(none.code, 3, none.stderr);
  });
});
