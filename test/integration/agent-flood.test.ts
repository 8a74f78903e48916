/**
 * A command flood against a real Mosquitto and the real agent binary under a simulated systemd
 * (NOTIFY_SOCKET, WATCHDOG_USEC): every id gets exactly one terminal status, `edge-agent status`
 * keeps answering that the daemon runs while the flood goes on, and WATCHDOG=1 keeps coming: no
 * gap between two pings reaches WATCHDOG_USEC, after which systemd would kill the agent.
 *
 * Behaviour only; how late the event loop runs under a flood is measured in bench/ (flood).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { notifySocket, type NotifySocket } from '../helpers/notify-socket.js';

const GW = 'gw-flood';
const N = Number(process.env.FLOOD_COMMANDS ?? 4000);
/** systemd kills a unit whose pings are further apart than this; the agent pings every half of it. */
const WATCHDOG_MS = 10_000;
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

interface Status {
  id: string;
  status: string;
  reason?: { code: string };
}

describe('a flood of commands', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let wms: MqttClient;
  let got: Received[];
  let ns: NotifySocket;
  const dataDir = join(tempDir('agent-flood-'), 'data');

  before(async () => {
    // No inflight window: the broker sends the whole flood at once, the harder case (mosquitto's default is 20).
    broker = await startBroker({ maxInflight: 0 });
    wms = await mqttClient(broker.url);
    got = await collect(wms, `edge/${GW}/res/#`);
    ns = notifySocket();
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url } }, env: { ...ns.env, WATCHDOG_USEC: String(WATCHDOG_MS * 1000) } });
    await agentConnected(agent, 20_000);
    await ns.waitFor('READY=1', 10_000);
  });

  after(async () => {
    await wms?.endAsync();
    await agent?.stop();
    ns?.close();
    await broker?.stop();
  });

  test(`${N} diagnostics commands: one terminal status each, status answers, the watchdog pings keep coming`, async () => {
    // When each WATCHDOG=1 arrived (polled often; a ping is a datagram, kept until read).
    const pingsAt: number[] = [];
    let seen = 0;
    const pings = (): number => ns.messages.filter((m) => m.split('\n').includes('WATCHDOG=1')).length;
    const poll = setInterval(() => {
      const n = pings();
      for (; seen < n; seen++) pingsAt.push(Date.now());
    }, 20);
    const statusAnswers: string[] = [];
    let flooding = true;
    const statusLoop = (async () => {
      while (flooding) {
        const r = await runCli(['status', '--json', '--config', agent.configPath]);
        let daemon = `exit ${r.code}: ${r.stdout.slice(0, 200)}${r.stderr.slice(0, 200)}`;
        try {
          daemon = String((JSON.parse(r.stdout) as { daemon?: unknown }).daemon);
        } catch {
          /* kept as the raw answer */
        }
        statusAnswers.push(daemon);
      }
    })();

    try {
      const ids = Array.from({ length: N }, (_, i) => `fl-${i}`);
      for (let i = 0; i < ids.length; i += 200) {
        await Promise.all(ids.slice(i, i + 200).map((id) => wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id }), { qos: 1 })));
      }
      const terminal = (): Map<string, string[]> => {
        const m = new Map<string, string[]>();
        for (const r of got) {
          const p = r.payload as Status;
          if (!TERMINAL.has(p.status)) continue;
          m.set(p.id, [...(m.get(p.id) ?? []), p.status === 'rejected' ? `rejected:${p.reason?.code}` : p.status]);
        }
        return m;
      };
      await waitFor(() => terminal().size === N, { timeoutMs: 240_000, intervalMs: 250, what: `a terminal status for all ${N} (have ${terminal().size})\n${agent.logText().slice(-2000)}` });
      flooding = false;
      await statusLoop;
      // One more ping after the flood, so the last gap measured covers its end.
      const n = pings();
      await waitFor(() => pings() > n, { timeoutMs: 2 * WATCHDOG_MS, what: 'a WATCHDOG=1 after the flood' });
      const t = terminal();
      for (const id of ids) {
        const kinds = t.get(id) ?? [];
        assert.equal(kinds.length, 1, `${id}: exactly one terminal status, got ${kinds.join(', ')}`);
        assert.ok(kinds[0] === 'successful' || kinds[0] === 'rejected:busy', `${id} ended ${kinds[0]}`);
      }
      const kinds = [...t.values()].map((k) => k[0]);
      console.log(`flood: ${kinds.filter((k) => k === 'successful').length} successful, ${kinds.filter((k) => k === 'rejected:busy').length} busy; ${statusAnswers.length} status answers; ${pingsAt.length} pings`);
    } finally {
      flooding = false;
      await statusLoop;
      clearInterval(poll);
    }
    assert.ok(statusAnswers.length >= 1, 'status was asked during the flood');
    assert.deepEqual([...new Set(statusAnswers)], ['running'], `every status answer during the flood says the daemon runs: ${JSON.stringify(statusAnswers)}`);
    const gaps = pingsAt.slice(1).map((t, i) => t - pingsAt[i]!);
    assert.ok(pingsAt.length >= 2, `pings kept coming during the flood: ${pingsAt.length}`);
    assert.ok(gaps.every((g) => g < WATCHDOG_MS), `no gap between two WATCHDOG=1 reaches WATCHDOG_USEC (${WATCHDOG_MS} ms): ${JSON.stringify(gaps)}`);
    const st = (await agent.admin('status')) as { daemon: string; pid: number };
    assert.equal(st.pid, agent.pid);
  });
});
