/**
 * The PLC bridge through agent updates, with the real boot guard and signed bundles:
 * - update 1.0.0 -> 1.1.0: the agent of 1.1.0 hands the bridge over to its own code (the bridge
 *   now runs from slot B), the update commits, and the WMS's data has no seq gap and no missed
 *   poll interval across the whole update;
 * - update to 1.2.0 whose bridge cannot start: the handover fails, the health gate waits for it
 *   and fails, the release is rolled back, and the 1.1.0 bridge kept running without a gap.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { bridgePing } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { startPlcGateway, type PlcGateway } from '../helpers/plc-gateway.js';

let gw: PlcGateway;

before(async () => {
  gw = await startPlcGateway({
    gatewayId: 'gw-plc-up',
    releases: [
      { version: '1.1.0' },
      {
        version: '1.2.0',
        patch: (dir) => writeFileSync(join(dir, 'dist', 'plc-bridge', 'main.js'), "export async function runBridge() { process.stderr.write('this bridge is broken\\n'); return 1; }\n"),
      },
    ],
  });
});

after(async () => {
  await gw?.stop();
});

test('an update hands the bridge over to the new release with no gap; a release whose bridge fails is rolled back', { timeout: 300_000 }, async () => {
  const first = await bridgePing(gw.socket);
  assert.ok(first?.cli?.includes(`${sep}slots${sep}A${sep}`), `the bridge runs from slot A: ${first?.cli}`);

  const u1 = await gw.update('plc-u1', '1.1.0');
  assert.equal(u1.status, 'successful', JSON.stringify(u1));
  const second = await bridgePing(gw.socket);
  assert.ok(second, 'a bridge answers after the update');
  assert.ok(second.cli?.includes(`${sep}slots${sep}B${sep}`), `the bridge runs from slot B: ${JSON.stringify(second)}`);
  assert.equal(second.version, '1.1.0');
  assert.notEqual(second.pid, first!.pid);

  const u2 = await gw.update('plc-u2', '1.2.0');
  assert.equal(u2.status, 'failed', JSON.stringify(u2));
  assert.equal(u2.reason?.code, 'rolled-back');
  const third = await bridgePing(gw.socket);
  assert.equal(third?.pid, second.pid, 'the 1.1.0 bridge kept the role');

  const fast = dataMessages(gw.got, `${gw.root}/plc/plc0/fast`);
  const report = gapReport(fast, 100);
  assert.ok(fast.length > 100, `data messages: ${fast.length}`);
  assert.deepEqual(report.seqGaps, [], 'no seq gap through an update, a handover and a rollback');
  assert.deepEqual(report.tickGaps, [], 'no missed poll interval');
});
