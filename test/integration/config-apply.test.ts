/**
 * The `config` operation end to end (CONTRACT.md section 7, docs/config-apply.md) with a real
 * Mosquitto and real agent processes: a threshold patch applied, the agent restarting onto it
 * and confirmed (get shows it, known-good copy, audit entry with the changed key and both
 * hashes, the secret kept and never shown); a stale or invalid apply refused with nothing
 * changed; a broker that cannot be reached reverted by itself; and kill -9 before and after the
 * new file is in place, each ending on a valid configuration with one terminal status.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { freePort, mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { agentConnected, runAgent, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { agentPid, stopAll, wmsFor, type Wms } from '../helpers/config-apply.js';
import { configHash } from '../../core/config-edit.js';
import { listKnownGood } from '../../recovery/known-good.js';
import type { AuditEntry } from '../../core/audit.js';

const SECRET = 'pw-0f7a9c2e';

interface Got {
  target: string;
  hash: string;
  config: Record<string, unknown> & { mqtt: { password?: string; url: string }; health?: { thresholds?: { cpu?: { raise?: number } } } };
}

function fileHash(path: string): string {
  return configHash(readFileSync(path));
}

async function auditEntries(configPath: string): Promise<AuditEntry[]> {
  const r = await runCli(['audit', '--json', '--config', configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AuditEntry[];
}

describe('remote configuration of the agent', () => {
  const GW = 'gw-cfg';
  let broker: Broker;
  let client: MqttClient;
  let wms: Wms;
  let agent: AgentProcess;
  const pids = new Set<number>();
  const dataDir = join(tempDir('config-apply-'), 'data');
  const socket = join(dataDir, 'agent.sock');
  let n = 0;

  const get = async (): Promise<Got> => {
    const id = `get-${++n}`;
    await wms.send('config', id, { action: 'get' });
    const r = await wms.outcome(id);
    assert.equal(r.status, 'successful', JSON.stringify(r));
    return r.result as unknown as Got;
  };
  /** Connected again, as a process other than `old`. */
  const restarted = async (old: number): Promise<number> => {
    let pid: number | undefined;
    await waitFor(async () => {
      pid = await agentPid(socket);
      return pid !== undefined && pid !== old;
    }, { timeoutMs: 30_000, what: 'the agent restarted' });
    pids.add(pid!);
    return pid!;
  };

  before(async () => {
    broker = await startBroker();
    client = await mqttClient(broker.url);
    wms = await wmsFor(client, GW);
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url, username: 'gw', password: SECRET }, shutdownTimeoutMs: 5000 } });
    pids.add(agent.pid);
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    const now = await agentPid(socket);
    if (now !== undefined) pids.add(now);
    await stopAll(pids);
    await client.endAsync();
    await broker.stop();
  });

  test('a threshold patch is applied through a restart and confirmed; get shows it; known-good and audited; the secret kept, never shown', async () => {
    const g0 = await get();
    assert.equal(g0.hash, fileHash(agent.configPath));
    assert.equal(g0.config.mqtt.password, '[redacted]');
    const pid0 = (await agentPid(socket))!;

    await wms.send('config', 'apply-cpu', { action: 'apply', baseHash: g0.hash, patch: { health: { thresholds: { cpu: { raise: 97 } } } }, confirmSec: 30 });
    const r = await wms.outcome('apply-cpu', 90_000);
    assert.equal(r.status, 'successful', JSON.stringify(r));
    assert.deepEqual(r.result?.changed, ['health.thresholds.cpu.raise']);
    assert.equal(r.result?.fromHash, g0.hash);
    const pid1 = await restarted(pid0);
    assert.notEqual(pid1, pid0, 'the agent restarted onto the new configuration');

    const g1 = await get();
    assert.equal(g1.hash, r.result?.toHash);
    assert.equal(g1.config.health?.thresholds?.cpu?.raise, 97);
    assert.equal(g1.config.mqtt.password, '[redacted]');
    const onDisk = parse(readFileSync(agent.configPath, 'utf8')) as Got['config'];
    assert.equal(onDisk.mqtt.password, SECRET, 'the secret left out of the patch is kept');
    assert.equal(listKnownGood(dataDir, agent.configPath)[0]?.sha256, g1.hash, 'the confirmed configuration is the newest known-good copy');

    const entries = await auditEntries(agent.configPath);
    const e = entries.find((x) => x.action === 'config-apply');
    assert.ok(e, JSON.stringify(entries));
    assert.equal(e.outcome, 'confirmed');
    assert.equal(e.target, 'agent');
    assert.deepEqual(e.details, { command: 'apply-cpu', fromHash: g0.hash, toHash: g1.hash, changed: ['health.thresholds.cpu.raise'] });
    assert.ok(!JSON.stringify(entries).includes(SECRET));
    assert.ok(!JSON.stringify(wms.results).includes(SECRET), 'no status carries the secret');
  });

  test('a stale hash is rejected `conflict`; an invalid document lists every problem; nothing changes', async () => {
    const g = await get();
    const before = readFileSync(agent.configPath, 'utf8');
    await wms.send('config', 'stale', { action: 'apply', baseHash: '0'.repeat(64), patch: { log: { level: 'debug' } } });
    const stale = await wms.outcome('stale');
    assert.equal(stale.status, 'rejected');
    assert.equal(stale.reason?.code, 'conflict');

    await wms.send('config', 'bad', { action: 'apply', baseHash: g.hash, patch: { health: { thresholds: { cpu: { raise: 'high' } } }, bogus: 1, outbox: { inflight: 0 } } });
    const bad = await wms.outcome('bad');
    assert.equal(bad.status, 'rejected');
    assert.equal(bad.reason?.code, 'invalid-config');
    assert.deepEqual(bad.reason?.details?.map((p) => p.path).sort(), ['bogus', 'health.thresholds.cpu.raise', 'outbox.inflight']);

    // "[redacted]" keeps a secret that is set; where none is, it cannot ask for one.
    await wms.send('config', 'ask-secret', { action: 'apply', baseHash: g.hash, patch: { mqtt: { clientId: '[redacted]' } } });
    const ask = await wms.outcome('ask-secret');
    assert.equal(ask.status, 'rejected');
    assert.equal(ask.reason?.code, 'invalid-config');
    assert.deepEqual(ask.reason?.details?.map((p) => p.path), ['mqtt.clientId']);

    // The whole document as get returned it, with a wrong type: refused too.
    await wms.send('config', 'whole-bad', { action: 'apply', baseHash: g.hash, config: { ...g.config, log: { level: 7 } } });
    const whole = await wms.outcome('whole-bad');
    assert.equal(whole.reason?.code, 'invalid-config');
    assert.deepEqual(whole.reason?.details?.map((p) => p.path), ['log.level']);

    await wms.send('config', 'move-data', { action: 'apply', baseHash: g.hash, patch: { dataDir: '/tmp/elsewhere' } });
    assert.equal((await wms.outcome('move-data')).reason?.code, 'invalid-config');

    assert.equal(readFileSync(agent.configPath, 'utf8'), before, 'nothing changed');
    assert.equal((await get()).hash, g.hash);
  });

  test('a configuration pointing at an unreachable broker is not confirmed within confirmSec: reverted by itself, back online, `failed`/`reverted` delivered', async () => {
    const g = await get();
    const pid0 = (await agentPid(socket))!;
    const nowhere = `mqtt://127.0.0.1:${await freePort()}`;
    await wms.send('config', 'apply-nowhere', { action: 'apply', baseHash: g.hash, patch: { mqtt: { url: nowhere } }, confirmSec: 4 });
    const r = await wms.outcome('apply-nowhere', 120_000);
    assert.equal(r.status, 'failed', JSON.stringify(r));
    assert.equal(r.reason?.code, 'reverted');
    assert.deepEqual(r.result?.changed, ['mqtt.url']);
    assert.equal(fileHash(agent.configPath), g.hash, 'the previous file is back');
    const pid = await restarted(pid0);
    assert.ok(pid);
    assert.notEqual(listKnownGood(dataDir, agent.configPath)[0]?.sha256, r.result?.toHash, 'the unconfirmed configuration never became known-good');
    const entries = await auditEntries(agent.configPath);
    const rev = entries.find((x) => x.action === 'config-revert');
    assert.equal(rev?.outcome, 'reverted');
    assert.deepEqual(rev?.details?.changed, ['mqtt.url']);
    assert.deepEqual(wms.terminals('apply-nowhere'), ['failed']);
    assert.equal((await get()).config.mqtt.url, broker.url);
  });

  test('edge-agent config show, diff and apply on the gateway: the same checks, the outcome waited for across the restart', async () => {
    const args = ['--config', agent.configPath];
    const show = await runCli(['config', 'show', '--json', ...args]);
    assert.equal(show.code, 0, show.stderr);
    const g = JSON.parse(show.stdout) as Got;
    assert.equal(g.hash, fileHash(agent.configPath));
    assert.equal(g.config.mqtt.password, '[redacted]');
    assert.match((await runCli(['config', 'show', ...args])).stdout, new RegExp(`hash ${g.hash}`));

    const dir = tempDir('config-cli-');
    const good = join(dir, 'good.yaml');
    writeFileSync(good, stringify({ ...g.config, log: { level: 'debug' } }));
    const diff = await runCli(['config', 'diff', good, ...args]);
    assert.equal(diff.code, 1, diff.stderr);
    assert.match(diff.stdout, /~ log\.level: \(absent\) -> "debug"/);
    assert.ok(!diff.stdout.includes(SECRET));

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, stringify({ ...g.config, log: { level: 'loud' }, outbox: { inflight: 0 } }));
    const refused = await runCli(['config', 'apply', bad, ...args]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /rejected: invalid-config/);
    assert.match(refused.stderr, /^ {2}log\.level: /m);
    assert.match(refused.stderr, /^ {2}outbox\.inflight: /m);
    assert.equal(fileHash(agent.configPath), g.hash);

    const pid0 = (await agentPid(socket))!;
    const ok = await runCli(['config', 'apply', good, '--confirm-sec', '30', ...args]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /applied and confirmed: log\.level/);
    await restarted(pid0);
    const onDisk = parse(readFileSync(agent.configPath, 'utf8')) as Got['config'] & { log: { level: string } };
    assert.equal(onDisk.log.level, 'debug');
    assert.equal(onDisk.mqtt.password, SECRET, '"[redacted]" in the file kept the secret');
    const e = (await auditEntries(agent.configPath)).filter((x) => x.action === 'config-apply').at(-1);
    assert.equal(e?.actor, 'local');
    assert.deepEqual(e?.details?.changed, ['log.level']);

    const help = await runCli(['config', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /apply FILE/);
    assert.equal((await runCli(['config', 'frob', ...args])).code, 64);
  });
});

describe('kill -9 in the middle of a configuration apply', () => {
  let broker: Broker;
  let client: MqttClient;
  const pids = new Set<number>();

  before(async () => {
    broker = await startBroker();
    client = await mqttClient(broker.url);
  });

  after(async () => {
    await stopAll(pids);
    await client.endAsync();
    await broker.stop();
  });

  for (const [fault, expected] of [
    ['config-before-swap', 'failed'],
    ['config-after-swap', 'successful'],
  ] as const) {
    test(`killed at ${fault}: back on a valid configuration, one terminal status (${expected})`, async () => {
      const gw = `gw-${fault}`;
      const wms = await wmsFor(client, gw);
      const dataDir = join(tempDir('config-kill-'), 'data');
      const socket = join(dataDir, 'agent.sock');
      const env = { EDGE_AGENT_FAULT: fault };
      const a = startAgent({ dataDir, gatewayId: gw, config: { mqtt: { url: broker.url }, shutdownTimeoutMs: 5000 }, env });
      pids.add(a.pid);
      await agentConnected(a, 20_000);
      const h0 = fileHash(a.configPath);
      // Connected is not yet subscribed: a command sent in between is lost. The same id again is
      // safe (the agent runs an id once; terminals() counts each status once) until it dies at the fault.
      let exited: Awaited<typeof a.exited> | undefined;
      void a.exited.then((e) => (exited = e));
      for (let i = 0; i < 12 && !exited; i++) {
        await wms.send('config', 'apply-k', { action: 'apply', baseHash: h0, patch: { log: { level: 'debug' } }, confirmSec: 30 });
        await Promise.race([a.exited, new Promise((res) => setTimeout(res, 5000))]);
      }
      const exit = await a.exited;
      assert.equal(exit.signal, 'SIGKILL', 'the agent was killed at the fault point');
      const h1 = fileHash(a.configPath);
      assert.equal(h1 === h0, fault === 'config-before-swap', 'the file is the old one before the swap, the new one after');

      // What systemd does: start it again.
      const b = runAgent(a.configPath, dataDir, { env });
      pids.add(b.pid);
      const r = await wms.outcome('apply-k', 90_000);
      assert.equal(r.status, expected, JSON.stringify(r));
      if (expected === 'failed') assert.equal(r.reason?.code, 'interrupted');
      await waitFor(async () => (await agentPid(socket)) !== undefined, { timeoutMs: 20_000, what: 'the agent up' });
      pids.add((await agentPid(socket))!);
      const level = (parse(readFileSync(a.configPath, 'utf8')) as { log?: { level?: string } }).log?.level;
      assert.equal(level, expected === 'successful' ? 'debug' : undefined);
      // Give a duplicate a chance to show up: the retained status, resent.
      await new Promise((res) => setTimeout(res, 500));
      assert.deepEqual(wms.terminals('apply-k'), [expected]);
    });
  }
});
