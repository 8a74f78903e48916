/**
 * deploy/release.ts and deploy/package-deb.ts asked for an architecture this machine cannot build
 * (the native modules are compiled here, their prebuilt binaries come from GitHub, which a build
 * machine cannot reach): they say so, say how to build this machine's architecture instead, and
 * build nothing. The x64 build itself is what test/integration/release.test.ts runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { archProblem } from '../../deploy/release.js';
import { tempDir } from '../helpers/util.js';

// dist/test/unit/ -> dist/deploy/
const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const other = process.arch === 'arm64' ? 'x64' : 'arm64';

function run(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(DEPLOY, script), ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

test('archProblem: none for this machine\'s architecture, the reason and the way out for the other', () => {
  assert.equal(archProblem(process.arch as 'x64' | 'arm64'), undefined);
  const why = archProblem(other) ?? '';
  assert.match(why, new RegExp(`cannot build an ${other} release on this ${process.arch} machine`));
  assert.match(why, /better-sqlite3 and unix-dgram/);
  assert.match(why, /prebuilt binaries, which come from GitHub \(not reachable here/);
  assert.match(why, new RegExp(`Nothing was built\\. To build the ${process.arch} release here: npm run release -- --arch ${process.arch}\\.`));
});

for (const [script, name] of [
  ['release.js', 'npm run release'],
  ['package-deb.js', 'npm run package'],
] as const) {
  test(`${name} -- --arch ${other}: says why and how to build ${process.arch}, exits 1, builds nothing`, async () => {
    const out = tempDir('release-arch');
    const r = await run(script, ['--arch', other, '--out', out]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot build an ${other} release`));
    assert.match(r.stderr, new RegExp(`--arch ${process.arch}`));
    assert.equal(r.stdout, '');
    assert.deepEqual(existsSync(out) ? readdirSync(out).filter((e) => e !== 'cache') : [], [], 'nothing was built');
  });
}
