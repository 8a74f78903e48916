/**
 * ota/slot-entry.ts, what edge-plc-bridge.service starts: it runs the ACTIVE slot's CLI in its
 * own process with the arguments after `--`, from ROOT/guard where it is installed with the boot
 * guard. The slots hold stub CLIs that print what they were started with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { activate, beginInstall, initSlots, loadSlots, markVerified, saveSlots, type SlotName } from '../../ota/slots.js';
import { installGuard, slotEntry } from '../../ota/guard-install.js';
import { parseEntryArgs, slotCli } from '../../ota/slot-entry.js';
import { tempDir } from '../helpers/util.js';

// dist/test/unit/ -> dist/
const DIST = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = join(DIST, 'ota', 'slot-entry.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  pid: number | undefined;
}

function run(entry: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [entry, ...args], { env: { ...process.env, ...env }, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr, pid: child.pid });
    });
  });
}

/** A stub `edge-agent` that prints what it sees and exits 7 (the exit status must come through). */
function stubSlot(root: string, slot: SlotName): void {
  const cli = slotCli(root, slot);
  mkdirSync(join(cli, '..'), { recursive: true });
  writeFileSync(
    cli,
    `process.stdout.write(JSON.stringify({ slot: ${JSON.stringify(slot)}, argv: process.argv, pid: process.pid, watchdogPid: process.env.WATCHDOG_PID ?? null }) + '\\n');\nprocess.exitCode = 7;\n`,
  );
}

/** A root with both slots holding a stub; `active` picks which one slots.json names. */
function rootWith(active: SlotName): string {
  const root = tempDir('slot-entry');
  stubSlot(root, 'A');
  stubSlot(root, 'B');
  let s = initSlots(root, { version: '1.0.0' });
  if (active === 'B') {
    s = activate(markVerified(beginInstall(s, 'B', { version: '1.1.0' }), 'B'), 'B');
    saveSlots(root, s);
  }
  return root;
}

interface StubOutput {
  slot: string;
  argv: string[];
  pid: number;
  watchdogPid: string | null;
}

const ARGS = ['plc-bridge', '--config', '/etc/edge-agent/plc-bridge.yaml'];

test('parseEntryArgs: --root (both spellings), everything after -- is the CLI\'s', () => {
  assert.deepEqual(parseEntryArgs(['--root', '/opt/edge-agent', '--', ...ARGS]), { root: '/opt/edge-agent', args: ARGS });
  assert.deepEqual(parseEntryArgs(['--root=/r', '--', 'plc-bridge', '--', 'x']), { root: '/r', args: ['plc-bridge', '--', 'x'] });
  assert.ok(parseEntryArgs(['--root', 'rel', '--', 'x']).root.startsWith('/'), 'the root is made absolute');
  for (const [args, re] of [
    [[], /usage/],
    [['--root', '/r'], /usage/],
    [['--', 'x'], /--root is required/],
    [['--root'], /--root needs a value/],
    [['--root', '/r', '--'], /no edge-agent arguments/],
    [['--bogus', '1', '--', 'x'], /unknown option "--bogus"/],
  ] as const) {
    assert.throws(() => parseEntryArgs(args), re);
  }
});

test('the active slot\'s CLI runs in the same process, with argv as if started directly, without WATCHDOG_PID', async () => {
  for (const active of ['B', 'A'] as const) {
    const root = rootWith(active);
    const r = await run(ENTRY, ['--root', root, '--', ...ARGS], { WATCHDOG_PID: '4242', WATCHDOG_USEC: '30000000' });
    assert.equal(r.code, 7, `exit status of the stub, got ${r.code}: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as StubOutput;
    assert.equal(out.slot, active);
    assert.deepEqual(out.argv.slice(1), [slotCli(root, active), ...ARGS]);
    assert.equal(out.pid, r.pid, 'no child process: the CLI runs in the entry point\'s own process');
    assert.equal(out.watchdogPid, null, 'WATCHDOG_PID is dropped so that a handover successor takes the watchdog');
    const start = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'start');
    assert.equal(start?.slot, active, r.stderr);
  }
});

test('a trial slot: the entry point only reads slots.json; trial starts are the boot guard\'s to count', async () => {
  const root = rootWith('B');
  const r = await run(ENTRY, ['--root', root, '--', 'status']);
  assert.equal((JSON.parse(r.stdout) as StubOutput).slot, 'B');
  assert.equal(loadSlots(root).slots.B.state, 'trial');
  assert.equal(loadSlots(root).slots.B.trialStarts, 0);
});

test('installed with the boot guard, it runs from ROOT/guard with nothing else there', async () => {
  const root = rootWith('B');
  installGuard(DIST, root);
  const r = await run(slotEntry(root), ['--root', root, '--', ...ARGS]);
  assert.equal(r.code, 7, r.stderr);
  const out = JSON.parse(r.stdout) as StubOutput;
  assert.equal(out.slot, 'B');
  assert.deepEqual(out.argv.slice(1), [slotCli(root, 'B'), ...ARGS]);
});

test('exit statuses: 78 not installed, 64 bad arguments, 1 no entry point in the active slot', async () => {
  const empty = tempDir('slot-entry');
  const missing = await run(ENTRY, ['--root', empty, '--', ...ARGS]);
  assert.equal(missing.code, 78);
  assert.match(missing.stderr, /"event":"not-installed"/);

  const usage = await run(ENTRY, ['--', ...ARGS]);
  assert.equal(usage.code, 64);
  assert.match(usage.stderr, /--root is required/);

  const noCli = tempDir('slot-entry');
  initSlots(noCli, { version: '1.0.0' });
  const r = await run(ENTRY, ['--root', noCli, '--', ...ARGS]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /"event":"no-entry-point"/);
});
