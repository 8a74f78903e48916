/**
 * The bridge under systemd's notify protocol (edge-plc-bridge.service is Type=notify,
 * NotifyAccess=all, WatchdogSec): READY=1 with a first WATCHDOG=1, watchdog pings at half of
 * WATCHDOG_USEC, and on a handover the successor announces itself with MAINPID= before its
 * predecessor leaves, then READY=1 with a watchdog ping; the predecessor leaves without STOPPING=1.
 * Tested with our own NOTIFY_SOCKET.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type Broker } from '../helpers/broker.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { tempDir, waitFor } from '../helpers/util.js';
import { notifySocket, type NotifySocket } from '../helpers/notify-socket.js';
import { bridgeActive, bridgeSocketOf, pidAlive, startBridge, upgradeBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';

let broker: Broker;
let sim: SimProcess;
let notify: NotifySocket;
const bridges: BridgeProcess[] = [];
const successors: number[] = [];

before(async () => {
  broker = await startBroker();
  sim = await startSimProcess(['--churn', '1']);
  notify = notifySocket();
});

after(async () => {
  for (const pid of successors) if (pidAlive(pid)) process.kill(pid, 'SIGTERM');
  for (const b of bridges) await b.stop();
  notify?.close();
  await sim?.stop();
  await broker?.stop();
});

test('READY=1 with a watchdog ping, pings at half the period, MAINPID= from the successor of a handover', { timeout: 60_000 }, async () => {
  const dir = tempDir('plc-notify');
  const config = writeBridgeConfig(dir, {
    mqtt: { url: broker.url },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 500, groups: [{ name: 'g', intervalMs: 100, tags: [{ name: 'c', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  const env = { ...notify.env, WATCHDOG_USEC: '1000000' };
  const first = startBridge(config, [], env);
  bridges.push(first);
  await bridgeActive(bridgeSocketOf(dir), first);
  await waitFor(() => notify.messages.some((m) => m.includes('READY=1')), { timeoutMs: 5000, what: 'READY=1' });
  const ready = notify.messages.find((m) => m.includes('READY=1'))!;
  assert.match(ready, new RegExp(`MAINPID=${first.pid}`));
  assert.match(ready, /WATCHDOG=1/, 'the first ping goes with READY=1');
  const mark = notify.messages.length;
  await new Promise((r) => setTimeout(r, 1600));
  const pings = notify.messages.slice(mark).filter((m) => m === 'WATCHDOG=1').length;
  assert.ok(pings >= 2, `pings at half of WATCHDOG_USEC (1 s): ${pings} in 1.6 s`);

  const before = notify.messages.length;
  // The bridge starts its successor itself (upgrade), which inherits its environment.
  const second = await upgradeBridge(bridgeSocketOf(dir));
  successors.push(second);
  await first.exited;
  const after = notify.messages.slice(before);
  const mainpid = after.findIndex((m) => m === `MAINPID=${second}`);
  const readyAgain = after.findIndex((m) => m.includes(`MAINPID=${second}`) && m.includes('READY=1') && m.includes('WATCHDOG=1'));
  assert.ok(mainpid >= 0, `the successor announced MAINPID before taking over: ${JSON.stringify(after)}`);
  assert.ok(readyAgain > mainpid, 'then READY=1 with a watchdog ping');
  assert.ok(!after.some((m) => m.includes('STOPPING=1')), 'the predecessor did not say STOPPING=1: systemd would stop the whole unit');
});
