/**
 * PLC writes in the agent's audit trail, with real processes: Mosquitto, a pymodbus PLC, the PLC
 * bridge and the agent. A WMS set on `~/plc/{device}/set` appears in `edge-agent audit` with
 * its actor, values, read-back and outcome; a refused one with its code; writes made while the
 * agent is stopped, before and after a bridge handover, appear once it is back, each once, in
 * the bridge's order without a gap; the chain still verifies.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentReady, runAgent, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { bridgeActive, bridgeSocketOf, pidAlive, startBridge, upgradeBridge, writeBridgeConfig, type BridgeProcess } from '../helpers/bridge.js';
import { startPymodbus, type PymodbusServer } from '../helpers/pymodbus.js';
import type { AuditEntry } from '../../core/audit.js';

const GW = 'gw-plc-audit';

describe('PLC writes in the audit trail', () => {
  let broker: Broker;
  let plc: PymodbusServer;
  let bridge: BridgeProcess;
  let agent: AgentProcess;
  let wms: MqttClient;
  let results: Received[];
  let dir = '';
  let bridgeConfig = '';
  let successor: number | undefined;

  before(async () => {
    broker = await startBroker();
    plc = await startPymodbus({ init: { holding: [7, 0, 0] } });
    dir = tempDir('plc-write-audit-');
    bridgeConfig = writeBridgeConfig(dir, {
      gatewayId: GW,
      mqtt: { url: broker.url },
      devices: [
        {
          name: 'plc0',
          host: '127.0.0.1',
          port: plc.port,
          unitId: 1,
          timeoutMs: 500,
          groups: [
            {
              name: 'cmd',
              intervalMs: 300,
              tags: [
                { name: 'speed', area: 'holding', address: 0, type: 'uint16' },
                { name: 'setpoint', area: 'holding', address: 1, type: 'uint16', access: 'read-write', max: 1000 },
              ],
            },
          ],
        },
      ],
    });
    bridge = startBridge(bridgeConfig);
    await bridgeActive(bridgeSocketOf(dir), bridge);
    wms = await mqttClient(broker.url);
    results = await collect(wms, `edge/${GW}/res/+`);
    agent = startAgent({ dataDir: join(dir, 'agent'), gatewayId: GW, config: { mqtt: { url: broker.url }, plcBridge: { config: bridgeConfig, launch: 'never' } } });
    await agentReady(agent, 20_000);
  });

  after(async () => {
    wms?.end(true);
    await agent?.stop();
    await bridge?.stop();
    if (successor !== undefined && pidAlive(successor)) {
      process.kill(successor, 'SIGTERM');
      await waitFor(() => !pidAlive(successor!), { timeoutMs: 20_000, what: 'the successor bridge to stop' });
    }
    await plc?.stop();
    await broker?.stop();
  });

  const terminal = (id: string): Record<string, unknown> | undefined =>
    results.map((r) => r.payload as Record<string, unknown>).find((p) => p.id === id && ['successful', 'failed', 'rejected'].includes(String(p.status)));
  const set = async (id: string, tags: Record<string, unknown>): Promise<Record<string, unknown>> => {
    await wms.publishAsync(`edge/${GW}/plc/plc0/set`, JSON.stringify({ id, tags }), { qos: 1 });
    await waitFor(() => terminal(id) !== undefined, { timeoutMs: 20_000, what: `the set ${id} answered\n${bridge.logText().slice(-3000)}` });
    return terminal(id)!;
  };
  const audit = async (): Promise<AuditEntry[]> => {
    const r = await runCli(['audit', '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as AuditEntry[];
  };
  const writes = async (): Promise<AuditEntry[]> => (await audit()).filter((e) => e.action === 'plc-write');
  const inTrail = async (actor: string): Promise<AuditEntry> => {
    let found: AuditEntry | undefined;
    await waitFor(async () => (found = (await writes()).find((e) => e.actor === actor)) !== undefined, { timeoutMs: 20_000, what: `${actor} in the audit trail\n${agent.logText().slice(-3000)}` });
    return found!;
  };

  test('a WMS write and a refused one appear with their actor, values, read-back and outcome', async () => {
    assert.equal((await set('w-1', { setpoint: 42 })).status, 'successful');
    const e = await inTrail('wms:w-1');
    assert.equal(e.target, 'plc0');
    assert.equal(e.outcome, 'successful');
    assert.deepEqual(e.details?.tags, { setpoint: 42 });
    assert.deepEqual(e.details?.readBack, { setpoint: 42 });
    assert.equal(e.details?.id, 'w-1');

    assert.equal((await set('w-ro', { speed: 5 })).status, 'rejected');
    const ro = await inTrail('wms:w-ro');
    assert.equal(ro.outcome, 'rejected/read-only');
    assert.deepEqual(ro.details?.tags, { speed: 5 });
    assert.equal((await set('w-range', { setpoint: 5000 })).status, 'rejected');
    assert.equal((await inTrail('wms:w-range')).outcome, 'rejected/out-of-range');
  });

  test('writes made while the agent is stopped, across a bridge handover, appear once it is back; the chain verifies', async () => {
    await agent.stop();
    assert.equal((await set('w-down-1', { setpoint: 43 })).status, 'successful');
    // The successor shares the bridge's store: its writes continue the same log.
    successor = await upgradeBridge(bridgeSocketOf(dir));
    assert.notEqual(successor, bridge.pid);
    assert.equal((await set('w-down-2', { setpoint: 44 })).status, 'successful');
    assert.equal((await writes()).some((e) => e.actor.startsWith('wms:w-down')), false, 'nothing recorded while the agent was down');

    agent = runAgent(agent.configPath, agent.dataDir);
    await agentReady(agent, 20_000);
    const d2 = await inTrail('wms:w-down-2');
    assert.deepEqual(d2.details?.readBack, { setpoint: 44 });
    const all = await writes();
    assert.deepEqual(
      all.map((e) => e.actor),
      ['wms:w-1', 'wms:w-ro', 'wms:w-range', 'wms:w-down-1', 'wms:w-down-2'],
      'each write once, in the bridge order',
    );
    const seqs = all.map((e) => e.details?.bridgeSeq as number);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'the bridge log has no gap across the handover');
    assert.equal((await audit()).some((e) => e.action === 'plc-write-gap' || e.action === 'plc-write-log-reset'), false);

    // Another pull (the agent restarted again) appends nothing twice.
    await agent.stop();
    agent = runAgent(agent.configPath, agent.dataDir);
    await agentReady(agent, 20_000);
    assert.equal((await set('w-3', { setpoint: 45 })).status, 'successful');
    await inTrail('wms:w-3');
    assert.equal((await writes()).length, 6);

    const v = await runCli(['audit', '--verify', '--config', agent.configPath]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });
});
