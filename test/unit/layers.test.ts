/**
 * The arrows of docs/architecture.md ("Dependencies point one way"), checked on the sources:
 * each top-level folder imports only the folders below it. agent/ is the top floor; nothing but
 * the tests, the benchmarks and the demo imports it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** What each folder may import of ours, besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  lib: [],
  core: ['lib'],
  certs: ['lib'],
  ota: ['lib', 'certs'],
  'plc-bridge': ['lib'],
  recovery: ['lib', 'core'],
  health: ['lib', 'core', 'ota', 'certs', 'plc-bridge', 'maintenance'],
  // Its runner's built-in actions (health/, recovery/, ota/) come in through the composition root.
  maintenance: ['lib', 'core'],
  // The web console's server and pages: the agent's parts come in through console/ports.ts.
  console: ['lib', 'core'],
};

function sources(dir: string): string[] {
  let out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out = out.concat(sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The top-level folder each relative import of a file lands in. */
function importedFolders(file: string): { spec: string; folder: string }[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1] ?? '');
  return specs.map((spec) => ({ spec, folder: relative(ROOT, resolve(dirname(file), spec)).split('/')[0] ?? '' }));
}

test('each capability imports only the folders below it; nothing imports agent/', () => {
  const bad: string[] = [];
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    for (const file of sources(join(ROOT, folder))) {
      for (const { spec, folder: to } of importedFolders(file)) {
        if (to !== folder && !allowed.includes(to)) bad.push(`${relative(ROOT, file)} imports ${spec} (${folder}/ -> ${to}/)`);
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('the check sees an upward import', () => {
  const found = importedFolders(join(ROOT, 'agent', 'main.ts')).map((i) => i.folder);
  assert.ok(found.includes('core') && found.includes('health'), String(found));
});
