/**
 * plc-bridge/handover.ts, the old instance's side (issue #12, item 8): only the successor it
 * spawned (pid and token) may take the role; a successor that asks and then dies or never
 * confirms gives the role back at once or at the deadline, and the stall is reported.
 * plc-bridge/active-slot.ts: which entry point `upgrade` may start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/log.js';
import type { Bridge } from '../../plc-bridge/bridge.js';
import { predecessorMethods, type SuccessorId } from '../../plc-bridge/handover.js';
import { checkUpgrade } from '../../plc-bridge/active-slot.js';
import { fakeClock } from '../helpers/fake-clock.js';
import { tempDir, waitFor } from '../helpers/util.js';

const logger = createLogger({ level: 'silent' });

function fakeBridge(): Bridge & { resumed: number } {
  const b = {
    role: 'active',
    resumed: 0,
    retire() {
      b.role = 'retiring';
      return { seq: { 'd/g': 7 }, lastTick: { 'd/g': 1000 } };
    },
    resume() {
      b.role = 'active';
      b.resumed++;
    },
  };
  return b as unknown as Bridge & { resumed: number };
}

async function code(p: () => unknown): Promise<string | undefined> {
  try {
    await p();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

test('handover: refused to anyone but the spawned successor; a successor that dies gives the role back and the stall is reported', async () => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const successor: SuccessorId = { pid: child.pid!, token: 'a'.repeat(48) };
  const bridge = fakeBridge();
  const stalls: { successor: number; silencedMs: number; reason: string }[] = [];
  let retired = 0;
  const m = predecessorMethods({ bridge, clock: systemClock, logger, timeoutMs: 30_000, successor: () => successor, onStall: (s) => stalls.push(s), retire: async () => void retired++ });
  assert.equal(await code(() => m.handover!({})), 'handover-refused');
  assert.equal(await code(() => m.handover!({ pid: successor.pid, token: 'b'.repeat(48) })), 'handover-refused');
  assert.equal(await code(() => m.handover!({ pid: successor.pid + 1, token: successor.token })), 'handover-refused');
  assert.equal(bridge.role, 'active', 'refusals change nothing');

  const state = (await m.handover!({ pid: successor.pid, token: successor.token })) as { seq: Record<string, number> };
  assert.deepEqual(state.seq, { 'd/g': 7 });
  assert.equal(bridge.role, 'retiring');
  assert.equal(await code(() => m['handover-done']!({ pid: successor.pid })), 'handover-refused', 'confirming takes the token too');
  child.kill('SIGKILL');
  await waitFor(() => stalls.length > 0, { timeoutMs: 5000, what: 'the stall reported after the successor died' });
  assert.equal(bridge.role, 'active', 'the role is taken back long before the 30 s deadline');
  assert.equal(stalls[0]!.successor, successor.pid);
  assert.match(stalls[0]!.reason, /exited/);
  assert.equal(retired, 0);
});

test('handover: a successor that never confirms gives the role back at the deadline, reported', async () => {
  const successor: SuccessorId = { pid: process.pid, token: 't'.repeat(48) };
  const bridge = fakeBridge();
  const stalls: { silencedMs: number; reason: string }[] = [];
  // Node's timers run on the monotonic clock and Date.now() may show 299 ms when a 300 ms timer
  // fires: a fake clock makes the silence exact.
  const clock = fakeClock();
  const m = predecessorMethods({ bridge, clock, logger, timeoutMs: 300, successor: () => successor, onStall: (s) => stalls.push(s), retire: async () => undefined });
  await m.handover!({ pid: successor.pid, token: successor.token });
  await clock.advance(299);
  assert.equal(stalls.length, 0, 'nothing before the deadline');
  assert.equal(bridge.role, 'retiring');
  await clock.advance(1);
  assert.equal(stalls.length, 1, 'the stall at the deadline');
  assert.equal(bridge.role, 'active');
  assert.equal(stalls[0]!.silencedMs, 300);
  assert.match(stalls[0]!.reason, /did not confirm/);
});

test('upgrade: only the active slot of slots.json, committed or on trial, at or above the security floor', () => {
  const root = tempDir('active-slot');
  const cli = (slot: string): string => join(root, 'slots', slot, 'dist', 'agent', 'cli', 'index.js');
  for (const slot of ['A', 'B']) {
    mkdirSync(join(root, 'slots', slot, 'dist', 'agent', 'cli'), { recursive: true });
    writeFileSync(cli(slot), '');
  }
  const slots = (s: Record<string, unknown>): void => writeFileSync(join(root, 'slots.json'), JSON.stringify({ format: 1, ...s }));
  slots({ active: 'A', slots: { A: { state: 'committed', securityVersion: 1 }, B: { state: 'committed', securityVersion: 0 } }, highestSecurityVersion: 1 });
  assert.deepEqual(checkUpgrade(cli('A'), cli('A')), { ok: true, slot: 'A' });
  assert.equal(checkUpgrade(cli('B'), cli('A')).ok, false, 'not the active slot (and below the floor)');
  slots({ active: 'B', slots: { A: { state: 'committed', securityVersion: 1 }, B: { state: 'trial', securityVersion: 0 } }, highestSecurityVersion: 1 });
  assert.match(JSON.stringify(checkUpgrade(cli('B'), cli('A'))), /below the floor/);
  slots({ active: 'B', slots: { A: { state: 'committed' }, B: { state: 'trial' } }, highestSecurityVersion: 0 });
  assert.deepEqual(checkUpgrade(cli('B'), cli('A')), { ok: true, slot: 'B' }, 'a trial slot at the floor');
  slots({ active: 'B', slots: { A: { state: 'committed' }, B: { state: 'installing' } }, highestSecurityVersion: 0 });
  assert.equal(checkUpgrade(cli('B'), cli('A')).ok, false, 'a slot being written');
  assert.equal(checkUpgrade('/usr/bin/node', cli('A')).ok, false, 'not an entry point');
  assert.equal(checkUpgrade('dist/agent/cli/index.js', cli('A')).ok, false, 'not absolute');
  // Outside an install: only the own release.
  const dev = tempDir('dev-release');
  const devCli = join(dev, 'dist', 'agent', 'cli', 'index.js');
  mkdirSync(join(dev, 'dist', 'agent', 'cli'), { recursive: true });
  writeFileSync(devCli, '');
  assert.deepEqual(checkUpgrade(devCli, devCli), { ok: true });
  assert.equal(checkUpgrade(cli('A'), devCli).ok, false);
});
