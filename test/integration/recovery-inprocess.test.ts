/**
 * The watchdog over the agent's own parts, in a real agent against a real Mosquitto:
 *
 * - The broker stopped for a while (longer than the link's hang deadline): the link keeps making
 *   attempts, so `wms-link` is not restarted (function is not liveness).
 * - EDGE_AGENT_FAULT=link-stall (the link loses its reconnect after the first disconnect) and the
 *   broker restarted: the watchdog finds `wms-link` hung, restarts it in place, the agent is
 *   `online` again on `~/status`, and `edge-agent incidents --json` lists the `hung` incident.
 *
 * Short timings: mqtt.reconnect.maxMs 500 and connectTimeoutMs 1000 make the link's hang deadline
 * 2 x (500 + 1000) = 3 s; the watchdog believes a hang after 2 s of it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import type { ComponentStatus } from '../../recovery/supervisor.js';
import type { Incident } from '../../recovery/incidents.js';

const HANG_DEADLINE_MS = 3000;

function config(url: string): Record<string, unknown> {
  return {
    mqtt: { url, connectTimeoutMs: 1000, reconnect: { initialMs: 100, maxMs: 500, factor: 2, jitter: 0 } },
    recovery: { intervalMs: 200, healthyMs: 2000, backoff: { initialMs: 100, maxMs: 800, factor: 2, jitter: 0 } },
  };
}

async function components(agent: AgentProcess): Promise<Record<string, ComponentStatus>> {
  const s = (await agent.admin('status')) as { components?: ComponentStatus[] };
  return Object.fromEntries((s.components ?? []).map((c) => [c.name, c]));
}

async function incidents(agent: AgentProcess): Promise<Incident[]> {
  const r = await runCli(['incidents', '--json', '--component', 'wms-link', '--config', agent.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { incidents: Incident[] }).incidents;
}

describe('the watchdog over the agent itself', () => {
  let broker: Broker;
  const agents: AgentProcess[] = [];
  const clients: MqttClient[] = [];

  before(async () => {
    broker = await startBroker();
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.kill9()));
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.stop();
  });

  test('its parts are supervised; a broker stopped for longer than the hang deadline is not a reason to restart the link', async () => {
    const agent = startAgent({ dataDir: join(tempDir('inproc-outage'), 'data'), gatewayId: 'gw-out', config: config(broker.url) });
    agents.push(agent);
    await agentConnected(agent, 20_000);
    await waitFor(async () => (await components(agent))['wms-link']?.state === 'running', { timeoutMs: 10_000, what: `wms-link running\n${agent.logText().slice(-2000)}` });
    const before = await components(agent);
    for (const name of ['wms-link', 'health-sampler', 'update-runner']) {
      assert.equal(before[name]?.kind, 'in-process', `${name} is supervised in-process`);
      assert.equal(before[name]?.pid, agent.pid);
    }

    await broker.stop();
    await waitFor(async () => ((await agent.admin('status')) as { broker: { connected: boolean } }).broker.connected === false, { timeoutMs: 10_000, what: 'the agent disconnected' });
    const attempts = ((await agent.admin('status')) as { broker: { attempts: number } }).broker.attempts;
    await new Promise((r) => setTimeout(r, 3 * HANG_DEADLINE_MS));
    const during = await components(agent);
    const stats = ((await agent.admin('status')) as { broker: { attempts: number; connected: boolean } }).broker;
    await broker.restart();
    await agentConnected(agent, 20_000);

    assert.equal(stats.connected, false);
    assert.ok(stats.attempts >= attempts + 5, `the link kept trying: ${stats.attempts - attempts} attempts during the outage`);
    assert.equal(during['wms-link']?.state, 'running');
    assert.equal(during['wms-link']?.restarts, 0, 'wms-link was not restarted');
    assert.equal(during['wms-link']?.lastFailure, undefined);
    assert.equal((await components(agent))['wms-link']?.restarts, 0);
    assert.deepEqual(await incidents(agent), []);
  });

  test('a link that stopped reconnecting (EDGE_AGENT_FAULT=link-stall) is found hung and restarted; the agent is online again', async () => {
    const gw = 'gw-stall';
    const agent = startAgent({ dataDir: join(tempDir('inproc-stall'), 'data'), gatewayId: gw, config: config(broker.url), env: { EDGE_AGENT_FAULT: 'link-stall' } });
    agents.push(agent);
    await agentConnected(agent, 20_000);

    await broker.restart();
    const restartedAt = Date.now();
    // The retained status from before the restart survives in the broker's persistence: only a
    // newer one shows the agent came back.
    const wms = await mqttClient(broker.url);
    clients.push(wms);
    const statuses = await collect(wms, `edge/${gw}/status`);
    const onlineAgain = (): boolean =>
      statuses.some((m) => {
        const p = m.payload as { state?: string; ts?: string };
        return p.state === 'online' && Date.parse(p.ts ?? '') >= restartedAt;
      });

    await waitFor(async () => ((await components(agent))['wms-link']?.restarts ?? 0) >= 1, {
      timeoutMs: 20_000,
      what: `wms-link restarted by the watchdog\n${agent.logText().slice(-3000)}`,
    });
    assert.ok(agent.logs.some((l) => typeof l === 'object' && typeof l.msg === 'string' && l.msg.includes('fault injection (link-stall)')), 'the fault fired');
    await waitFor(onlineAgain, { timeoutMs: 15_000, what: `a new retained online status\n${JSON.stringify(statuses)}` });
    await agentConnected(agent, 10_000);

    const link = (await components(agent))['wms-link'];
    assert.equal(link?.lastFailure?.cause, 'hung');
    const hung = (await incidents(agent)).find((i) => i.cause === 'hung');
    assert.ok(hung, 'a `hung` incident is listed');
    assert.equal(hung.component, 'wms-link');
    assert.equal(hung.action, 'restart');
    assert.match(hung.detail ?? '', /wms-link reports itself hung/);
  });
});
