/**
 * ota/slot-entry.ts: it runs the ACTIVE slot's CLI in its own process with the arguments after
 * `--`, from ROOT/guard where it is installed with the boot guard; with --resolve it names the
 * active slot's runtime and entry point for ROOT/guard/bin/slot-exec (ota/slot-exec.ts), what
 * edge-plc-bridge.service starts, which execs them. The slots hold stub CLIs that print what they
 * were started with, and stub runtimes (shell scripts that say which slot's they are, then exec
 * this Node.js).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { activate, beginInstall, initSlots, loadSlots, markVerified, saveSlots, type SlotName } from '../../ota/slots.js';
import { installGuard, slotEntry, slotExec } from '../../ota/guard-install.js';
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
    `process.stdout.write(JSON.stringify({ slot: ${JSON.stringify(slot)}, argv: process.argv, execArgv: process.execArgv, pid: process.pid, watchdogPid: process.env.WATCHDOG_PID ?? null, runtime: process.env.STUB_RUNTIME ?? null }) + '\\n');\nprocess.exitCode = 7;\n`,
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
  execArgv: string[];
  pid: number;
  watchdogPid: string | null;
  /** Which stub runtime started it (null: the Node.js of the one that started it). */
  runtime: string | null;
}

/** A stub runtime for `slot`: says whose it is, then execs this Node.js (same process). */
function stubRuntime(root: string, slot: SlotName): string {
  const node = join(root, 'slots', slot, 'runtime', 'bin', 'node');
  mkdirSync(dirname(node), { recursive: true });
  writeFileSync(node, `#!/bin/sh\nSTUB_RUNTIME=${slot} exec ${process.execPath} "$@"\n`, { mode: 0o755 });
  return node;
}

const ARGS = ['plc-bridge', '--config', '/etc/edge-agent/plc-bridge.yaml'];

test('parseEntryArgs: --root (both spellings), everything after -- is the CLI\'s', () => {
  assert.deepEqual(parseEntryArgs(['--root', '/opt/edge-agent', '--', ...ARGS]), { root: '/opt/edge-agent', args: ARGS });
  assert.deepEqual(parseEntryArgs(['--root=/r', '--', 'plc-bridge', '--', 'x']), { root: '/r', args: ['plc-bridge', '--', 'x'] });
  assert.ok(parseEntryArgs(['--root', 'rel', '--', 'x']).root.startsWith('/'), 'the root is made absolute');
  assert.deepEqual(parseEntryArgs(['--root', '/r', '--resolve']), { root: '/r', args: [], resolve: true });
  assert.deepEqual(parseEntryArgs(['--resolve', '--root', '/r', '--', 'x']), { root: '/r', args: ['x'], resolve: true });
  for (const [args, re] of [
    [[], /usage/],
    [['--root', '/r'], /usage/],
    [['--', 'x'], /--root is required/],
    [['--root'], /--root needs a value/],
    [['--root', '/r', '--'], /no edge-agent arguments/],
    [['--bogus', '1', '--', 'x'], /unknown option "--bogus"/],
    [['--resolve'], /usage/],
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

test('--resolve names the active slot\'s own runtime and entry point; a slot without a runtime gets this Node.js', async () => {
  const root = rootWith('B');
  let r = await run(ENTRY, ['--root', root, '--resolve']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${process.execPath}\n${slotCli(root, 'B')}\n`, 'a development install: the Node.js that asks');
  const node = stubRuntime(root, 'B');
  stubRuntime(root, 'A');
  r = await run(ENTRY, ['--root', root, '--resolve']);
  assert.equal(r.stdout, `${node}\n${slotCli(root, 'B')}\n`);
  assert.equal(loadSlots(root).slots.B.trialStarts, 0, 'resolving counts no start');
  assert.equal((await run(ENTRY, ['--root', tempDir('slot-entry'), '--resolve'])).code, 78);
});

/** Runs ROOT/guard/bin/slot-exec as the unit does, with this Node.js (the guard's, here) on the PATH. */
function runExec(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(slotExec(root), [root, ...args], { env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, ...env }, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr, pid: child.pid });
    });
  });
}

test('slot-exec (edge-plc-bridge.service): the active slot\'s CLI on that slot\'s own runtime, exec\'d in the same process', async () => {
  for (const active of ['B', 'A'] as const) {
    const root = rootWith(active);
    stubRuntime(root, 'A');
    stubRuntime(root, 'B');
    installGuard(DIST, root);
    const r = await runExec(root, ['--max-semi-space-size=2', '--', ...ARGS, '--', 'x'], { WATCHDOG_PID: '4242', WATCHDOG_USEC: '30000000' });
    assert.equal(r.code, 7, `exit status of the stub, got ${r.code}: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as StubOutput;
    assert.equal(out.slot, active);
    assert.equal(out.runtime, active, 'the slot\'s own runtime, not the guard\'s');
    assert.deepEqual(out.execArgv, ['--max-semi-space-size=2'], 'the Node flags before --');
    assert.deepEqual(out.argv.slice(1), [slotCli(root, active), ...ARGS, '--', 'x'], 'the arguments after the first --, as they are');
    assert.equal(out.pid, r.pid, 'exec: the program is the process systemd started (its main PID)');
    assert.equal(out.watchdogPid, null, 'WATCHDOG_PID is dropped so that a handover successor takes the watchdog');
  }
});

test('slot-exec: a slot without a runtime of its own runs on the guard\'s; its exit statuses', async () => {
  const root = rootWith('A');
  installGuard(DIST, root);
  const r = await runExec(root, ['--', ...ARGS]);
  assert.equal(r.code, 7, r.stderr);
  const out = JSON.parse(r.stdout) as StubOutput;
  assert.deepEqual([out.slot, out.runtime, out.pid], ['A', null, r.pid]);

  assert.equal((await runExec(root, ['--max-semi-space-size=2'])).code, 64, 'no --');
  rmSync(join(root, 'slots.json'));
  const missing = await runExec(root, ['--', ...ARGS]);
  assert.equal(missing.code, 78, 'not installed: RestartPreventExitStatus=78');
  assert.match(missing.stderr, /"event":"not-installed"/);
});
