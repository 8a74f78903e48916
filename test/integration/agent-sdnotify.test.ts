/**
 * The real agent binary under a simulated systemd (sd_notify(3) over a real unix datagram socket)
 * and a real Mosquitto: READY=1 once started, WATCHDOG=1 every WATCHDOG_USEC/2, STOPPING=1 on
 * SIGTERM; and graceful shutdown: the agent publishes its retained `offline` status itself, then
 * exits 0 (also on SIGINT).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';
import { notifySocket, type NotifySocket } from '../helpers/notify-socket.js';

const SHUTDOWN_TIMEOUT_MS = 10_000;

type Exit = { code: number | null; signal: NodeJS.Signals | null };

/** The exit, or a rejection naming the agent when it takes longer than `ms`. */
async function exitWithin(a: AgentProcess, ms: number): Promise<Exit> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`agent ${a.pid} did not exit within ${ms} ms\n${a.logText().slice(-3000)}`)), ms);
  });
  try {
    return await Promise.race([a.exited, timeout]);
  } finally {
    clearTimeout(t);
  }
}

const stoppedLine = (a: AgentProcess): Record<string, unknown> | undefined =>
  a.logs.find((l): l is Record<string, unknown> => typeof l === 'object' && l.msg === 'stopped');

describe('the agent under systemd', () => {
  let broker: Broker;
  const agents: AgentProcess[] = [];
  const sockets: NotifySocket[] = [];
  const start = (gatewayId: string, env: NodeJS.ProcessEnv = {}): AgentProcess => {
    const a = startAgent({
      dataDir: join(tempDir('agent-sd-'), 'data'),
      gatewayId,
      config: { mqtt: { url: broker.url }, shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS },
      env,
    });
    agents.push(a);
    return a;
  };

  before(async () => {
    broker = await startBroker();
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.kill9()));
    sockets.forEach((s) => s.close());
    await broker?.stop();
  });

  test('READY=1, WATCHDOG=1 every WATCHDOG_USEC/2, then STOPPING=1 and exit 0 on SIGTERM', async () => {
    const ns = notifySocket();
    sockets.push(ns);
    const a = start('gw-sd', { ...ns.env, WATCHDOG_USEC: '1000000' });
    await ns.waitFor('READY=1', 20_000);
    // READY=1 comes first, and with the watchdog on the first ping goes with it (a restart inside
    // the unit must not leave a gap of most of a watchdog period).
    assert.deepEqual(ns.messages[0]?.split('\n'), ['READY=1', 'WATCHDOG=1'], `READY=1 comes first: ${JSON.stringify(ns.messages)}`);

    // Arrival time of each WATCHDOG=1, to check the interval (500 ms here) rather than just its presence.
    const pings = (): number => ns.messages.filter((m) => m.split('\n').includes('WATCHDOG=1')).length;
    const seenAt: number[] = [];
    await waitFor(
      () => {
        while (seenAt.length < pings()) seenAt.push(Date.now());
        return seenAt.length >= 5;
      },
      { timeoutMs: 15_000, intervalMs: 10, what: `5 WATCHDOG=1 pings; got ${JSON.stringify(ns.messages)}` },
    );
    // Four intervals of 500 ms: about 2 s. Half of WATCHDOG_USEC, not all of it (4 s) and not a busy loop.
    const span = seenAt[4]! - seenAt[0]!;
    assert.ok(span >= 1500 && span < 3200, `5 pings took ${span} ms; expected about 2000 (interval WATCHDOG_USEC/2)`);

    const t0 = Date.now();
    a.proc.kill('SIGTERM');
    const exit = await exitWithin(a, SHUTDOWN_TIMEOUT_MS + 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, a.logText().slice(-3000));
    assert.ok(Date.now() - t0 < SHUTDOWN_TIMEOUT_MS, 'exited within the shutdown timeout');
    await ns.waitFor('STOPPING=1');
    const stopping = ns.messages.findIndex((m) => m.split('\n').includes('STOPPING=1'));
    assert.equal(
      ns.messages.slice(stopping + 1).filter((m) => m.includes('WATCHDOG=1')).length,
      0,
      `no watchdog ping after STOPPING=1: ${JSON.stringify(ns.messages)}`,
    );
    assert.equal(stoppedLine(a)?.exitCode, 0);
  });

  test('SIGTERM: the agent publishes its retained offline status itself, then exits 0', async () => {
    const wms = await mqttClient(broker.url);
    try {
      const got = await collect(wms, 'edge/gw-off/status');
      const a = start('gw-off');
      await agentConnected(a, 20_000);
      await waitFor(() => got.some((m) => (m.payload as { state?: string }).state === 'online'), { timeoutMs: 15_000, what: 'status online' });
      const clientId = 'edge-agent-gw-off';

      a.proc.kill('SIGTERM');
      await waitFor(() => got.some((m) => (m.payload as { state?: string }).state === 'offline'), {
        timeoutMs: 15_000,
        what: `status offline\n${a.logText().slice(-3000)}`,
      });
      const exit = await exitWithin(a, SHUTDOWN_TIMEOUT_MS + 5000);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.equal(stoppedLine(a)?.exitCode, 0, 'the agent logged a clean stop');

      // Not the Last Will: the broker received the offline status from the agent, then a clean
      // DISCONNECT, which discards the will (MQTT 5 section 3.1.2.5).
      await waitFor(() => broker.logs().includes(`Client ${clientId} disconnected.`), {
        timeoutMs: 10_000,
        what: `a clean disconnect in the broker log\n${broker.logs().slice(-3000)}`,
      });
      const lines = broker.logs().split('\n');
      const disconnect = lines.findIndex((l) => l.includes(`Received DISCONNECT from ${clientId}`));
      assert.ok(disconnect >= 0, `the agent sent DISCONNECT\n${broker.logs().slice(-3000)}`);
      const publishes = lines.slice(0, disconnect).filter((l) => l.includes(`Received PUBLISH from ${clientId} `) && l.includes("'edge/gw-off/status'"));
      assert.ok(publishes.length >= 2 && /\bq1, r1\b/.test(publishes.at(-1)!), `online, then offline published by the agent:\n${publishes.join('\n')}`);
      const offline = got.filter((m) => (m.payload as { state?: string }).state === 'offline');
      assert.equal(offline.length, 1, 'offline once: the will was not published as well');
      assert.deepEqual(Object.keys(offline[0]!.payload as object).sort(), ['since', 'slot', 'state', 'ts', 'version']);

      // A late subscriber gets the retained offline status.
      const late = await mqttClient(broker.url);
      try {
        const lateGot = await collect(late, 'edge/gw-off/status');
        await waitFor(() => lateGot.some((m) => m.retain), { timeoutMs: 10_000, what: 'the retained status' });
        assert.equal((lateGot.find((m) => m.retain)!.payload as { state: string }).state, 'offline');
      } finally {
        await late.endAsync();
      }
    } finally {
      await wms.endAsync();
    }
  });

  test('SIGINT exits 0', async () => {
    const a = start('gw-int');
    await agentConnected(a, 20_000);
    a.proc.kill('SIGINT');
    const exit = await exitWithin(a, SHUTDOWN_TIMEOUT_MS + 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, a.logText().slice(-3000));
    const reason = a.logs.find((l): l is Record<string, unknown> => typeof l === 'object' && l.msg === 'shutting down')?.reason;
    assert.equal(reason, 'SIGINT');
    assert.equal(stoppedLine(a)?.exitCode, 0);
  });
});
