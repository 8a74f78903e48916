/**
 * Which invalid procedures are announced (`procedure-invalid`): once per file and content,
 * again after the file was valid in between, never for a valid one; and the diag group's
 * verdicts on a catalog (a warning per invalid or unsafe file naming its first problems).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Catalog, CatalogEntry } from '../../maintenance/catalog.js';
import { contentKey, parseAnnounced, toAnnounce, type Announced } from '../../maintenance/announce.js';
import { procedureVerdicts } from '../../health/diag/maintenance.js';
import { procedureInvalidEvent } from '../../agent/procedure-watch.js';

const DIR = '/etc/edge-agent/procedures';

function entry(id: string, status: CatalogEntry['status'], sha: string | undefined, problems: string[] = status === 'valid' ? [] : ['steps: required']): CatalogEntry {
  const file = `${DIR}/${id}.yaml`;
  return { id, file, source: 'operator', status, definitionSha256: sha, procedure: undefined, problems: problems.map((m, i) => ({ file, path: i === 0 ? 'steps' : `x${i}`, message: m })) };
}

/** Runs the scans in order, persisting `next` as the daemon does; returns the files announced by each. */
function scans(...catalogs: CatalogEntry[][]): string[][] {
  let announced: Announced = {};
  return catalogs.map((entries) => {
    const r = toAnnounce(entries, announced);
    announced = parseAnnounced(JSON.stringify(r.next));
    return r.announce.map((e) => e.file);
  });
}

test('an invalid file is announced once per content; a valid one never', () => {
  const a = entry('a', 'valid', 'aa');
  const b = entry('b', 'invalid', 'b1');
  assert.deepEqual(scans([a, b], [a, b], [a, b]), [[`${DIR}/b.yaml`], [], []]);
});

test('new content of an invalid file is announced again; a second invalid file on its own', () => {
  const b1 = entry('b', 'invalid', 'b1');
  const b2 = entry('b', 'invalid', 'b2');
  const c = entry('c', 'unsafe', 'c1', ['the file is writable by anyone']);
  assert.deepEqual(scans([b1], [b1, c], [b2, c]), [[`${DIR}/b.yaml`], [`${DIR}/c.yaml`], [`${DIR}/b.yaml`]]);
});

test('a file that becomes valid and then invalid again (same bytes as before) is announced again', () => {
  const bad = entry('b', 'invalid', 'b1');
  const good = entry('b', 'valid', 'b2');
  assert.deepEqual(scans([bad], [good], [bad]), [[`${DIR}/b.yaml`], [], [`${DIR}/b.yaml`]]);
  // Removed and written back: the same.
  assert.deepEqual(scans([bad], [], [bad]), [[`${DIR}/b.yaml`], [], [`${DIR}/b.yaml`]]);
});

test('a file that could not be read is keyed by its problems; a restart with the persisted map repeats nothing', () => {
  const unread = entry('u', 'invalid', undefined, ['cannot read it: EACCES']);
  assert.match(contentKey(unread), /^unread:[0-9a-f]{64}$/);
  const first = toAnnounce([unread, entry('b', 'invalid', 'b1')], {});
  assert.equal(first.announce.length, 2);
  const persisted = JSON.stringify(first.next);
  assert.deepEqual(toAnnounce([unread, entry('b', 'invalid', 'b1')], parseAnnounced(persisted)).announce, []);
});

test('an unreadable persisted map announces again rather than less', () => {
  assert.deepEqual(parseAnnounced('{not json'), {});
  assert.deepEqual(parseAnnounced('[1]'), {});
  assert.deepEqual(parseAnnounced(undefined), {});
  assert.deepEqual(parseAnnounced('{"a": "x", "b": 3}'), { a: 'x' });
});

test('the event carries the file and every problem', () => {
  const e = entry('b', 'invalid', 'b1', ['one', 'two', 'three', 'four']);
  const ev = procedureInvalidEvent(e);
  assert.equal(ev.type, 'procedure-invalid');
  assert.equal(ev.code, 'invalid-procedure');
  assert.equal(ev.file, `${DIR}/b.yaml`);
  assert.equal((ev.problems as unknown[]).length, 4);
  assert.equal(procedureInvalidEvent(entry('c', 'unsafe', 'c1')).code, 'unsafe-procedure');
});

test('diag: each invalid or unsafe file is a warning naming it and its first problems; all valid is ok', () => {
  const cat = (entries: CatalogEntry[], problems: Catalog['problems'] = []): Catalog => ({ entries, problems });
  const okAll = procedureVerdicts(cat([entry('a', 'valid', 'aa')]), DIR, true);
  assert.deepEqual(okAll.map((c) => [c.name, c.status, c.skipped ?? false]), [['procedures-dir', 'ok', false], ['procedures', 'ok', false]]);
  const bad = procedureVerdicts(cat([entry('a', 'valid', 'aa'), entry('b', 'invalid', 'b1', ['one', 'two', 'three', 'four']), entry('c', 'unsafe', 'c1')]), DIR, true);
  assert.deepEqual(bad.map((c) => [c.name, c.status]), [['procedures-dir', 'ok'], ['procedure:b.yaml', 'warning'], ['procedure:c.yaml', 'warning']]);
  assert.match(bad[1]?.message ?? '', /b\.yaml is invalid.*4 problems.*one.*two.*three.*and 1 more/);
  assert.match(bad[2]?.message ?? '', /refused as unsafe/);
  assert.ok(bad[1]?.recommendation);
  const missing = procedureVerdicts(cat([]), DIR, false);
  assert.deepEqual(missing.map((c) => [c.name, c.status, c.skipped ?? false]), [['procedures-dir', 'ok', true], ['procedures', 'ok', false]]);
  const unreadable = procedureVerdicts(cat([], [{ file: DIR, path: '(directory)', message: 'cannot read the procedures directory: EACCES' }]), DIR, true);
  assert.equal(unreadable[0]?.status, 'warning');
});
