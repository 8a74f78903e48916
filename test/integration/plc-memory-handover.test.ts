/**
 * The bridge's memory budget (docs/plc-bridge.md, Memory budget): a bridge whose heap grows past
 * its budget hands over to a fresh instance of the same release, with no seq gap and no missed
 * poll interval, and the fresh one (clean heap) stays; a budget below what a fresh bridge needs
 * does not make the bridge hand over in a loop: it logs an error and keeps publishing.
 * `EDGE_AGENT_FAULT=leak` gives the control socket `fault-leak {mb}` (plc-bridge/fault-leak.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { rpcRequest } from '../../lib/rpc.js';
import { startSimProcess, type SimProcess } from '../helpers/plc-sim-process.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type OutputLine, type Received } from '../helpers/util.js';
import { bridgeActive, bridgePing, bridgeSocketOf, startBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';

const ROOT = 'edge/gw-test';
const MiB = 1024 * 1024;
const CHECK_MS = 1000;
/** The budget acts at 90 % (lib/memory-budget.ts). */
const threshold = (heapBytes: number): number => heapBytes * 0.9;

let broker: Broker;
let sim: SimProcess;
let wms: MqttClient;
const bridges: BridgeProcess[] = [];
/** Successors the bridges started themselves: not our children, stopped by pid. */
const successors = new Set<number>();

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

before(async () => {
  broker = await startBroker();
  // Register 0 changes on every read (every cycle reports); the PLC runs in its own process.
  sim = await startSimProcess(['--churn', '1']);
  wms = await mqttClient(broker.url);
});

after(async () => {
  for (const pid of successors) if (alive(pid)) process.kill(pid, 'SIGTERM');
  for (const b of bridges) await b.stop();
  await waitFor(() => [...successors].every((p) => !alive(p)), { timeoutMs: 15_000, what: 'the successors to stop' }).catch(() => {
    for (const pid of successors) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  await wms?.endAsync();
  await sim?.stop();
  await broker?.stop();
});

function bridgeConfig(name: string, heapBytes: number): { dir: string; config: string; socket: string; topic: string } {
  const dir = tempDir(`plc-memory-${name}`);
  const config = writeBridgeConfig(dir, {
    mqtt: { url: broker.url },
    // The heap only: the leak grows the RSS too, and the test is about one trigger.
    memory: { rssBytes: 0, heapBytes, checkIntervalMs: CHECK_MS },
    devices: [
      {
        name,
        host: '127.0.0.1',
        port: sim.ports[0],
        unitId: 1,
        timeoutMs: 500,
        groups: [{ name: 'fast', intervalMs: 100, tags: [{ name: 'counter', area: 'holding', address: 0, type: 'uint16' }, ...Array.from({ length: 40 }, (_, i) => ({ name: `r${i}`, area: 'holding', address: 10 + i, type: 'uint16' }))] }],
      },
    ],
  });
  return { dir, config, socket: bridgeSocketOf(dir), topic: `${ROOT}/plc/${name}/fast` };
}

interface MemoryStatus {
  heapUsedBytes: number;
  budget: string;
}
const memoryOf = async (socket: string): Promise<MemoryStatus> => ((await rpcRequest(socket, 'status', {}, 5000)) as { memory: MemoryStatus }).memory;
/** Log lines with this message (or its start) from this pid; a successor writes to its predecessor's stdout. */
const lines = (logs: readonly OutputLine[], msg: string, pid?: number): Record<string, unknown>[] =>
  logs.filter((l): l is Record<string, unknown> => typeof l === 'object' && typeof l.msg === 'string' && l.msg.startsWith(msg) && (pid === undefined || l.pid === pid));

test('a leak past the heap budget: a handover to a fresh instance, no gap, and no second one', { timeout: 90_000 }, async () => {
  const heapBytes = 64 * MiB;
  const { config, socket, topic } = bridgeConfig('leaky', heapBytes);
  const got: Received[] = await collect(wms, `${topic}`);
  const first = startBridge(config, [], { EDGE_AGENT_FAULT: 'leak' });
  bridges.push(first);
  await bridgeActive(socket, first);
  // Past the guard for a budget below the baseline (memory-guard.ts: 5 check intervals), and
  // data flowing before the leak.
  await waitFor(() => dataMessages(got, topic).length >= 70, { timeoutMs: 30_000, what: '7 s of data' });
  const before = await memoryOf(socket);
  assert.ok(before.heapUsedBytes < threshold(heapBytes) - 16 * MiB, `the baseline heap (${before.heapUsedBytes}) is well below the budget`);
  assert.equal(before.budget, 'watching');

  const mb = Math.ceil((threshold(heapBytes) - before.heapUsedBytes) / MiB) + 16;
  const leak = (await rpcRequest(socket, 'fault-leak', { mb }, 10_000)) as { heldMb: number };
  assert.equal(leak.heldMb, mb);
  assert.ok((await memoryOf(socket)).heapUsedBytes >= threshold(heapBytes), 'the leak counts in heapUsed');

  await waitFor(() => lines(first.logs, 'memory budget reached', first.pid).length > 0, { timeoutMs: 15_000, what: "the 'memory budget reached' log line" });
  let successor = 0;
  await waitFor(
    async () => {
      const p = await bridgePing(socket);
      if (p && p.pid !== first.pid && p.role === 'active') successor = p.pid;
      return successor !== 0;
    },
    { timeoutMs: 40_000, what: 'a new bridge active on the control socket' },
  );
  successors.add(successor);
  const exited = await first.exited;
  assert.equal(exited.code, 0, `the leaking instance exits 0 after the handover; log:\n${first.logText().slice(-3000)}`);
  assert.ok(!alive(first.pid));

  // A few check intervals: the fresh instance (same environment, not asked to leak) stays.
  const handedOverAt = dataMessages(got, topic).length;
  await waitFor(() => dataMessages(got, topic).length >= handedOverAt + 5 * (CHECK_MS / 100), { timeoutMs: 30_000, what: '5 check intervals of data from the successor' });
  assert.equal((await bridgePing(socket))?.pid, successor, 'the successor keeps the role');
  const now = await memoryOf(socket);
  assert.ok(now.heapUsedBytes < threshold(heapBytes) - 16 * MiB, `the successor starts clean (heap ${now.heapUsedBytes})`);
  assert.equal(now.budget, 'watching');
  assert.deepEqual(lines(first.logs, 'memory budget', successor), [], 'the successor does not reach its budget');
  assert.deepEqual(lines(first.logs, 'successor started', successor), [], 'the successor does not hand over again');

  const report = gapReport(dataMessages(got, topic), 100);
  assert.deepEqual(report.seqGaps, [], 'seq continues across the handover');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
  assert.equal(report.duplicates, 0, 'no seq published twice');
});

test('a heap budget below the baseline: an error, no handover loop, data keeps flowing', { timeout: 60_000 }, async () => {
  const heapBytes = 8 * MiB;
  const { config, socket, topic } = bridgeConfig('tight', heapBytes);
  const got: Received[] = await collect(wms, `${topic}`);
  const b = startBridge(config);
  bridges.push(b);
  await bridgeActive(socket, b);
  await waitFor(() => lines(b.logs, 'memory budget below what a fresh bridge needs', b.pid).length > 0, { timeoutMs: 15_000, what: 'the below-baseline error' });
  const [err] = lines(b.logs, 'memory budget below what a fresh bridge needs', b.pid);
  assert.equal(err?.level, 50, 'logged as an error');
  assert.deepEqual((err?.budget as { heapBytes: number }).heapBytes, heapBytes, 'with the budget');
  assert.ok((err?.baseline as { heap: number }).heap > threshold(heapBytes), 'and the baseline above it');
  assert.equal((await memoryOf(socket)).budget, 'off-below-baseline');
  await assert.rejects(rpcRequest(socket, 'fault-leak', { mb: 1 }), { code: 'unknown-method' }, 'no fault hook without EDGE_AGENT_FAULT=leak');

  // Several check intervals later: the same instance, still publishing, never handed over.
  const seen = dataMessages(got, topic).length;
  await waitFor(() => dataMessages(got, topic).length >= seen + 6 * (CHECK_MS / 100), { timeoutMs: 30_000, what: '6 more check intervals of data' });
  const holder = (await bridgePing(socket))?.pid;
  if (holder !== undefined && holder !== b.pid) successors.add(holder);
  assert.equal(holder, b.pid, 'the same bridge holds the role');
  assert.equal(b.proc.exitCode, null, 'and runs');
  assert.deepEqual(lines(b.logs, 'memory budget reached'), [], 'no handover for memory');
  assert.deepEqual(lines(b.logs, 'successor started'), [], 'no successor started');
  const report = gapReport(dataMessages(got, topic), 100);
  assert.deepEqual(report.seqGaps, [], 'no seq gap');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
});
