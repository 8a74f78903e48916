/**
 * The watchdog over the real PLC bridge: the agent (no systemd, `plcBridge.launch: auto`) starts
 * the bridge detached and supervises it through its control socket.
 * - kill -9 of the bridge, 20 times: each time a new bridge process runs and data flows again;
 *   every kill is an incident;
 * - SIGSTOP (a hung bridge): detected by its missing heartbeat within the deadline, killed and
 *   restarted, recorded as `hung`.
 * The times from kill to data are reported as diagnostics; bench/ measures them as figures.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, waitFor, type Received } from '../helpers/util.js';
import { runCli, type AgentProcess } from '../helpers/agent.js';
import { bridgePing } from '../helpers/bridge.js';
import { killQuietly, startSupervisedBridge, type SupervisedBridge } from '../helpers/supervised-bridge.js';

const ROOT = 'edge/gw-test';

let broker: Broker;
let wms: MqttClient;
let bridge: SupervisedBridge;
let agent: AgentProcess;
let socket = '';
let got: Received[] = [];

before(async () => {
  broker = await startBroker();
  wms = await mqttClient(broker.url);
  got = await collect(wms, `${ROOT}/plc/#`);
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  // 20 kills in a row are the test, not a crash loop to escalate.
  bridge = await startSupervisedBridge({ broker, name: 'plc-recovery', simArgs: ['--churn', '1'], intervalMs: 100, escalation: { restoreConfigAfter: 1000, rollbackAfter: 1000, slowRetryAfter: 1000 } });
  ({ agent, socket } = bridge);
});

after(async () => {
  await bridge?.stop();
  await wms?.endAsync();
  await broker?.stop();
});

test('kill -9 of the bridge 20 times: each time running again with data flowing', { timeout: 240_000 }, async (t) => {
  const times: number[] = [];
  for (let i = 1; i <= 20; i++) {
    const before = await bridgePing(socket);
    assert.ok(before, `round ${i}: a bridge runs`);
    const killedAt = Date.now();
    killQuietly(before.pid, 'SIGKILL');
    const mark = got.length;
    await waitFor(async () => {
      const p = await bridgePing(socket, 500);
      return p !== undefined && p.pid !== before.pid && p.role === 'active' && got.slice(mark).some((m) => m.topic === `${ROOT}/plc/plc0/fast` && Date.parse((m.payload as { ts: string }).ts) > killedAt);
    }, { timeoutMs: 15_000, intervalMs: 10, what: `round ${i}: a new bridge with data after the kill; agent log:\n${agent.logText().slice(-3000)}` });
    times.push(Date.now() - killedAt);
  }
  const sorted = [...times].sort((a, b) => a - b);
  t.diagnostic(`kill -9 -> data again: median ${sorted[10]} ms, max ${sorted.at(-1)} ms`);
  const status = (await agent.admin('status')) as { components: { name: string; state: string; restarts: number }[] };
  const bridge = status.components.find((c) => c.name === 'plc-bridge');
  assert.ok(bridge && bridge.restarts >= 20, `restarts counted: ${JSON.stringify(bridge)}`);
  const listed = await runCli(['incidents', '--json', '--config', agent.configPath, '--component', 'plc-bridge']);
  assert.equal(listed.code, 0, listed.stderr);
  const incidents = JSON.parse(listed.stdout) as { cause: string; signal?: string }[] | { incidents: { cause: string; signal?: string }[] };
  const list = Array.isArray(incidents) ? incidents : incidents.incidents;
  assert.ok(list.filter((x) => x.cause === 'exited').length >= 20, `20 incidents: ${listed.stdout.slice(0, 500)}`);
});

test('a hung bridge (SIGSTOP) is detected by its heartbeat, killed and restarted', { timeout: 60_000 }, async () => {
  const before = await bridgePing(socket);
  assert.ok(before);
  const stoppedAt = Date.now();
  killQuietly(before.pid, 'SIGSTOP');
  try {
    await waitFor(async () => {
      const p = await bridgePing(socket, 500);
      return p !== undefined && p.pid !== before.pid && p.role === 'active';
    }, { timeoutMs: 20_000, what: `a new bridge after the hang; agent log:\n${agent.logText().slice(-3000)}` });
  } finally {
    killQuietly(before.pid, 'SIGKILL');
  }
  const took = Date.now() - stoppedAt;
  // The deadline runs from the last answered ping, up to one probe interval (500 ms) before the stop.
  assert.ok(took >= 1500, `not restarted before the 2 s heartbeat deadline (${took} ms)`);
  assert.ok(took <= 2000 + 500 + 1000 + 5000, `restarted within deadline + probe interval + TERM grace + 5 s (${took} ms)`);
  const listed = await runCli(['incidents', '--json', '--config', agent.configPath, '--component', 'plc-bridge']);
  assert.match(listed.stdout, /"cause":\s*"hung"/);
});
