/**
 * Escalation up to a release rollback, with the real boot guard: release 1.3.0 passes its health
 * gate and commits, then its PLC bridge starts crashing (each of its processes exits after a few
 * seconds). The watchdog restarts it, then (the crash loop began after the activation) rolls the
 * release back: the agent runs 1.0.0 from slot A again, hands the bridge back to 1.0.0's code,
 * and the bridge stays up. Every step is an event on ~/events.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { loadSlots } from '../../ota/slots.js';
import { until } from '../helpers/ota-root.js';
import { bridgePing } from '../helpers/bridge.js';
import { startPlcGateway, type PlcGateway } from '../helpers/plc-gateway.js';

let gw: PlcGateway;

before(async () => {
  gw = await startPlcGateway({
    gatewayId: 'gw-rollback',
    // Only the bridge process loads plc-bridge/main.js: each one of this release dies after 5 s,
    // long after the handover and the health gate.
    releases: [{ version: '1.3.0', patch: (dir) => appendFileSync(join(dir, 'dist', 'plc-bridge', 'main.js'), '\nsetTimeout(() => process.exit(3), 5000).unref();\n') }],
    agent: { recovery: { backoff: { initialMs: 100, maxMs: 500 }, escalation: { restoreConfigAfter: 1, rollbackAfter: 2, slowRetryAfter: 10 }, plcBridge: { intervalMs: 500, deadlineMs: 2000 } } },
  });
});

after(async () => {
  await gw?.stop();
});

test('a crash loop that begins after an activation escalates to a rollback of the release', { timeout: 240_000 }, async () => {
  const u3 = await gw.update('rb-u3', '1.3.0');
  assert.equal(u3.status, 'successful', 'the release passed its gate before its bridge began to crash');
  await until(gw.g, () => gw.online('1.3.0', 'B'), '1.3.0 online in slot B', 30_000);
  const sinceUpdate = gw.got.length;
  await until(
    gw.g,
    () => gw.online('1.0.0', 'A') && gw.got.slice(sinceUpdate).some((m) => m.topic === `${gw.root}/status` && (m.payload as { version: string }).version === '1.0.0'),
    'the rollback to 1.0.0 in slot A',
    120_000,
  );
  assert.equal(loadSlots(gw.r.root).active, 'A');

  const events = gw.got.filter((m) => m.topic === `${gw.root}/events`).map((m) => m.payload as { code: string; component?: string; action?: string });
  const bridgeEvents = events.filter((e) => e.component === 'plc-bridge').map((e) => `${e.code}:${e.action ?? ''}`);
  assert.ok(bridgeEvents.some((e) => /rollback/.test(e)), `a rollback escalation event: ${JSON.stringify(bridgeEvents)}`);

  // The 1.0.0 agent hands the bridge back to its own code, which stays up.
  await until(gw.g, async () => (await bridgePing(gw.socket))?.cli?.includes(`${sep}slots${sep}A${sep}`) === true, 'the bridge back on slot A code', 60_000);
  const p = await bridgePing(gw.socket);
  await new Promise((res) => setTimeout(res, 7000));
  assert.equal((await bridgePing(gw.socket))?.pid, p?.pid, 'the 1.0.0 bridge keeps running');
});
