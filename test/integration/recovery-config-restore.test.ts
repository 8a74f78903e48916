/**
 * Escalation step 1 (restore the configuration) against the real agent and the real PLC bridge
 * (issue #12 item 11): the bridge's configuration becomes known-good once the bridge runs; three
 * kill -9 in a row escalate to `restore-config`. The file is identical to its known-good copy, so
 * the restore is a no-op (nothing quarantined, the file not rewritten) and the incident says so,
 * naming the copy, instead of "no known-good configuration to restore".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startBroker, type Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/util.js';
import { runCli, type AgentProcess } from '../helpers/agent.js';
import { bridgePing } from '../helpers/bridge.js';
import { killQuietly, startSupervisedBridge, type SupervisedBridge } from '../helpers/supervised-bridge.js';
import { listKnownGood } from '../../recovery/known-good.js';

let broker: Broker;
let bridge: SupervisedBridge;
let agent: AgentProcess;
let socket = '';
let dataDir = '';
let bridgeConfig = '';

before(async () => {
  broker = await startBroker();
  bridge = await startSupervisedBridge({ broker, name: 'kg-escalation', intervalMs: 200, escalation: { restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 8 } });
  ({ agent, socket, dataDir, bridgeConfig } = bridge);
});

after(async () => {
  await bridge?.stop();
  await broker?.stop();
});

test('third kill -9 of the bridge: restore-config names the known-good copy, and an identical file is left alone', { timeout: 120_000 }, async () => {
  await waitFor(() => listKnownGood(dataDir, bridgeConfig).length === 1, { timeoutMs: 20_000, what: `a known-good copy of the bridge's configuration\n${agent.logText().slice(-3000)}` });
  const copy = listKnownGood(dataDir, bridgeConfig)[0]!.path;
  const before = statSync(bridgeConfig);
  for (let i = 1; i <= 3; i++) {
    const p = await bridgePing(socket);
    assert.ok(p, `round ${i}: a bridge runs`);
    killQuietly(p.pid, 'SIGKILL');
    await waitFor(async () => {
      const q = await bridgePing(socket, 500);
      return q !== undefined && q.pid !== p.pid && q.role === 'active';
    }, { timeoutMs: 20_000, what: `round ${i}: a new bridge; agent log:\n${agent.logText().slice(-3000)}` });
  }
  type Inc = { action: string; detail: string | null };
  let restore: Inc | undefined;
  await waitFor(async () => {
    const r = await runCli(['incidents', '--component', 'plc-bridge', '--json', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr);
    restore = (JSON.parse(r.stdout) as { incidents: Inc[] }).incidents.find((x) => x.action === 'restore-config');
    return restore !== undefined;
  }, { timeoutMs: 20_000, what: 'the restore-config incident' });
  const detail = restore?.detail ?? '';
  assert.doesNotMatch(detail, /no known-good configuration/, detail);
  assert.ok(detail.includes(`identical to its known-good copy ${copy}`), `the detail names the copy: ${detail}`);
  const q = join(dataDir, 'quarantine');
  assert.deepEqual(existsSync(q) ? readdirSync(q).filter((n) => n.endsWith('plc-bridge.yaml')) : [], [], 'an identical file is not quarantined');
  const afterStat = statSync(bridgeConfig);
  assert.equal(afterStat.ino, before.ino, 'the file was not rewritten');
  assert.equal(afterStat.mtimeMs, before.mtimeMs, 'the file was not rewritten');
});
