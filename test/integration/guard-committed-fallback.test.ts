/**
 * A committed release that crashes at start must not lock the gateway out (#12 item 6). Real
 * mosquitto, the real boot guard, real agents: slot A holds 1.0.0 and slot B 1.1.0, both
 * committed with the same securityVersion, B active and online. Then B's dist/agent/main.js is
 * made to throw at import and its agent is killed with SIGKILL. The guard must count B's failed
 * starts, fall back to A, and A (on the store B left, whose schema B had moved on) must come
 * online and report an incident and an alarm, once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { openDatabase } from '../../lib/sqlite.js';
import { checkInvariants, loadSlots, saveSlots } from '../../ota/slots.js';
import { REPO } from '../helpers/agent.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { agentStatus, makeOtaRoot, makeRelease, startGuard, statusesOf, until, type GuardRun, type OtaRoot } from '../helpers/ota-root.js';
import { collect, mqttClient, tempDir, type Received } from '../helpers/util.js';

const ID = 'gw-committed-fallback';
let broker: Broker;
let work: string;
let r: OtaRoot;
let g: GuardRun | undefined;
let wms: MqttClient | undefined;

before(async () => {
  broker = await startBroker();
  work = tempDir('committed-fallback');
  const rel = join(work, 'rel-1.0.0');
  makeRelease(rel, '1.0.0');
  r = makeOtaRoot({
    releaseDir: rel,
    version: '1.0.0',
    config: { gatewayId: ID, mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 1000 } }, ota: { healthGate: { stableMs: 1000, timeoutMs: 8000 } }, shutdownTimeoutMs: 10_000 },
  });
  // Slot B: 1.1.0, committed long ago with the same securityVersion as A, and active.
  makeRelease(join(r.root, 'slots', 'B'), '1.1.0', rel);
  const s = loadSlots(r.root);
  const at = new Date().toISOString();
  saveSlots(r.root, { ...s, active: 'B', slots: { ...s.slots, B: { state: 'committed', version: '1.1.0', securityVersion: 0, installedAt: at, committedAt: at } } });
});

after(async () => {
  await g?.stop();
  await wms?.endAsync(true);
  await broker?.stop();
  if (r) rmSync(r.root, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

const events = (got: Received[]): { type: string; code: string; component?: string; slot?: string; version?: string }[] =>
  got.filter((m) => m.topic === `edge/${ID}/events`).map((m) => m.payload as { type: string; code: string; component?: string; slot?: string; version?: string });

function online(got: Received[], version: string, slot: string): boolean {
  const last = statusesOf(got, ID).at(-1);
  return last?.state === 'online' && last.version === version && last.slot === slot;
}

test('a committed release that throws at import: the guard falls back to the other committed release, which reports it', { timeout: 240_000 }, async () => {
  wms = await mqttClient(broker.url, { clientId: `wms-${ID}` });
  const got = await collect(wms, `edge/${ID}/#`);
  // A run of 5 s is a good start (--backoff-reset-ms): the killed agent had run longer.
  g = startGuard(r, ['--max-committed-failures', '3', '--committed-failure-window-ms', '120000', '--backoff-reset-ms', '5000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100']);
  const guard = g;
  await until(guard, () => online(got, '1.1.0', 'B'), '1.1.0 online in slot B', 60_000);
  const victim = await agentStatus(r);
  await new Promise((res) => setTimeout(res, 5000)); // past --backoff-reset-ms: B started well
  assert.equal(victim.slot, 'B');

  // Release 1.1.0 breaks: its composition root throws at import, and its agent dies.
  appendFileSync(join(r.root, 'slots', 'B', 'dist', 'agent', 'main.js'), "\nthrow new Error('release 1.1.0 is broken');\n");
  process.kill(victim.pid, 'SIGKILL');
  // The store B leaves behind is newer than A knows: later versions of A's domains, a column
  // and a domain A has never heard of (what B's own migrations would have done).
  const db = openDatabase(join(r.dataDir, 'agent.db'));
  db.exec("ALTER TABLE agent_info ADD COLUMN note TEXT; CREATE TABLE future_things (id INTEGER PRIMARY KEY); UPDATE schema_migrations SET version = version + 5; INSERT INTO schema_migrations(domain, version) VALUES ('future', 3)");
  db.close();

  await until(guard, () => online(got, '1.0.0', 'A'), () => `1.0.0 online in slot A; statuses: ${JSON.stringify(statusesOf(got, ID).slice(-4))}`, 120_000);
  assert.equal(guard.logged('spawned').filter((l) => l.slot === 'B').length, 1 + 3, 'one good start of B, then three failed ones');
  assert.deepEqual(guard.logged('rolled-back').map((l) => [l.from, l.slot, l.reason]), [['B', 'A', 'committed-starts-exceeded']]);
  const s = loadSlots(r.root);
  assert.deepEqual([s.active, s.slots.A.state, s.slots.B.state, s.slots.B.reason], ['A', 'committed', 'bad', 'committed-starts-exceeded']);
  assert.deepEqual(checkInvariants(s), []);
  assert.match(s.history?.at(-1)?.reason ?? '', /^committed-starts-exceeded/);

  // Release 1.0.0, once up, reports what the guard did: an incident and an alarm on ~/events...
  const fallback = (): ReturnType<typeof events> => events(got).filter((e) => e.code === 'release-crash-loop');
  await until(guard, () => fallback().length >= 2, () => `the incident and the alarm; events: ${JSON.stringify(events(got).map((e) => `${e.type}:${e.code}`))}`, 30_000);
  assert.deepEqual(fallback().map((e) => [e.type, e.component, e.slot, e.version]).sort(), [['alarm', 'release', 'B', '1.1.0'], ['incident', 'release', 'B', '1.1.0']]);
  // ...and in its incident store (`edge-agent incidents`).
  const out = execFileSync(process.execPath, [join(REPO, 'dist', 'agent', 'cli', 'index.js'), 'incidents', '--json', '--config', r.configPath], { encoding: 'utf8' });
  const incidents = (JSON.parse(out) as { incidents: { component: string; cause: string; action: string; detail: string }[] }).incidents.filter((i) => i.component === 'release');
  assert.deepEqual(incidents.map((i) => [i.cause, i.action]), [['committed-starts-exceeded', 'guard-rollback']]);
  assert.match(incidents[0]!.detail, /1\.1\.0 in slot B/);

  // Once: a restart of 1.0.0 reports nothing again. Its agent-started event is queued after any
  // report, and the outbox keeps the order: once it is in, a second report would be too.
  const before = got.length;
  const a = await agentStatus(r);
  process.kill(a.pid, 'SIGTERM');
  const restarted = (): boolean => events(got.slice(before)).some((e) => e.code === 'agent-started');
  await until(guard, restarted, '1.0.0 started again', 60_000);
  assert.deepEqual(events(got.slice(before)).filter((e) => e.code === 'release-crash-loop'), []);
});
