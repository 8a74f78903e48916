/**
 * The escalation hooks agent/recovery-wiring.ts gives the watchdog, on a real slots.json in a
 * temp install root: when the running release was activated (only with a committed release to
 * go back to), and the rollback: a release on trial is failed, a committed one rolled back to
 * the other committed slot, the agent restarted; nothing without the boot guard or a target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { initSlots, loadSlots, saveSlots, type SlotsFile } from '../../ota/slots.js';
import { systemClock } from '../../lib/clock.js';
import { takeKnownGood } from '../../recovery/known-good.js';
import type { AgentConfig } from '../../core/config.js';
import { configRestorer, releaseActivatedAt, releaseRollback } from '../../agent/recovery-wiring.js';
import { tempDir } from '../helpers/util.js';

const ACTIVATED = '2026-11-22T10:00:00.000Z';

function root(state: 'trial' | 'committed' | 'fresh'): string {
  const r = tempDir('rec-root');
  const s = initSlots(r, { version: '1.0.0' });
  if (state === 'fresh') return r;
  const next: SlotsFile = { ...s, active: 'B', slots: { A: s.slots.A, B: { state, version: '1.1.0', securityVersion: 0, trialSince: ACTIVATED, ...(state === 'trial' ? { trialStarts: 1 } : {}) } } };
  saveSlots(r, next);
  return r;
}

test('activatedAt: the running release trialSince, only with a committed release to go back to', () => {
  assert.equal(releaseActivatedAt(root('trial')), Date.parse(ACTIVATED));
  assert.equal(releaseActivatedAt(root('committed')), Date.parse(ACTIVATED));
  assert.equal(releaseActivatedAt(root('fresh')), undefined);
  assert.equal(releaseActivatedAt(tempDir('rec-none')), undefined, 'not installed');
});

test('rollback: a trial is failed, a committed release rolled back; the agent restarts', async () => {
  for (const state of ['trial', 'committed'] as const) {
    const r = root(state);
    const restarts: string[] = [];
    const ok = await releaseRollback({ root: r, underGuard: true, restart: (why) => restarts.push(why), logger: silentLogger() })('crash loop of plc-bridge');
    assert.equal(ok, true);
    const s = loadSlots(r);
    assert.equal(s.active, 'A');
    assert.equal(s.slots.B.state, state === 'trial' ? 'bad' : 'committed');
    await new Promise((res) => setImmediate(res));
    assert.equal(restarts.length, 1);
    assert.match(restarts[0]!, /crash loop of plc-bridge/);
  }
});

test('rollback: not without the boot guard, not without a committed release to go back to', async () => {
  const restart = (): void => assert.fail('no restart');
  const r = root('committed');
  assert.equal(await releaseRollback({ root: r, underGuard: false, restart, logger: silentLogger() })('x'), false);
  assert.equal(loadSlots(r).active, 'B');
  assert.equal(await releaseRollback({ root: root('fresh'), underGuard: true, restart, logger: silentLogger() })('x'), false);
});

test('configRestorer: says which copy it put back, that the file already is that copy (and leaves it), or that there is none', async () => {
  const dataDir = tempDir('rec-kg');
  const file = join(dataDir, 'plc-bridge.yaml');
  writeFileSync(file, 'devices: []\n');
  const restore = configRestorer({ config: { dataDir, plcBridge: { config: file } } as unknown as AgentConfig, clock: systemClock });
  assert.match((await restore('plc-bridge')).note, /no known-good configuration to restore/);
  const { copy } = takeKnownGood({ dataDir, source: file, content: readFileSync(file), keep: 3 });
  const same = await restore('plc-bridge');
  assert.equal(same.restored, false);
  assert.ok(same.note.includes(`identical to its known-good copy ${copy}`), same.note);
  assert.equal(existsSync(join(dataDir, 'quarantine')), false, 'an identical file is not quarantined');
  writeFileSync(file, 'devices: [oops\n');
  const changed = await restore('plc-bridge');
  assert.equal(changed.restored, true);
  assert.ok(changed.note.includes(`replaced by the known-good copy ${copy}`), changed.note);
  assert.equal(readFileSync(file, 'utf8'), 'devices: []\n');
  assert.match((await restore('crasher')).note, /no known-good configuration/);
});
