/**
 * The fleet bench's rollout driver (bench/fleet/driver.ts) against simulated gateways
 * (bench/fleet/sim.ts) on a real Mosquitto: it halts at the wave whose failures pass the
 * threshold once the minimum sample is in, sends nothing past it, halts on `update-health`
 * reports saying `healthy: false` as on failures, and sees exactly one terminal status per
 * command; and a rollout whose first wave holds real agents (each in its own A/B root under its
 * boot guard) installs the bench's signed bundle on each of them for real before the failing
 * simulated wave halts it. The bench's figures rest on these.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/util.js';
import { connectWms, runCommands, runRollout } from '../../bench/fleet/driver.js';
import { startSimFleet, type SimFleet } from '../../bench/fleet/sim.js';
import { startRealAgents } from '../../bench/fleet/real-agents.js';
import { makeRolloutBundle, REAL_OTA } from '../../bench/fleet/fleet-bench.js';

let broker: Broker;
const fleets: SimFleet[] = [];

before(async () => {
  broker = await startBroker();
});

after(async () => {
  for (const f of fleets) await f.stop();
  await broker?.stop();
});

const BACKOFF = { initialMs: 200, maxMs: 1000, factor: 2, jitter: 1 };
const WAVES = [0.1, 0.3, 0.6, 1];

async function fleet(prefix: string, n: number, o: { bad?: Set<string>; unhealthy?: Set<string> }): Promise<{ ids: string[]; f: SimFleet }> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
  const f = await startSimFleet({ url: broker.url, ids, backoff: BACKOFF, firstJitter: true, failRate: (id) => (o.bad?.has(id) ? 1 : 0), unhealthy: (id) => o.unhealthy?.has(id) === true, delayMs: [0, 50] });
  fleets.push(f);
  await waitFor(() => f.connected() === n, { what: `${n} simulated gateways connected`, timeoutMs: 30_000 });
  return { ids, f };
}

test('the driver halts at the wave whose failures pass the threshold, and no gateway past it gets the update', async () => {
  const ids = Array.from({ length: 100 }, (_, i) => `fl${String(i).padStart(3, '0')}`);
  // The third wave (gateways 30-59) fails every update.
  const g = await fleet('fl', 100, { bad: new Set(ids.slice(30, 60)) });
  const out = await runRollout({ url: broker.url, ids: g.ids, waves: WAVES, abortAbove: 0.2, minSample: 10, members: 2, waveTimeoutMs: 30_000, healthTimeoutMs: 10_000 });
  assert.equal(out.halted, true);
  assert.equal(out.haltedAtWave, 2);
  assert.deepEqual([...g.f.commanded()].filter((id) => !out.allowedIds.has(id)), [], 'a gateway past the halted wave got the update');
  assert.equal(out.allowedIds.size, 60);
  assert.equal(out.sent, 60);
  assert.deepEqual([out.doubleTerminal, out.missingTerminal, out.terminal], [0, 0, 60]);
  assert.equal(out.healthEvents, 30, 'an update-health report for every success');
});

test('update-health reports saying healthy: false halt the rollout like failures', async () => {
  const ids = Array.from({ length: 100 }, (_, i) => `uh${String(i).padStart(3, '0')}`);
  const { f } = await fleet('uh', 100, { unhealthy: new Set(ids.slice(10, 30)) });
  const out = await runRollout({ url: broker.url, ids, waves: WAVES, abortAbove: 0.2, minSample: 10, members: 2, waveTimeoutMs: 30_000, healthTimeoutMs: 10_000 });
  assert.equal(out.failed, 0, 'every update succeeded');
  assert.equal(out.halted, true, 'the unhealthy second wave halted it');
  assert.equal(out.haltedAtWave, 1);
  assert.equal(out.unhealthy, 20);
  assert.deepEqual([...f.commanded()].sort(), ids.slice(0, 30));
});

test('every command has exactly one terminal status at the driver', async () => {
  const { ids } = await fleet('cmd', 50, {});
  const w = await connectWms(broker.url, 3, 'wms-cmd');
  try {
    const check = await runCommands(w, ids.flatMap((gw) => [0, 1, 2].map((k) => ({ gw, op: 'ping', id: `c-${gw}-${k}` }))), 30_000);
    assert.deepEqual([check.sent, check.exactlyOne, check.double, check.missing], [150, 150, 0, 0]);
  } finally {
    await w.close();
  }
});

test('real agents in the first wave download, install, activate, commit the signed bundle and report update-health; the failing simulated wave still halts the rollout', async () => {
  const bundle = await makeRolloutBundle();
  const real = await startRealAgents(2, broker.url, BACKOFF, { resultExpirySec: 60, ota: { trustAnchors: bundle.trustPath, ...REAL_OTA } }).catch(async (err: unknown) => {
    await bundle.close();
    throw err;
  });
  try {
    const sims = Array.from({ length: 38 }, (_, i) => `rs${String(i).padStart(3, '0')}`);
    const ids = [...real.ids, ...sims];
    // Waves of 4 (the 2 real agents + 2 simulated), 8, 12 (failing every update), 16.
    const { f } = await fleet('rs', 38, { bad: new Set(ids.slice(12, 24)) });
    const realSet = new Set(real.ids);
    const out = await runRollout({
      url: broker.url,
      ids,
      waves: WAVES,
      abortAbove: 0.2,
      minSample: 4,
      members: 2,
      waveTimeoutMs: 30_000,
      healthTimeoutMs: 30_000,
      bundleUrl: bundle.url,
      params: (gw) => (realSet.has(gw) ? { notBefore: new Date(Date.now() + 2000 * real.ids.indexOf(gw)).toISOString(), sha256: bundle.sha256, size: bundle.size } : {}),
      slow: { ids: realSet, waveTimeoutMs: 180_000 },
    });
    assert.equal(out.halted, true);
    assert.equal(out.haltedAtWave, 2);
    for (const id of real.ids) {
      const p = out.perGateway.get(id);
      assert.equal(p?.status, 'successful', `${id}: ${JSON.stringify(p)}`);
      assert.equal(p?.healthy, true, `${id} reported update-health healthy`);
    }
    const states = await real.state();
    assert.deepEqual(
      states.map((s) => [s.id, s.version, s.slot, s.activeVersion, s.activeState]),
      real.ids.map((id) => [id, '1.1.0', 'B', '1.1.0', 'committed']),
    );
    assert.ok(bundle.sent() >= 2 * bundle.size, `each real agent downloaded the whole bundle: ${bundle.sent()} bytes served of ${bundle.size}`);
    const got = new Set([...f.commanded(), ...[...out.seenIds].filter((id) => realSet.has(id))]);
    assert.deepEqual([...got].filter((id) => !out.allowedIds.has(id)), [], 'a gateway past the halted wave got the update');
    assert.deepEqual([out.doubleTerminal, out.missingTerminal], [0, 0]);
  } finally {
    await real.stop();
    await bundle.close();
  }
});
