/**
 * The boot guard's self-containment and its pure parts: GUARD_FILES is closed under imports
 * (the guard runs from ROOT/guard with nothing else), installGuard swaps the set as a whole,
 * argument parsing and the restart backoff.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUARD_FILES, guardEntry, installGuard } from '../../ota/guard-install.js';
import { parseGuardArgs, restartDelay } from '../../ota/boot-guard.js';
import { tempDir } from '../helpers/util.js';

// dist/test/unit/ -> dist/
const DIST = fileURLToPath(new URL('../../', import.meta.url));

/** Static and dynamic import specifiers of a compiled ES module. */
function importsOf(source: string): string[] {
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  return [...source.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

test('GUARD_FILES is closed under imports: each file imports only node: builtins and other guard files', () => {
  const listed = new Set<string>(GUARD_FILES);
  for (const file of GUARD_FILES) {
    const specs = importsOf(readFileSync(join(DIST, file), 'utf8'));
    if (file === 'ota/slots.js') assert.ok(specs.length >= 3, `the import scan found too little in ${file}: ${specs.join(', ')}`);
    for (const spec of specs) {
      if (spec.startsWith('node:')) continue;
      assert.ok(spec.startsWith('.'), `${file} imports the package "${spec}": the guard has no node_modules`);
      const target = normalize(join(dirname(file), spec));
      assert.ok(listed.has(target), `${file} imports ${target}, which is not in GUARD_FILES`);
    }
  }
});

test('installGuard writes the set under ROOT/guard and swaps it as a whole', () => {
  const root = tempDir('guard');
  const first = installGuard(DIST, root);
  const link = join(root, 'guard');
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(realpathSync(link), realpathSync(first));
  for (const f of GUARD_FILES) assert.deepEqual(readFileSync(join(link, f)), readFileSync(join(DIST, f)), f);
  assert.deepEqual(JSON.parse(readFileSync(join(link, 'package.json'), 'utf8')), { type: 'module', private: true });
  assert.ok(existsSync(guardEntry(root)));
  assert.equal(installGuard(DIST, root), first, 'the same files install to the same place');

  // Other files: a new directory, the link moves, the old one goes, no temp link stays.
  const fake = tempDir('dist');
  for (const f of GUARD_FILES) {
    mkdirSync(dirname(join(fake, f)), { recursive: true });
    writeFileSync(join(fake, f), `// ${f} v2\n`);
  }
  const second = installGuard(fake, root);
  assert.notEqual(second, first);
  assert.equal(readlinkSync(link), join('guard.d', second.split('/').at(-1)!), 'a relative link: the root can move');
  assert.equal(readFileSync(guardEntry(root), 'utf8'), '// ota/boot-guard.js v2\n');
  assert.deepEqual(readdirSync(join(root, 'guard.d')), [second.split('/').at(-1)]);
  assert.deepEqual(readdirSync(root).sort(), ['guard', 'guard.d']);
});

test('installGuard replaces a plain guard directory', () => {
  const root = tempDir('guard');
  mkdirSync(join(root, 'guard', 'ota'), { recursive: true });
  writeFileSync(join(root, 'guard', 'ota', 'boot-guard.js'), 'old');
  installGuard(DIST, root);
  assert.ok(lstatSync(join(root, 'guard')).isSymbolicLink());
  assert.deepEqual(readFileSync(guardEntry(root)), readFileSync(join(DIST, 'ota', 'boot-guard.js')));
});

test('parseGuardArgs: defaults, --node-flag takes a dash-word, everything after -- is the agent\'s', () => {
  const o = parseGuardArgs(['--root', '/opt/edge-agent', '--node-flag', '--max-semi-space-size=1', '--', 'run', '--config', '/etc/edge-agent/config.yaml']);
  assert.equal(o.root, '/opt/edge-agent');
  assert.deepEqual(o.nodeFlags, ['--max-semi-space-size=1']);
  assert.deepEqual(o.agentArgs, ['run', '--config', '/etc/edge-agent/config.yaml']);
  assert.deepEqual([o.maxTrialStarts, o.trialTimeoutMs, o.pollMs, o.backoffMinMs, o.backoffMaxMs, o.backoffResetMs], [3, 120_000, 500, 1000, 30_000, 60_000]);
  const p = parseGuardArgs(['--root=r', '--max-trial-starts=5', '--trial-timeout-ms', '1500', '--backoff-min-ms', '0']);
  assert.deepEqual([p.maxTrialStarts, p.trialTimeoutMs, p.backoffMinMs, p.agentArgs], [5, 1500, 0, []]);
  assert.ok(p.root.endsWith('/r') && p.root.startsWith('/'), 'the root is made absolute');
  for (const [args, re] of [
    [[], /--root is required/],
    [['--root'], /--root needs a value/],
    [['--root', 'r', '--max-trial-starts', '0'], /--max-trial-starts must be/],
    [['--root', 'r', '--poll-ms', '0'], /--poll-ms must be/],
    [['--root', 'r', '--trial-timeout-ms', '2s'], /--trial-timeout-ms must be/],
    [['--root', 'r', '--bogus', '1'], /unknown option "--bogus"/],
  ] as const) {
    assert.throws(() => parseGuardArgs(args), re);
  }
});

test('restartDelay: exponential from the minimum, jittered up to +25 %, capped', () => {
  const lo = (a: number): number => restartDelay(a, 1000, 30_000, () => 0);
  const hi = (a: number): number => restartDelay(a, 1000, 30_000, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(lo), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  assert.deepEqual([0, 1, 4, 5].map(hi), [1250, 2500, 20_000, 30_000]);
});
