/**
 * .ci/deps, which .ci/run and `npm test` (pretest) both call: it reads one list of Debian packages
 * with a probe each, and without root it must stop before any test with the exact apt-get line
 * instead of letting the tests fail for a missing tool. Run on lists of our own, so the machine's
 * real packages do not matter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/util.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = join(ROOT, '.ci/deps');

function run(args: string[], list: string, uid?: number) {
  const env = { ...process.env, EDGE_AGENT_DEPS_FILE: list };
  return spawnSync('bash', [SCRIPT, ...args], { env, encoding: 'utf8', ...(uid === undefined ? {} : { uid, gid: uid }) });
}

function listFile(text: string): string {
  const dir = tempDir('ci-deps');
  chmodSync(dir, 0o755); // readable by the unprivileged user of the last test
  const f = join(dir, 'debian-packages');
  writeFileSync(f, text, { mode: 0o644 });
  return f;
}

const LIST = '# comment\n\npresent-pkg   true\nabsent-pkg    false\nabsent-too    test -e /nonexistent/x\n';

test('--check names each package whose probe fails and the apt-get line, exit 1', () => {
  const r = run(['--check'], listFile(LIST));
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /missing Debian packages the tests need: absent-pkg absent-too\n/);
  assert.match(r.stderr, /apt-get update && apt-get install -y --no-install-recommends absent-pkg absent-too/);
  assert.doesNotMatch(r.stderr, /present-pkg/);
});

test('everything present: exit 0 and silent', () => {
  const r = run([], listFile('a true\nb  command -v bash\n'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('--list prints the package names of the real list', () => {
  const r = run(['--list'], join(ROOT, '.ci/debian-packages'));
  assert.equal(r.status, 0, r.stderr);
  const names = r.stdout.trim().split('\n');
  for (const p of ['mosquitto', 'mosquitto-clients', 'systemd', 'python3-pymodbus', 'python3-serial', 'python3-serial-asyncio']) {
    assert.ok(names.includes(p), `${p} in ${names.join(',')}`);
  }
});

test('the pymodbus probe imports the server module the fixture imports, not just the package', () => {
  const list = readFileSync(join(ROOT, '.ci/debian-packages'), 'utf8');
  const fixture = readFileSync(join(ROOT, 'test/fixtures/pymodbus_server.py'), 'utf8');
  const mod = /^from (pymodbus\.server\.\S+) import/m.exec(fixture)?.[1];
  assert.ok(mod, 'the fixture imports a pymodbus server module');
  assert.match(list, new RegExp(`^python3-pymodbus\\s+/usr/bin/python3 -c 'import ${mod.replace(/\./g, '\\.')}'$`, 'm'));
});

test('a line without a probe is an error in the list, exit 2', () => {
  const r = run(['--check'], listFile('lonely-pkg\n'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no probe for lonely-pkg/);
});

test('not root and something missing: stops with the exact apt-get line, installs nothing', { skip: process.getuid?.() !== 0 && 'needs root to run the script as another user' }, () => {
  const f = listFile(LIST);
  const r = run([], f, 65534);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /no test was run/);
  assert.match(r.stderr, /^ {2}apt-get update && apt-get install -y --no-install-recommends absent-pkg absent-too$/m);
});
