/**
 * Known-good configuration copies (recovery/known-good.ts), the start-time fallback
 * (agent/restore-wiring.ts loadConfigWithRestore) and the pending-incident hand-off, on real
 * files in a temp directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkSidecar, knownGoodDir, listKnownGood, parseSidecar, restoreConfig, sha256Hex, takeKnownGood } from '../../recovery/known-good.js';
import { addPending, flushPending, listPending, pendingPath, type PendingIncident } from '../../recovery/pending-incidents.js';
import { candidateDataDirs, loadConfigWithRestore } from '../../agent/restore-wiring.js';
import { ConfigError } from '../../core/config.js';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'known-good-'));
}

const GOOD = (dataDir: string, extra = ''): string => `gatewayId: gw-1\ndataDir: ${dataDir}\nmqtt:\n  url: mqtt://127.0.0.1:1883\n${extra}`;

test('parseSidecar reads sha256sum output and bare digests, nothing else', () => {
  const h = sha256Hex('x');
  assert.equal(parseSidecar(`${h}  config.yaml\n`), h);
  assert.equal(parseSidecar(h.toUpperCase()), h);
  assert.equal(parseSidecar('not a digest'), undefined);
  assert.equal(parseSidecar(`${h}0`), undefined);
});

test('checkSidecar: none, match, mismatch', () => {
  const d = dir();
  const f = join(d, 'config.yaml');
  writeFileSync(f, 'a: 1\n');
  assert.deepEqual(checkSidecar(f, readFileSync(f)), { state: 'none' });
  writeFileSync(`${f}.sha256`, `${sha256Hex('a: 1\n')}  config.yaml\n`);
  assert.equal(checkSidecar(f, readFileSync(f)).state, 'match');
  writeFileSync(f, 'a: 2\n');
  const c = checkSidecar(f, readFileSync(f));
  assert.equal(c.state, 'mismatch');
  writeFileSync(`${f}.sha256`, 'garbage');
  assert.equal(checkSidecar(f, readFileSync(f)).state, 'mismatch', 'an unreadable sidecar cannot vouch for the file');
});

test('takeKnownGood: copies with sidecars, no duplicate of the newest, rotation keeps N', () => {
  const d = dir();
  const src = join(d, 'etc', 'config.yaml');
  const take = (s: string): boolean => takeKnownGood({ dataDir: d, source: src, content: Buffer.from(s), keep: 3 }).taken;
  assert.equal(take('v1'), true);
  assert.equal(take('v1'), false, 'the same bytes again are not copied again');
  assert.equal(take('v2'), true);
  assert.equal(take('v3'), true);
  assert.equal(take('v4'), true);
  const copies = listKnownGood(d, src);
  assert.deepEqual(copies.map((c) => readFileSync(c.path, 'utf8')), ['v4', 'v3', 'v2']);
  for (const c of copies) assert.equal(c.sha256, sha256Hex(readFileSync(c.path)));
  assert.equal(readFileSync(join(knownGoodDir(d, src), 'source'), 'utf8').trim(), src);
  // Another file's copies live apart.
  takeKnownGood({ dataDir: d, source: join(d, 'other.yaml'), content: Buffer.from('o'), keep: 3 });
  assert.equal(listKnownGood(d, src).length, 3);
});

test('restoreConfig: quarantines the bad file, writes the newest usable copy, skips tampered and invalid copies', () => {
  const d = dir();
  const src = join(d, 'config.yaml');
  for (const v of ['old-good', 'newer-invalid', 'newest-tampered']) takeKnownGood({ dataDir: d, source: src, content: Buffer.from(v), keep: 5 });
  const [tampered] = listKnownGood(d, src);
  writeFileSync(tampered!.path, 'evil');
  writeFileSync(src, 'truncat');
  writeFileSync(`${src}.sha256`, `${sha256Hex('something else')}  config.yaml\n`);
  const r = restoreConfig({
    dataDir: d,
    source: src,
    now: Date.parse('2024-05-01T10:00:00Z'),
    validate: (text) => {
      if (text === 'newer-invalid') throw new Error('invalid');
    },
  });
  assert.equal(r.restored, true);
  assert.ok(r.restored);
  assert.equal(readFileSync(src, 'utf8'), 'old-good');
  assert.equal(r.replaced, true);
  assert.equal(r.loadPath, src);
  assert.deepEqual(r.skipped.map((s) => s.why), ['the copy does not match its own .sha256', 'invalid']);
  // The bad file and its sidecar are kept for analysis; the sidecar is rewritten to match.
  const q = readdirSync(join(d, 'quarantine')).sort();
  assert.deepEqual(q, ['2024-05-01T10-00-00-000Z-config.yaml', '2024-05-01T10-00-00-000Z-config.yaml.sha256']);
  assert.equal(readFileSync(join(d, 'quarantine', q[0]!), 'utf8'), 'truncat');
  assert.equal(checkSidecar(src, readFileSync(src)).state, 'match');
});

test('restoreConfig without a sidecar writes none; with no usable copy nothing changes', () => {
  const d = dir();
  const src = join(d, 'config.yaml');
  writeFileSync(src, 'bad');
  assert.deepEqual(restoreConfig({ dataDir: d, source: src, now: 0 }), { restored: false, skipped: [] });
  assert.equal(readFileSync(src, 'utf8'), 'bad');
  takeKnownGood({ dataDir: d, source: src, content: Buffer.from('good'), keep: 5 });
  const r = restoreConfig({ dataDir: d, source: src, now: 0 });
  assert.equal(r.restored, true);
  assert.equal(existsSync(`${src}.sha256`), false, 'the agent never invents a sidecar');
});

test('restoreConfig: a file it cannot write is left alone and the copy is loaded where it is', { skip: process.getuid?.() === 0 ? 'root can write anywhere' : false }, () => {
  const d = dir();
  const etc = join(d, 'etc');
  const src = join(etc, 'config.yaml');
  takeKnownGood({ dataDir: d, source: src, content: Buffer.from('good'), keep: 5 });
  mkdirSync(etc);
  writeFileSync(src, 'bad');
  // A read-only directory, like /etc under the unit's ProtectSystem=strict.
  chmodSync(etc, 0o555);
  try {
    const r = restoreConfig({ dataDir: d, source: src, now: 0 });
    assert.ok(r.restored);
    assert.equal(r.replaced, false);
    assert.equal(readFileSync(r.loadPath, 'utf8'), 'good');
    assert.equal(readFileSync(src, 'utf8'), 'bad');
    assert.equal(readdirSync(join(d, 'quarantine')).length, 1, 'the bad file is still copied to quarantine');
  } finally {
    chmodSync(etc, 0o755);
  }
});

test('candidateDataDirs: the override alone; else the broken file\'s dataDir, its directory, the default', () => {
  assert.deepEqual(candidateDataDirs(Buffer.from('dataDir: /x'), '/o'), ['/o']);
  assert.deepEqual(candidateDataDirs(Buffer.from('gatewayId: [\ndataDir: /srv/gw # here\n'), undefined), ['/srv/gw', '/var/lib/edge-agent']);
  assert.deepEqual(candidateDataDirs(Buffer.from('dataDir: "/a b"\n'), undefined, '/etc/x/config.yaml'), ['/a b', '/etc/x', '/var/lib/edge-agent']);
  assert.deepEqual(candidateDataDirs(undefined, undefined), ['/var/lib/edge-agent']);
});

test('loadConfigWithRestore: a good file loads as is and its bytes are kept for the known-good copy', () => {
  const d = dir();
  const src = join(d, 'config.yaml');
  writeFileSync(src, GOOD(d));
  const b = loadConfigWithRestore({ path: src, overrides: {}, env: {} });
  assert.equal(b.config.gatewayId, 'gw-1');
  assert.equal(b.restore, undefined);
  assert.equal(b.content?.toString(), GOOD(d));
  assert.deepEqual(listPending(d), []);
});

for (const [name, corrupt] of [
  ['truncated', (s: string) => s.slice(0, 20)],
  ['cut to nothing', () => ''],
  ['invalid YAML', (s: string) => `${s}mqtt: [\n`],
  ['invalid values', (s: string) => s.replace('mqtt://127.0.0.1:1883', 'http://nope')],
  ['wrong .sha256', (s: string) => s],
] as const) {
  test(`loadConfigWithRestore: ${name} -> the known-good copy, an incident pending`, () => {
    const d = dir();
    const src = join(d, 'config.yaml');
    const good = GOOD(d, 'outbox:\n  inflight: 7\n');
    takeKnownGood({ dataDir: d, source: src, content: Buffer.from(good), keep: 5 });
    writeFileSync(src, corrupt(good));
    if (name === 'wrong .sha256') writeFileSync(`${src}.sha256`, `${sha256Hex('another file')}  config.yaml\n`);
    const b = loadConfigWithRestore({ path: src, overrides: {}, env: {} });
    assert.equal(b.config.outbox.inflight, 7);
    assert.equal(readFileSync(src, 'utf8'), good);
    assert.equal(b.content?.toString(), good);
    const pending = listPending(d);
    assert.equal(pending.length, 1);
    assert.equal(pending[0]?.code, 'config-restored');
    assert.equal(pending[0]?.component, 'config');
    assert.match(pending[0]?.cause ?? '', name === 'wrong .sha256' ? /config-checksum-mismatch/ : name === 'invalid values' ? /config-invalid/ : /config-(syntax|invalid)/);
    assert.equal(readdirSync(join(d, 'quarantine')).some((n) => n.endsWith('-config.yaml')), true);
  });
}

test('loadConfigWithRestore: without a known-good copy the ConfigError stands (exit 78)', () => {
  const d = dir();
  const src = join(d, 'config.yaml');
  writeFileSync(src, 'gatewayId: [\n');
  assert.throws(
    () => loadConfigWithRestore({ path: src, overrides: { dataDir: d }, env: {} }),
    (err: unknown) => err instanceof ConfigError && err.code === 'config-syntax' && /no known-good copy/.test(err.message),
  );
  writeFileSync(src, GOOD(d));
  writeFileSync(`${src}.sha256`, '0'.repeat(64));
  assert.throws(
    () => loadConfigWithRestore({ path: src, overrides: { dataDir: d }, env: {} }),
    (err: unknown) => err instanceof ConfigError && /config-checksum-mismatch/.test(err.message),
  );
  // An empty file without any copy to restore still runs on defaults, as before.
  rmSync(`${src}.sha256`);
  writeFileSync(src, '');
  assert.equal(loadConfigWithRestore({ path: src, overrides: { dataDir: d }, env: {} }).config.dataDir, d);
});

test('pending incidents: appended atomically, flushed in order, kept when the sink fails', () => {
  const d = dir();
  addPending(d, { component: 'config', code: 'config-restored', severity: 'warning', cause: 'a', action: 'b', detail: 'a b' });
  addPending(d, { component: 'store', code: 'store-restored', severity: 'warning', cause: 'c', action: 'd', detail: 'c d' });
  const seen: PendingIncident[] = [];
  assert.throws(() =>
    flushPending(d, (inc) => {
      if (inc.component === 'store') throw new Error('store not ready');
      seen.push(inc);
    }),
  );
  assert.deepEqual(seen.map((i) => i.code), ['config-restored']);
  assert.deepEqual(listPending(d).map((i) => i.code), ['store-restored'], 'what was not handed over stays pending');
  assert.equal(flushPending(d, (inc) => void seen.push(inc)), 1);
  assert.equal(existsSync(pendingPath(d)), false);
  assert.equal(new Set(seen.map((i) => i.id)).size, 2);
  writeFileSync(pendingPath(d), '{torn');
  assert.deepEqual(listPending(d), [], 'a torn file does not stop the start');
});
