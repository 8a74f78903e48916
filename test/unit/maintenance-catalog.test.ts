/**
 * The procedures on a gateway, from real files in a temp directory: shipped and operator
 * procedures, an operator file overriding a shipped one, invalid files kept with their problems,
 * unsafe permissions refused (file, directory, owner; a sticky ancestor is fine), sha256.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { findProcedure, loadCatalog, runnableProcedure, shippedProceduresDir, type Catalog } from '../../maintenance/catalog.js';
import { MaintenanceError } from '../../maintenance/errors.js';
import { ownershipVerdict, trustedOwners } from '../../maintenance/safety.js';
import { tempDir } from '../helpers/util.js';

const UID = process.getuid?.() ?? 0;
let dir: string;

function proc(id: string, extra: Record<string, unknown> = {}): string {
  return stringify({ id, name: `Procedure ${id}`, steps: [{ id: 'say', type: 'log', message: 'hello' }], ...extra });
}

/** A directory of procedure files with safe modes (0755 directory, 0644 files). */
function writeDir(name: string, files: Record<string, string>): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  chmodSync(d, 0o755);
  for (const [f, text] of Object.entries(files)) {
    writeFileSync(join(d, f), text);
    chmodSync(join(d, f), 0o644);
  }
  return d;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof MaintenanceError ? err.code : `not a MaintenanceError: ${String(err)}`;
  }
  return undefined;
}

before(() => {
  dir = tempDir('maint-catalog');
  chmodSync(dir, 0o755);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('shipped and operator procedures; an operator file with the same id replaces the shipped one', () => {
  const shipped = writeDir('shipped', { 'a.yaml': proc('a'), 'b.yaml': proc('b') });
  const operator = writeDir('operator', { 'b.yaml': proc('b', { name: 'Operator b' }), 'c.yaml': proc('c') });
  const cat = loadCatalog({ shippedDir: shipped, operatorDir: operator, agentUid: UID });
  assert.deepEqual(cat.problems, []);
  assert.deepEqual(cat.entries.map((e) => [e.id, e.source, e.status]), [['a', 'shipped', 'valid'], ['b', 'operator', 'valid'], ['c', 'operator', 'valid']]);
  const b = findProcedure(cat, 'b');
  assert.equal(b.procedure?.name, 'Operator b');
  assert.equal(b.overrides, join(shipped, 'b.yaml'));
  const r = runnableProcedure(cat, 'b');
  assert.equal(r.definitionSha256, createHash('sha256').update(readFileSync(join(operator, 'b.yaml'))).digest('hex'));
  assert.equal(r.file, join(operator, 'b.yaml'));
});

test('a broken operator override is the procedure (invalid), never silently the shipped one', () => {
  const shipped = writeDir('shipped2', { 'a.yaml': proc('a') });
  const operator = writeDir('operator2', { 'a.yaml': 'id: a\nname: [broken\n' });
  const cat = loadCatalog({ shippedDir: shipped, operatorDir: operator, agentUid: UID });
  const a = findProcedure(cat, 'a');
  assert.equal(a.status, 'invalid');
  assert.equal(a.source, 'operator');
  assert.equal(codeOf(() => runnableProcedure(cat, 'a')), 'invalid-procedure');
});

test('invalid files are kept as entries with every problem, file and key path; runnable refuses them', () => {
  const operator = writeDir('operator3', {
    'good.yaml': proc('good'),
    'bad.yaml': stringify({ id: 'bad', steps: [{ id: 'x', type: 'nope' }] }),
    'mismatch.yaml': proc('other'),
    'old.yml': proc('old'),
    'Bad Name.yaml': proc('bad-name'),
    'README.md': '# not a procedure',
    '.hidden.yaml': proc('hidden'),
  });
  const cat = loadCatalog({ shippedDir: undefined, operatorDir: operator, agentUid: UID });
  const by = (file: string): Catalog['entries'][number] => cat.entries.find((e) => e.file === join(operator, file))!;
  assert.deepEqual(cat.entries.map((e) => e.file.slice(operator.length + 1)).sort(), ['Bad Name.yaml', 'bad.yaml', 'good.yaml', 'mismatch.yaml', 'old.yml']);
  const bad = by('bad.yaml');
  assert.equal(bad.status, 'invalid');
  assert.deepEqual(bad.problems.map((p) => [p.file, p.path]), [[join(operator, 'bad.yaml'), 'name'], [join(operator, 'bad.yaml'), 'steps[0].type']]);
  assert.match(by('mismatch.yaml').problems[0]!.message, /must be the file's name \(mismatch\.yaml\)/);
  assert.match(by('old.yml').problems[0]!.message, /named \{id\}\.yaml/);
  assert.match(by('Bad Name.yaml').problems.map((p) => p.message).join(), /file name must be \{id\}\.yaml/);
  assert.ok(bad.definitionSha256 && /^[0-9a-f]{64}$/.test(bad.definitionSha256));
  assert.equal(codeOf(() => runnableProcedure(cat, 'bad')), 'invalid-procedure');
  assert.equal(codeOf(() => runnableProcedure(cat, 'old')), 'unknown-procedure');
  assert.equal(codeOf(() => runnableProcedure(cat, 'nothing-here')), 'unknown-procedure');
  assert.equal(codeOf(() => runnableProcedure(cat, 'good')), undefined);
});

test('unsafe: a file or directory others may write, or a file owned by another user, is refused before it is read as YAML', () => {
  const worldFile = writeDir('unsafe1', { 'p.yaml': proc('p') });
  chmodSync(join(worldFile, 'p.yaml'), 0o666);
  const groupFile = writeDir('unsafe2', { 'p.yaml': proc('p') });
  chmodSync(join(groupFile, 'p.yaml'), 0o664);
  const worldDir = writeDir('unsafe3', { 'p.yaml': proc('p'), 'broken.yaml': 'not: [yaml' });
  chmodSync(worldDir, 0o777);
  for (const [d, fragment] of [
    [worldFile, /the file is writable by anyone \(mode 0666\)/],
    [groupFile, /the file is writable by its group \(mode 0664\)/],
    [worldDir, /the directory .*unsafe3 is writable by anyone \(mode 0777\)/],
  ] as const) {
    const cat = loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: UID });
    const e = findProcedure(cat, 'p');
    assert.equal(e.status, 'unsafe');
    assert.match(e.problems.map((p) => p.message).join('\n'), fragment);
    assert.equal(e.procedure, undefined);
    assert.ok(e.definitionSha256);
    assert.equal(codeOf(() => runnableProcedure(cat, 'p')), 'unsafe-procedure');
  }
  // Even a file that would be invalid is reported unsafe: it is refused unread.
  assert.equal(findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: worldDir, agentUid: UID }), 'broken').status, 'unsafe');
  // The same directory made safe again is fine.
  chmodSync(worldDir, 0o755);
  assert.equal(findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: worldDir, agentUid: UID }), 'p').status, 'valid');
});

test('unsafe: owned by a user who is neither root nor the agent', { skip: UID !== 0 ? 'chown needs root' : false }, () => {
  const d = writeDir('owned', { 'p.yaml': proc('p') });
  chownSync(join(d, 'p.yaml'), 65534, 65534);
  let e = findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: 0 }), 'p');
  assert.equal(e.status, 'unsafe');
  assert.match(e.problems[0]!.message, /owned by uid 65534, not by root or the agent's user/);
  // The agent's own user (when it is not root) may own it.
  e = findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: 65534 }), 'p');
  assert.equal(e.status, 'valid');
  chownSync(join(d, 'p.yaml'), 0, 0);
  chownSync(d, 65534, 65534);
  assert.match(findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: 0 }), 'p').problems[0]!.message, /the directory .* is owned by uid 65534/);
});

test('a FIFO or a directory named like a procedure is an invalid entry, and does not hang the load', () => {
  const d = writeDir('special', { 'ok.yaml': proc('ok') });
  execFileSync('mkfifo', [join(d, 'fifo.yaml')]);
  chmodSync(join(d, 'fifo.yaml'), 0o644);
  mkdirSync(join(d, 'dir.yaml'), { mode: 0o755 });
  const cat = loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: UID });
  assert.equal(findProcedure(cat, 'ok').status, 'valid');
  for (const id of ['fifo', 'dir']) {
    const e = findProcedure(cat, id);
    assert.equal(e.status, 'invalid', id);
    assert.match(e.problems.map((p) => p.message).join(), /not a regular file|EISDIR/, id);
  }
});

test('a symbolic link is judged by the file it points to', () => {
  const target = writeDir('target', { 'real.yaml': proc('p') });
  chmodSync(join(target, 'real.yaml'), 0o646);
  const d = writeDir('links', {});
  symlinkSync(join(target, 'real.yaml'), join(d, 'p.yaml'));
  const e = findProcedure(loadCatalog({ shippedDir: undefined, operatorDir: d, agentUid: UID }), 'p');
  assert.equal(e.status, 'unsafe');
});

test('ownership verdicts: sticky ancestors (like /tmp) are fine, a sticky procedures directory is not', () => {
  const t = trustedOwners(1000);
  assert.equal(ownershipVerdict('ancestor', '/tmp', { uid: 0, mode: 0o41777 }, t), undefined);
  assert.match(ownershipVerdict('directory', '/tmp', { uid: 0, mode: 0o41777 }, t) ?? '', /writable by anyone/);
  assert.match(ownershipVerdict('ancestor', '/x', { uid: 0, mode: 0o40777 }, t) ?? '', /writable by anyone/);
  assert.equal(ownershipVerdict('file', '/x', { uid: 1000, mode: 0o100644 }, t), undefined);
  assert.match(ownershipVerdict('file', '/x', { uid: 1001, mode: 0o100644 }, t) ?? '', /uid 1001/);
});

test('a missing operator directory holds no procedures; an unreadable one is a problem', () => {
  const cat = loadCatalog({ shippedDir: undefined, operatorDir: join(dir, 'does-not-exist'), agentUid: UID });
  assert.deepEqual(cat, { entries: [], problems: [] });
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  const bad = loadCatalog({ shippedDir: undefined, operatorDir: file, agentUid: UID });
  assert.equal(bad.problems.length, 1);
  assert.match(bad.problems[0]!.message, /cannot read the procedures directory/);
});

test('the procedures shipped in this release are valid', () => {
  const cat = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: join(dir, 'none'), agentUid: UID });
  assert.ok(cat.entries.length >= 1);
  for (const e of cat.entries) assert.equal(e.status, 'valid', `${e.file}: ${e.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
});
