/**
 * The bridge's control socket does not trust its caller (issue #12, item 8), black-box: an A/B
 * install whose slot B holds a release below the security floor, the real bridge running from
 * slot A, a real Mosquitto and the simulated PLC. A member of the socket's group:
 * - cannot move the bridge onto slot B's code with `upgrade {cli}` (only the active slot of
 *   slots.json, committed or on trial, at or above the floor);
 * - cannot silence the data with a bare `handover {}` (only the successor the bridge spawned
 *   itself may take over), nor make it exit with `handover` + `handover-done`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { rpcRequest } from '../../lib/rpc.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, collectLines, exitOf, linesText, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { bridgePing, bridgeSocketOf, writeBridgeConfig } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { makeRelease } from '../helpers/ota-root.js';
import { REPO } from '../helpers/agent.js';

const ROOT = 'edge/gw-test';

let broker: Broker;
let sim: SimProcess;
let wms: MqttClient;
let stopBridge: (() => Promise<void>) | undefined;

before(async () => {
  broker = await startBroker();
  sim = await startSimProcess(['--churn', '1']);
  wms = await mqttClient(broker.url);
});

after(async () => {
  await stopBridge?.();
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

async function refused(socket: string, method: string, params: Record<string, unknown>): Promise<string | undefined> {
  try {
    await rpcRequest(socket, method, params, 30_000);
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).message;
  }
  return undefined;
}

test('upgrade only to the active slot; handover only by the successor the bridge spawned; no silence', { timeout: 120_000 }, async () => {
  const root = tempDir('plc-trust');
  makeRelease(join(root, 'slots', 'A'), '1.2.0');
  makeRelease(join(root, 'slots', 'B'), '1.1.0');
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
  writeFileSync(
    join(root, 'slots.json'),
    JSON.stringify({
      format: 1,
      active: 'A',
      slots: { A: { state: 'committed', version: '1.2.0', securityVersion: 1 }, B: { state: 'committed', version: '1.1.0', securityVersion: 0 } },
      highestSecurityVersion: 1,
    }),
  );
  const dir = join(root, 'bridge');
  mkdirSync(dir);
  const config = writeBridgeConfig(dir, {
    mqtt: { url: broker.url },
    handover: { timeoutMs: 5000 },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 500, groups: [{ name: 'fast', intervalMs: 100, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  const socket = bridgeSocketOf(dir);
  const got: Received[] = await collect(wms, `${ROOT}/plc/#`);
  const cliA = join(root, 'slots', 'A', 'dist', 'agent', 'cli', 'index.js');
  const cliB = join(root, 'slots', 'B', 'dist', 'agent', 'cli', 'index.js');
  const proc = spawn(process.execPath, [cliA, 'plc-bridge', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = collectLines(proc);
  const exited = exitOf(proc);
  stopBridge = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  await waitFor(async () => (await bridgePing(socket))?.pid === proc.pid, { timeoutMs: 20_000, what: 'the bridge from slot A' });
  const topic = `${ROOT}/plc/plc0/fast`;
  await waitFor(() => dataMessages(got, topic).length >= 5, { timeoutMs: 15_000, what: 'data' });
  const from = Date.now();

  // 1. slot B (securityVersion 0, below the floor 1, not the active slot): refused.
  assert.equal(await refused(socket, 'upgrade', { cli: cliB }), 'upgrade-refused');
  // 2. a bare handover, one with a made-up successor, and handover-done: refused.
  assert.equal(await refused(socket, 'handover', {}), 'handover-refused');
  assert.equal(await refused(socket, 'handover', { pid: process.pid, token: 'guess' }), 'handover-refused');
  assert.notEqual(await refused(socket, 'handover-done', {}), undefined, 'handover-done without a handover is refused');
  // Again, as the attacker did: repeating changes nothing.
  assert.equal(await refused(socket, 'handover', {}), 'handover-refused');
  assert.equal(await refused(socket, 'handover-done', { pid: process.pid }), 'not-active');

  await new Promise((r) => setTimeout(r, 2000));
  const ping = await bridgePing(socket);
  assert.equal(ping?.pid, proc.pid, `the bridge of slot A still holds the role; log:\n${linesText(logs).slice(-3000)}`);
  assert.equal(ping?.role, 'active');
  assert.equal(ping?.cli, cliA);
  assert.equal(proc.exitCode, null, 'still running');
  const msgs = dataMessages(got, topic).filter((m) => m.tick >= from - 200);
  const report = gapReport(msgs, 100);
  assert.deepEqual(report.tickGaps, [], 'the data never stopped');
  assert.deepEqual(report.seqGaps, []);
  assert.ok(msgs.some((m) => m.tick > Date.now() - 1000), 'data still flows');
});
