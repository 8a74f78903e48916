import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OtaError, type OtaCode } from '../../ota/errors.js';
import { entryMode, parseManifest, totalPayloadBytes, type Manifest } from '../../ota/manifest.js';

const HEX = 'ab'.repeat(32);

/** The example of CONTRACT.md section 4, with a real-looking hash. */
function example(): Record<string, unknown> {
  return {
    format: 1,
    product: 'edge-agent',
    version: '1.4.0',
    compatible: ['wms-gateway'],
    requires: '>=1.0.0 <2.0.0',
    securityVersion: 3,
    created: '2026-11-22T10:00:00Z',
    files: [
      { path: 'app/main.js', sha256: HEX, size: 1234, mode: '0644' },
      { path: 'app/node_modules/.bin/x', type: 'symlink', target: '../x/cli.js' },
    ],
  };
}

function bytes(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc));
}

function withFiles(files: unknown[]): Buffer {
  return bytes({ ...example(), files });
}

function file(path: string, size = 1): Record<string, unknown> {
  return { path, sha256: HEX, size };
}

function link(path: string, target: string): Record<string, unknown> {
  return { path, type: 'symlink', target };
}

function rejects(input: Buffer, code: OtaCode, message?: RegExp): void {
  assert.throws(
    () => parseManifest(input),
    (err) => {
      assert.ok(err instanceof OtaError, String(err));
      assert.equal(err.code, code, err.message);
      if (message) assert.match(err.message, message);
      return true;
    },
  );
}

describe('parseManifest', () => {
  test('the contract example parses, with defaults and normalised entries', () => {
    const m = parseManifest(bytes(example()));
    assert.equal(m.version, '1.4.0');
    assert.equal(m.securityVersion, 3);
    assert.deepEqual(m.files[0], { path: 'app/main.js', type: 'file', sha256: HEX, size: 1234, mode: '0644' });
    assert.deepEqual(m.files[1], { path: 'app/node_modules/.bin/x', type: 'symlink', target: '../x/cli.js' });
    const minimal = example();
    delete minimal.requires;
    delete minimal.securityVersion;
    const m2 = parseManifest(bytes({ ...minimal, files: [{ ...file('a'), type: 'file', sha256: HEX.toUpperCase() }, { path: 'data', type: 'dir' }] }));
    assert.equal(m2.securityVersion, 0);
    assert.equal(m2.requires, undefined);
    assert.equal(m2.files[0]?.type === 'file' && m2.files[0].sha256, HEX);
  });

  test('unknown top-level keys are ignored; unknown keys in an entry are not', () => {
    assert.equal(parseManifest(bytes({ ...example(), releaseNotes: 'x' })).version, '1.4.0');
    rejects(withFiles([{ ...file('a'), target: 'b' }]), 'manifest-invalid', /files\[0\]: Unrecognized key: "target"/);
  });

  test('not JSON, not UTF-8, not an object: manifest-invalid', () => {
    rejects(Buffer.from('{"format":1,'), 'manifest-invalid', /not valid JSON/);
    rejects(Buffer.from([0x7b, 0xff, 0x7d]), 'manifest-invalid', /UTF-8/);
    rejects(bytes([example()]), 'manifest-invalid', /top level/);
  });

  const fieldCases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['format 2', { format: 2 }, /format: must be 1/],
    ['format as a string', { format: '1' }, /format/],
    ['a version that is not semver', { version: '1.4' }, /version: must be a semantic version/],
    ['a v-prefixed version', { version: 'v1.4.0' }, /version/],
    ['an empty compatible list', { compatible: [] }, /compatible: must name at least one/],
    ['compatible as a string', { compatible: 'wms-gateway' }, /compatible/],
    ['a requires that is no range', { requires: 'soon' }, /requires: must be a semver range/],
    ['a negative securityVersion', { securityVersion: -1 }, /securityVersion/],
    ['a fractional securityVersion', { securityVersion: 1.5 }, /securityVersion/],
    ['created not ISO-8601', { created: 'yesterday' }, /created/],
    ['no files', { files: [] }, /files: must list at least one/],
    ['a short sha256', { files: [{ ...file('a'), sha256: 'abc' }] }, /files\[0\]\.sha256: must be 64 hex digits/],
    ['a negative size', { files: [{ ...file('a'), size: -1 }] }, /files\[0\]\.size/],
    ['a fractional size', { files: [{ ...file('a'), size: 1.5 }] }, /files\[0\]\.size/],
    ['a setuid mode', { files: [{ ...file('a'), mode: '4755' }] }, /files\[0\]\.mode/],
    ['a numeric mode', { files: [{ ...file('a'), mode: 420 }] }, /files\[0\]\.mode/],
    ['an unknown entry type', { files: [{ path: 'a', type: 'fifo' }] }, /files\[0\]\.type/],
    ['a symlink without target', { files: [{ path: 'a', type: 'symlink' }] }, /files\[0\]\.target/],
  ];
  for (const [what, patch, message] of fieldCases) {
    test(`${what}: manifest-invalid naming the field`, () => rejects(bytes({ ...example(), ...patch }), 'manifest-invalid', message));
  }

  test('every problem is listed at once', () => {
    assert.throws(
      () => parseManifest(bytes({ ...example(), version: 'x', created: 'y' })),
      (err) => err instanceof OtaError && /version/.test(err.message) && /created/.test(err.message),
    );
  });

  const attacks: Array<[string, RegExp]> = [
    ['../etc/passwd', /'\.\.' segment/],
    ['app/../../etc/passwd', /'\.\.' segment/],
    ['app/..', /'\.\.' segment/],
    ['/etc/passwd', /absolute/],
    ['app//main.js', /empty segment/],
    ['app/', /empty segment/],
    ['', /empty/],
    ['./app/main.js', /'\.' segment/],
    ['app/./main.js', /'\.' segment/],
    ['app\\..\\..\\evil', /backslash/],
    ['app/ma\0in.js', /NUL/],
    [`a/${'x'.repeat(4096)}`, /longer than 4096/],
    ['x'.repeat(256), /segment longer than 255/],
  ];
  for (const [path, message] of attacks) {
    test(`path ${JSON.stringify(path.slice(0, 40))}: unsafe-path`, () => rejects(withFiles([file('ok'), file(path)]), 'unsafe-path', message));
  }

  test('a path under a listed file or symlink: unsafe-path (writes never go through a link)', () => {
    rejects(withFiles([link('app', 'real'), file('app/main.js')]), 'unsafe-path', /under "app", which is a symlink/);
    rejects(withFiles([file('app'), file('app/main.js')]), 'unsafe-path', /which is a file/);
    assert.equal(parseManifest(withFiles([{ path: 'app', type: 'dir' }, file('app/main.js')])).files.length, 2);
  });

  test('the same path twice: duplicate-member', () => {
    rejects(withFiles([file('a'), file('b'), file('a', 2)]), 'duplicate-member', /files\[2\]\.path "a"/);
    rejects(withFiles([file('a'), link('a', 'b')]), 'duplicate-member');
  });

  test('symlinks that stay inside the slot are accepted', () => {
    const m = parseManifest(withFiles([
      file('app/x/cli.js'),
      link('app/node_modules/.bin/x', '../x/cli.js'),
      link('root', '.'),
      link('app/up', '..'),
      link('app/dangling', 'not/listed'),
      link('app/via', '../root/app/x/cli.js'),
      link('deep/a/b/c', '../../../app/x/./cli.js'),
      // followed as the kernel does: p is a/b/c, so p/../../x is a/x (lexically it would be ../x)
      link('p', 'a/b/c'),
      link('q', 'p/../../x'),
    ]));
    assert.equal(m.files.length, 9);
  });

  const escapes: Array<[string, unknown[], RegExp]> = [
    ['../../etc', [link('app/l', '../../etc')], /leaves the slot/],
    ['.. from the top', [link('l', '..')], /leaves the slot/],
    ['an absolute target', [link('app/l', '/etc/passwd')], /absolute target/],
    ['an empty target', [link('app/l', '')], /empty target/],
    ['a NUL in the target', [link('app/l', 'a\0b')], /NUL/],
    ['climbing down and up past the root', [link('a/l', 'b/../../../x')], /leaves the slot/],
    // lexically "x", but d is the slot root, so physically ../x
    ['through another symlink then ..', [link('d', '.'), link('sub/e', '../d/../x')], /leaves the slot/],
    ['through a symlink to a deeper dir', [link('d', 'a/b'), link('e', 'd/../../../x')], /leaves the slot/],
    ['a loop', [link('a', 'b'), link('b', 'a')], /loops/],
    ['a self-reference', [link('a', 'a/x')], /loops/],
  ];
  for (const [what, files, message] of escapes) {
    test(`symlink with ${what}: symlink-invalid`, () => rejects(withFiles(files), 'symlink-invalid', message));
  }
});

describe('manifest helpers', () => {
  test('totalPayloadBytes sums the regular files only', () => {
    const m: Manifest = parseManifest(withFiles([file('a', 10), file('b', 32), link('c', 'a'), { path: 'd', type: 'dir' }, file('e', 0)]));
    assert.equal(totalPayloadBytes(m), 42);
  });

  test('entryMode reads octal modes and defaults by type', () => {
    const m = parseManifest(withFiles([{ ...file('a'), mode: '0755' }, { ...file('b'), mode: '600' }, file('c'), { path: 'd', type: 'dir' }, link('e', 'a')]));
    assert.deepEqual(m.files.map(entryMode), [0o755, 0o600, 0o644, 0o755, undefined]);
  });
});
