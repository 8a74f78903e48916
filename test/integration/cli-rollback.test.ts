/**
 * `edge-agent rollback` end to end: the real boot guard and the real agent running from a temp
 * install root whose two slots are both committed. The CLI asks the daemon over the admin socket,
 * the rollback restarts the agent (the socket goes away), the guard starts slot B, and the CLI
 * follows the command to its terminal status across the restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { adminRequest } from '../../core/admin.js';
import { loadSlots, saveSlots } from '../../ota/slots.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { runCli } from '../helpers/agent.js';
import { makeOtaRoot, makeRelease, startGuard, until, type GuardRun, type OtaRoot } from '../helpers/ota-root.js';
import { tempDir } from '../helpers/util.js';

let broker: Broker;
let r: OtaRoot;
let g: GuardRun;

before(async () => {
  broker = await startBroker();
  const rel = join(tempDir('cli-rollback'), 'rel-1.0.0');
  makeRelease(rel, '1.0.0');
  r = makeOtaRoot({ releaseDir: rel, version: '1.0.0', config: { gatewayId: 'gw-cli-rollback', mqtt: { url: broker.url } } });
  // Slot B: an earlier release that was committed once (rollback needs two committed slots).
  makeRelease(join(r.root, 'slots', 'B'), '0.9.0', rel);
  const s = loadSlots(r.root);
  const at = new Date().toISOString();
  saveSlots(r.root, { ...s, slots: { ...s.slots, B: { state: 'committed', version: '0.9.0', securityVersion: 0, installedAt: at, committedAt: at } } });
  g = startGuard(r, ['--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100']);
  const socket = join(r.dataDir, 'agent.sock');
  await until(g, async () => (await adminRequest(socket, 'status', {}, 1000).catch(() => undefined)) !== undefined, 'the agent to answer on its admin socket');
});

after(async () => {
  await g?.stop();
  await broker?.stop();
});

test('rollback from the console: follows the command across the restart, exits 0, slot B runs', async () => {
  const res = await runCli(['rollback', '--config', r.configPath]);
  assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}\n${g.tail()}`);
  assert.match(res.stdout, /^rollback requested as command console-/m);
  assert.match(res.stdout, /^the agent is restarting; waiting for it to report the outcome$/m, 'the socket went away during the restart');
  assert.match(res.stdout, /^successful$/m);
  assert.match(res.stdout, /^rolled back: 1\.0\.0 -> 0\.9\.0, now running slot B$/m);

  const s = loadSlots(r.root);
  assert.equal(s.active, 'B');
  const status = (await adminRequest(join(r.dataDir, 'agent.sock'), 'status')) as { slot: string };
  assert.equal(status.slot, 'B');

  // The guard hands the root to the agent in EDGE_AGENT_ROOT; the config names none.
  const env = { EDGE_AGENT_ROOT: r.root };
  const slots = await runCli(['slots', '--config', r.configPath], env);
  assert.match(slots.stdout, /^B {2}0\.9\.0 {2}committed, active/m);
  const h = JSON.parse((await runCli(['history', '--json', '--config', r.configPath], env)).stdout) as { entries: { source: string; event?: string; op?: string; status?: string }[] };
  assert.ok(h.entries.some((e) => e.source === 'slots' && e.event === 'rollback'), JSON.stringify(h.entries));
  assert.ok(h.entries.some((e) => e.source === 'commands' && e.op === 'rollback' && e.status === 'successful'), JSON.stringify(h.entries));
});
