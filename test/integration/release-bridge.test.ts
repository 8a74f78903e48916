/**
 * The PLC bridge runs on the runtime of the slot it comes from (docs/releases.md): self-contained
 * releases built by the release builder (1.1.0 on Node.js 20.20.1, 1.1.1 the same on 20.20.2),
 * installed under the real boot guard on its own runtime, with no Node.js on the PATH, and a
 * simulated PLC in its own process. Each bridge's executable is read from /proc/PID/exe:
 * - the bridge the agent's watchdog starts (plcBridge.launch: auto) runs on slot A's runtime;
 * - after an update that changes only the runtime, its successor (the handover the new agent
 *   asks for) runs on slot B's runtime, the new one;
 * - what edge-plc-bridge.service starts (ROOT/guard/bin/slot-exec) is the bridge itself (exec,
 *   same pid) on the active slot's runtime;
 * - an agent started on another Node.js (here the test's own) still starts its bridge on its
 *   release's runtime.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../../certs/devca.js';
import { buildRelease } from '../../deploy/release.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { keepBundleHead, readBaseManifest } from '../../ota/delta-base.js';
import { guardRuntime, slotExec } from '../../ota/guard-install.js';
import { loadSlots } from '../../ota/slots.js';
import { BRIDGE_NODE_FLAGS } from '../../plc-bridge/node-flags.js';
import { REPO } from '../helpers/agent.js';
import { bridgePing, writeBridgeConfig, type Ping } from '../helpers/bridge.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { makeOtaRoot, resOf, serveBundles, startGuard, statusesOf, terminalsOf, until, type BundleServer } from '../helpers/ota-root.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { collect, mqttClient, processGone, tempDir, waitFor, type Received } from '../helpers/util.js';

const CACHE = join(tmpdir(), 'edge-agent-release-cache');
const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '60000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

let work: string;
let broker: Broker;
let sim: SimProcess;
let server: BundleServer;
let trustPath: string;
let rel110: string;

before(async () => {
  work = tempDir('release-bridge');
  const ca = createCa({ commonName: 'release bridge CA' });
  const signer = issueCert(ca, { commonName: 'release bridge signer', kind: 'codeSigning' });
  trustPath = join(work, 'trust.pem');
  writeFileSync(trustPath, ca.certPem);
  const sign = { compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem };
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  rel110 = buildRelease({ repo: REPO, arch: 'x64', out: join(work, 'out'), cache: CACHE, version: '1.1.0', runtimeVersion: '20.20.1' }).dir;
  await createBundle({ ...sign, inDir: rel110, version: '1.1.0', out: join(bundles, 'full-1.1.0.tar') });
  await keepBundleHead(rel110, join(bundles, 'full-1.1.0.tar'));
  const rel111 = buildRelease({ repo: REPO, arch: 'x64', out: join(work, 'out'), cache: CACHE, version: '1.1.1', runtimeVersion: '20.20.2' }).dir;
  await createBundle({ ...sign, inDir: rel111, version: '1.1.1', out: join(bundles, 'runtime-only.tar'), deltaFrom: await readBaseManifest(rel110) });
  server = await serveBundles(bundles);
  broker = await startBroker();
  sim = await startSimProcess(['--churn', '1']);
});

after(async () => {
  await server?.close();
  await sim?.stop();
  await broker?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const exeOf = (pid: number): string => readlinkSync(`/proc/${pid}/exe`);
const slotNode = (root: string, slot: string): string => join(root, 'slots', slot, 'runtime', 'bin', 'node');

async function activeBridge(socket: string, what: string, pred: (p: Ping) => boolean = () => true): Promise<Ping> {
  let got: Ping | undefined;
  await waitFor(
    async () => {
      const p = await bridgePing(socket);
      if (p?.role === 'active' && pred(p)) got = p;
      return got !== undefined;
    },
    { timeoutMs: 60_000, what },
  );
  return got!;
}

/** The pids of the processes whose command line holds `arg`. */
function processesWith(arg: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(arg)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  await waitFor(() => processGone(pid), { timeoutMs: 20_000, what: `process ${pid} to stop` });
}

test('the PLC bridge runs on its own slot\'s runtime: started by the agent, handed over by a runtime update, started by the unit', { timeout: 300_000 }, async () => {
  const id = 'gw-release-bridge';
  const bridgeDir = join(work, 'bridge');
  const bridgeConfig = writeBridgeConfig(bridgeDir, {
    gatewayId: id,
    mqtt: { url: broker.url },
    handover: { timeoutMs: 10_000 },
    devices: [{ name: 'plc0', host: '127.0.0.1', port: sim.ports[0], unitId: 1, timeoutMs: 500, groups: [{ name: 'fast', intervalMs: 100, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }] }] }],
  });
  const socket = join(bridgeDir, 'data', 'plc-bridge.sock');
  const r = makeOtaRoot({
    releaseDir: rel110,
    version: '1.1.0',
    selfContained: true,
    config: {
      gatewayId: id,
      mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } },
      ota: { trustAnchors: trustPath, healthGate: { stableMs: 1000, timeoutMs: 25_000 } },
      plcBridge: { config: bridgeConfig, launch: 'auto' },
    },
  });
  const emptyPath = join(work, 'empty-path');
  const wms: MqttClient = await mqttClient(broker.url, { clientId: `wms-${id}` });
  const got: Received[] = await collect(wms, `edge/${id}/#`);
  const g = startGuard(r, GUARD_ARGS, { PATH: emptyPath }, guardRuntime(r.root));
  const pids: number[] = [];
  let agent: ChildProcess | undefined;
  try {
    // 1. The bridge the agent's watchdog starts: slot A's runtime (20.20.1).
    const first = await activeBridge(socket, 'the agent to start the bridge');
    pids.push(first.pid);
    assert.equal(exeOf(first.pid), slotNode(r.root, 'A'), 'the bridge runs on slot A\'s runtime');

    // 2. An update that changes only the runtime: the new agent hands the bridge over to slot B's
    //    code, and the successor runs on slot B's runtime, not on its predecessor's.
    await until(g, () => statusesOf(got, id).some((s) => s.state === 'online'), 'the agent online', 60_000);
    for (let n = 1; ; n++) {
      wms.publish(`edge/${id}/cmd/ping`, JSON.stringify({ id: `ready-${n}` }), { qos: 1 });
      if (await until(g, () => resOf(got, id, `ready-${n}`).length > 0, 'ready', 1000).then(() => true, () => false)) break;
      assert.ok(n < 30, 'the agent answers commands');
    }
    wms.publish(`edge/${id}/cmd/update`, JSON.stringify({ id: 'u-runtime', params: { url: server.url('runtime-only.tar') } }), { qos: 1 });
    await until(g, () => terminalsOf(got, id, 'u-runtime').length > 0, 'a terminal status for the update', 120_000);
    const u = resOf(got, id, 'u-runtime').find((p) => ['successful', 'failed', 'rejected', 'cancelled'].includes(p.status))!;
    assert.equal(u.status, 'successful', JSON.stringify(u));
    assert.deepEqual([loadSlots(r.root).active, loadSlots(r.root).slots.B.state], ['B', 'committed']);
    const second = await activeBridge(socket, 'the bridge from slot B', (p) => p.cli?.includes(`${sep}slots${sep}B${sep}`) === true);
    pids.push(second.pid);
    assert.notEqual(second.pid, first.pid);
    assert.equal(exeOf(second.pid), slotNode(r.root, 'B'), 'the successor runs on slot B\'s runtime');
    assert.equal(execFileSync(exeOf(second.pid), ['--version'], { encoding: 'utf8' }).trim(), 'v20.20.2');

    await g.stop();
    await stopPid(second.pid);

    // 3. What edge-plc-bridge.service starts: ROOT/guard/bin/slot-exec execs the active slot's
    //    runtime in its own process (the unit's main PID is the bridge), with the unit's flags.
    const unit = spawn(slotExec(r.root), [r.root, ...BRIDGE_NODE_FLAGS, '--', 'plc-bridge', '--config', bridgeConfig], { env: { PATH: emptyPath }, stdio: 'ignore' });
    const unitPid = unit.pid!;
    pids.push(unitPid);
    const third = await activeBridge(socket, 'the unit\'s bridge', (p) => p.pid === unitPid);
    assert.ok(third.cli?.includes(`${sep}slots${sep}B${sep}`), JSON.stringify(third));
    assert.equal(exeOf(unitPid), slotNode(r.root, 'B'), 'slot-exec execs the active slot\'s runtime');
    const cmdline = readFileSync(`/proc/${unitPid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(cmdline.slice(1, 1 + BRIDGE_NODE_FLAGS.length), [...BRIDGE_NODE_FLAGS], 'with the unit\'s Node flags');
    await stopPid(unitPid);

    // 4. An agent started on another Node.js (the test's) starts its bridge on its release's runtime.
    agent = spawn(process.execPath, [join(r.root, 'slots', 'B', 'dist', 'agent', 'cli', 'index.js'), 'run', '--config', r.configPath], { env: { PATH: emptyPath }, stdio: 'ignore' });
    const fourth = await activeBridge(socket, 'the bridge of an agent on another Node.js', (p) => p.pid !== unitPid);
    pids.push(fourth.pid);
    assert.equal(exeOf(agent.pid!), readlinkSync('/proc/self/exe'), 'the agent runs on the test\'s Node.js');
    assert.equal(exeOf(fourth.pid), slotNode(r.root, 'B'), 'its bridge on the release\'s own runtime');
  } finally {
    await g.stop();
    // The agent first: its watchdog would start the bridge again.
    if (agent?.pid !== undefined) await stopPid(agent.pid).catch(() => agent?.kill('SIGKILL'));
    for (const pid of pids.reverse()) await stopPid(pid).catch(() => process.kill(pid, 'SIGKILL'));
    // And any bridge on this test's config that none of the above knew (a successor a handover
    // started): it is detached on purpose and would outlive the test.
    for (const pid of processesWith(bridgeConfig)) await stopPid(pid).catch(() => process.kill(pid, 'SIGKILL'));
    await wms.endAsync(true);
    rmSync(r.root, { recursive: true, force: true });
  }
});
