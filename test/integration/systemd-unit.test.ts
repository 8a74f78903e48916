/**
 * deploy/systemd/edge-agent.service and edge-plc-bridge.service pass `systemd-analyze verify`
 * without a word about them.
 *
 * Exit status alone proves little: systemd 252 exits 0 on unknown keys and unparsable values
 * ("Unknown key ..., ignoring"), and only fails for things like a missing ExecStart binary. So
 * the test also requires stderr to say nothing about our unit; a control case below shows that
 * check catching a misspelt key.
 *
 * Known-harmless output: lines that do not name our unit. verify also loads the units ours
 * pulls in (network-online.target, multi-user.target, ...) from the host, and whatever the
 * host's own units say about themselves is not ours to fix. systemd 252 prints nothing about
 * this unit itself (not even for the absent `edge-agent` user: verify does not resolve User=),
 * so no line naming it is tolerated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BRIDGE_NODE_FLAGS } from '../../plc-bridge/node-flags.js';
import { tempDir } from '../helpers/util.js';
import { BRIDGE_UNIT } from '../../agent/recovery-wiring.js';

const execFileAsync = promisify(execFile);
// dist/test/integration/ -> the repository root.
const source = (unit: string): string => fileURLToPath(new URL(`../../../deploy/systemd/${unit}`, import.meta.url));
const NODE = '/usr/bin/node';

interface UnitSpec {
  name: string;
  /** The program ExecStart starts (verify needs it to exist: the test puts a stand-in there). */
  program: string;
  /** The whole ExecStart= value. */
  execStart: string;
}

// The agent's unit starts the boot guard (ota/boot-guard.ts), which starts the active slot's agent.
const AGENT: UnitSpec = {
  name: 'edge-agent.service',
  program: NODE,
  execStart: `${NODE} --max-semi-space-size=1 /opt/edge-agent/guard/ota/boot-guard.js --root /opt/edge-agent --node-flag --max-semi-space-size=1 -- run --config /etc/edge-agent/config.yaml`,
};
// The bridge's unit execs the active slot's `edge-agent plc-bridge` on that slot's own runtime,
// as the unit's main process (ota/slot-exec.ts), with the flags every other start of the bridge
// uses too (agent/recovery-wiring.ts, bench/).
const SLOT_EXEC = '/opt/edge-agent/guard/bin/slot-exec';
const BRIDGE: UnitSpec = {
  name: 'edge-plc-bridge.service',
  program: SLOT_EXEC,
  execStart: [SLOT_EXEC, '/opt/edge-agent', ...BRIDGE_NODE_FLAGS, '--', 'plc-bridge', '--config', '/etc/edge-agent/plc-bridge.yaml'].join(' '),
};

interface Verdict {
  code: number;
  ours: string[];
  others: string[];
}

/**
 * Copies the unit into a temp dir with ExecStart pointing at binaries that exist here (verify
 * checks that the command is executable), optionally edits it, and runs verify on the copy.
 */
async function verify(unit: UnitSpec, edit: (text: string) => string = (t) => t): Promise<Verdict> {
  const dir = tempDir('unit');
  const program = join(dir, 'program');
  writeFileSync(program, '#!/bin/sh\n', { mode: 0o755 });
  const original = readFileSync(source(unit.name), 'utf8');
  assert.ok(original.includes(`ExecStart=${unit.execStart}\n`), 'ExecStart changed: update this test');
  const path = join(dir, unit.name);
  writeFileSync(path, edit(original.replace(`ExecStart=${unit.program} `, `ExecStart=${program} `)));
  let code = 0;
  let stderr = '';
  try {
    ({ stderr } = await execFileAsync('systemd-analyze', ['verify', path]));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { code?: number | string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('systemd-analyze not found: install systemd (apt-get install systemd); CI does', { cause: err });
    code = typeof e.code === 'number' ? e.code : -1;
    stderr = e.stderr ?? '';
  }
  rmSync(dir, { recursive: true, force: true });
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const isOurs = (l: string): boolean => l.includes(unit.name) || l.includes(path);
  return { code, ours: lines.filter(isOurs), others: lines.filter((l) => !isOurs(l)) };
}

/** `Key=value` pairs of the unit, later assignments winning, as systemd reads single-value keys. */
function directives(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

for (const unit of [AGENT, BRIDGE]) {
  test(`${unit.name}: systemd-analyze verify accepts the unit and says nothing about it`, async (t) => {
    const v = await verify(unit);
    if (v.others.length > 0) t.diagnostic(`host units (ignored):\n${v.others.join('\n')}`);
    assert.deepEqual(v.ours, [], 'systemd-analyze complained about the unit');
    assert.equal(v.code, 0);
  });

  test(`${unit.name}: control: a misspelt key exits 0 but is caught by the stderr check`, async () => {
    const v = await verify(unit, (text) => text.replace('WatchdogSec=30', 'WatchdogSecs=30'));
    assert.equal(v.code, 0);
    assert.equal(v.ours.length, 1);
    assert.match(v.ours[0]!, /Unknown key 'WatchdogSecs'/);
  });

  test(`${unit.name}: control: a missing ExecStart binary fails verify`, async () => {
    const v = await verify(unit, (text) => text.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'));
    assert.notEqual(v.code, 0);
    assert.match(v.ours.join('\n'), /not executable/);
  });
}

test('the agent\'s unit keeps the behaviour the agent relies on', () => {
  const d = directives(readFileSync(source(AGENT.name), 'utf8'));
  const expected: Record<string, string> = {
    Type: 'notify',
    ExecStart: AGENT.execStart,
    // The agent, a child of the guard, sends READY=1 and WATCHDOG=1.
    NotifyAccess: 'all',
    WatchdogSec: '30',
    Restart: 'on-failure',
    KillMode: 'mixed',
    TimeoutStopSec: '20',
    RestartPreventExitStatus: '78',
    User: 'edge-agent',
    StateDirectory: 'edge-agent',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ReadWritePaths: '/var/lib/edge-agent /opt/edge-agent',
    WantedBy: 'multi-user.target',
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(d.get(key), value, key);
});

test('the bridge\'s unit keeps what a handover under systemd relies on', () => {
  const d = directives(readFileSync(source(BRIDGE.name), 'utf8'));
  const expected: Record<string, string> = {
    Type: 'notify',
    ExecStart: BRIDGE.execStart,
    // The successor, not the process systemd started, sends MAINPID=, READY=1 and WATCHDOG=1.
    NotifyAccess: 'all',
    // The old bridge's exit before systemd read the successor's MAINPID= must not end the service.
    ExitType: 'cgroup',
    // A stop in the middle of a handover stops both bridges cleanly.
    KillMode: 'control-group',
    WatchdogSec: '30',
    Restart: 'always',
    RestartPreventExitStatus: '78',
    // The agent's watchdog restarts the unit; a start limit would refuse it.
    StartLimitIntervalSec: '0',
    User: 'edge-agent',
    StateDirectory: 'edge-agent/plc-bridge',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ReadWritePaths: '/var/lib/edge-agent/plc-bridge',
    WantedBy: 'multi-user.target',
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(d.get(key), value, key);
  // The agent manages the bridge under systemd by this unit name.
  assert.equal(BRIDGE_UNIT, BRIDGE.name);
  // Hardening as the agent's unit, where it fits.
  const agent = directives(readFileSync(source(AGENT.name), 'utf8'));
  for (const key of ['ProtectHome', 'PrivateTmp', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictSUIDSGID', 'LockPersonality', 'RestrictRealtime']) {
    assert.equal(d.get(key), agent.get(key), key);
  }
});
