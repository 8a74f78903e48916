/**
 * `edge-agent status` and `edge-agent event` (CONTRACT.md section 5) against the real daemon and a
 * real Mosquitto: live over the admin socket (exit 0); from the store when the daemon is down
 * (exit 3) after SIGTERM, after kill -9 (stale socket file) and when it never ran; and a second
 * `run` on the same data directory refusing to start without disturbing the first.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, spawnCli, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-status';

interface Report {
  daemon: string;
  pid?: number;
  version?: string;
  slot?: string;
  gatewayId?: string;
  lastStoppedAt?: string;
  store?: string;
  broker?: { connected?: boolean; connects?: number };
  outbox?: { depth?: unknown };
  operations?: unknown[];
}

async function statusJson(configPath: string): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await runCli(['status', '--json', '--config', configPath]);
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch (err) {
    throw new Error(`status --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`, { cause: err });
  }
  return { code: r.code, report, stderr: r.stderr };
}

describe('edge-agent status and event', () => {
  let broker: Broker;
  let wms: MqttClient;
  let events: Received[];
  const dataDir = join(tempDir('agent-status-'), 'data');
  const agents: AgentProcess[] = [];
  let agent: AgentProcess;
  const start = (): AgentProcess => {
    const a = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } } });
    agents.push(a);
    return a;
  };

  before(async () => {
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    events = await collect(wms, `edge/${GW}/events`);
    agent = start();
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await wms?.endAsync();
    await broker?.stop();
  });

  test('daemon up: status and status --json exit 0 with version, slot, connection, outbox, operations', async () => {
    const { code, report, stderr } = await statusJson(agent.configPath);
    assert.equal(code, 0, stderr);
    assert.equal(report.daemon, 'running');
    assert.equal(report.pid, agent.pid);
    assert.equal(report.version, '1.0.0');
    assert.equal(report.slot, 'A');
    assert.equal(report.gatewayId, GW);
    assert.equal(report.broker?.connected, true);
    assert.equal(typeof report.outbox?.depth, 'number');
    assert.deepEqual(report.operations, []);

    const text = await runCli(['status', '--config', agent.configPath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /daemon\s+running \(pid \d+\)/);
    assert.match(text.stdout, /version\s+1\.0\.0\s+slot A/);
    assert.match(text.stdout, /broker\s+connected/);
    assert.match(text.stdout, /operation\s+none/);
  });

  test('event reaches ~/events as a note from admin', async () => {
    const r = await runCli(['event', '--config', agent.configPath, '--code', 'maintenance-note', '--message', 'hi']);
    assert.equal(r.code, 0, r.stderr);
    const isNote = (m: Received): boolean => (m.payload as { type?: string }).type === 'note';
    await waitFor(() => events.some(isNote), { timeoutMs: 15_000, what: `the note on edge/${GW}/events` });
    const note = events.find(isNote)!.payload as Record<string, unknown>;
    const { ts, ...rest } = note;
    assert.deepEqual(rest, { type: 'note', source: 'admin', code: 'maintenance-note', message: 'hi', severity: 'info' });
    assert.ok(typeof ts === 'string' && Number.isFinite(Date.parse(ts)), `ts is an ISO timestamp: ${String(ts)}`);
  });

  test('event with an invalid --code exits non-zero naming the problem', async () => {
    const r = await runCli(['event', '--config', agent.configPath, '--code', 'Not A Code!', '--message', 'hi']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /code/);
    assert.match(r.stderr, /maintenance-note|short code/);
  });

  test('a second run on the same data directory exits quickly and the first keeps working', async () => {
    const earlier = (await agent.admin('status')) as Report;
    const second = spawnCli(['run', '--config', agent.configPath]);
    let out = '';
    second.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    second.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => {
        second.kill('SIGKILL');
        reject(new Error(`the second agent did not exit within 15 s:\n${out}`));
      }, 15_000);
      second.on('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.notEqual(code, 0, out);
    assert.match(out, /already-running/);

    const later = (await agent.admin('status')) as Report;
    assert.equal(later.pid, agent.pid);
    assert.equal(later.broker?.connected, true);
    assert.equal(later.broker?.connects, earlier.broker?.connects, 'the first agent did not lose its connection');
    // It still does its job: a command round trip.
    const res = await collect(wms, `edge/${GW}/res/after-second`);
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'after-second' }), { qos: 1 });
    await waitFor(() => res.some((m) => (m.payload as { status?: string }).status === 'successful'), { timeoutMs: 15_000, what: 'diagnostics answered by the first agent' });
    assert.equal(((await agent.admin('status')) as Report).broker?.connects, earlier.broker?.connects);
  });

  test('after SIGTERM: exit 3, not running, lastStoppedAt recorded, version and gatewayId from the store', async () => {
    const exit = await agent.stop();
    assert.equal(exit.code, 0);
    const { code, report } = await statusJson(agent.configPath);
    assert.equal(code, 3);
    assert.equal(report.daemon, 'not running');
    assert.equal(report.version, '1.0.0');
    assert.equal(report.gatewayId, GW);
    assert.equal(report.pid, agent.pid);
    assert.ok(Number.isFinite(Date.parse(report.lastStoppedAt ?? '')), `lastStoppedAt: ${report.lastStoppedAt}`);
    assert.equal(report.broker?.connected, false);

    const text = await runCli(['status', '--config', agent.configPath]);
    assert.equal(text.code, 3);
    assert.match(text.stdout, /not running/);
  });

  test('event with the daemon down exits 3 with a clear message', async () => {
    const r = await runCli(['event', '--config', agent.configPath, '--code', 'maintenance-note', '--message', 'hi']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /not running/);
  });

  test('after kill -9: exit 3, the stale socket is handled, lastStoppedAt not recorded', async () => {
    const a = start();
    await agentConnected(a, 20_000);
    await a.kill9();
    assert.ok(existsSync(join(dataDir, 'agent.sock')), 'the killed daemon left its socket file behind');
    const { code, report } = await statusJson(a.configPath);
    assert.equal(code, 3);
    assert.equal(report.daemon, 'not running');
    assert.equal(report.pid, a.pid);
    assert.match(report.lastStoppedAt ?? '', /not recorded/);

    // The stale socket file does not stop the next daemon either.
    const b = start();
    await agentConnected(b, 20_000);
    assert.equal((await statusJson(b.configPath)).report.pid, b.pid);
  });

  test('a data directory where the agent never ran: exit 3, the store is absent', async () => {
    const dir = tempDir('agent-never-');
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, `gatewayId: ${GW}\ndataDir: ${JSON.stringify(join(dir, 'data'))}\n`);
    const { code, report } = await statusJson(cfg);
    assert.equal(code, 3);
    assert.equal(report.daemon, 'not running');
    assert.match(report.store ?? '', /absent/);
    const text = await runCli(['status', '--config', cfg]);
    assert.equal(text.code, 3);
    assert.match(text.stdout, /store\s+absent/);
  });
});
