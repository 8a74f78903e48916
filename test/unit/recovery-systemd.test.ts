/**
 * The systemd variant of a supervised component (recovery/systemd-unit.ts) against a stand-in
 * `systemctl` (a small script that plays a unit from a state file and logs its arguments): the
 * argument arrays it runs, liveness from `is-active`, a failed restart as `systemctl-failed`,
 * the exit status from `show`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../lib/log.js';
import { SystemdUnit } from '../../recovery/systemd-unit.js';
import { tempDir } from '../helpers/util.js';

function fakeSystemctl(dir: string): { bin: string; set(state: string, restartExit?: number): void; calls(): string[] } {
  const bin = join(dir, 'systemctl');
  const stateFile = join(dir, 'state');
  const log = join(dir, 'calls');
  writeFileSync(
    bin,
    `#!/bin/sh
echo "$*" >> '${log}'
read state rc < '${stateFile}'
case "$1" in
  is-active) echo "$state"; [ "$state" = active ];;
  restart) exit "$rc";;
  kill) echo inactive 0 > '${stateFile}';;
  show) case "$*" in *MainPID*) echo 4242;; *) printf 'ExecMainCode=2\\nExecMainStatus=9\\n';; esac;;
esac
`,
  );
  chmodSync(bin, 0o755);
  writeFileSync(log, '');
  return {
    bin,
    set: (state, restartExit = 0) => writeFileSync(stateFile, `${state} ${restartExit}\n`),
    calls: () => readFileSync(log, 'utf8').trim().split('\n').filter(Boolean),
  };
}

test('a unit: liveness from is-active, restart with systemctl, a failed restart is systemctl-failed, the exit status from show', async () => {
  const f = fakeSystemctl(tempDir('systemctl'));
  const u = new SystemdUnit({ unit: 'edge-plc-bridge.service', logger: silentLogger(), systemctl: f.bin, journalctl: f.bin });
  f.set('active');
  assert.equal(await u.alive(), true);
  assert.equal(u.pid(), 4242);
  assert.equal(await u.adopt(), 'adopted');
  f.set('failed');
  assert.equal(await u.alive(), false);
  await u.start();
  f.set('failed', 1);
  await assert.rejects(u.start(), { code: 'systemctl-failed' });
  assert.deepEqual(await u.lastExit(), { signal: 'SIGKILL' });
  f.set('active');
  await u.kill(1000);
  assert.equal(await u.alive(), false, 'SIGTERM stopped it');
  const calls = f.calls();
  assert.ok(calls.includes('restart edge-plc-bridge.service'), calls.join('\n'));
  assert.ok(calls.includes('kill --signal=SIGTERM edge-plc-bridge.service'), calls.join('\n'));
  assert.ok(!calls.some((c) => c.includes('SIGKILL')), 'no SIGKILL when SIGTERM was enough');
});
