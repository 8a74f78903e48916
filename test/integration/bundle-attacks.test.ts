/**
 * Hostile archives: each is a validly signed manifest with an archive made by GNU tar (with -P
 * where it has to keep a dangerous name) or by hand-written tar headers, extracted into
 * box/slot. Each must be refused with its own code, and nothing may appear outside box/slot.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Header } from 'tar';
import { tempDir } from '../helpers/util.js';
import {
  gnuTar, handTar, headMembers, listPayload, makePayload, makePki, manifestJson, outcome, readFileBundle, stage, workWith, type Entry, type Pki,
} from '../fixtures/bundle-kit.js';

let root: string;
let pki: Pki;
let payload: string;
const ABS_TARGET = `/etc/edge-agent-test-${process.pid}-${Date.now()}`;

before(() => {
  root = tempDir('bundle-attacks');
  pki = makePki(join(root, 'pki'));
  payload = makePayload(join(root, 'src'));
});

after(() => rmSync(root, { recursive: true, force: true }));

interface Case {
  name: string;
  code: string;
  /** Makes the bundle in `work` (a copy of the payload) and returns its path. */
  make(work: string): string;
}

const sign = (work: string, files: Entry[] = listPayload(join(work, 'payload'))): void => stage(work, manifestJson(files), pki.signers.rsa);
const write = (work: string, data: Buffer): string => {
  writeFileSync(join(work, 'b.tar'), data);
  return join(work, 'b.tar');
};
const file = (work: string, rel: string): Buffer => readFileSync(join(work, 'payload', rel));

const cases: Case[] = [
  {
    name: 'a member named payload/../evil',
    code: 'unsafe-path',
    make: (w) => {
      sign(w);
      writeFileSync(join(w, 'evil'), 'x');
      return gnuTar(w, join(w, 'b.tar'), { flags: ['-P'], members: ['manifest.json', 'manifest.sig', 'signer.pem', 'payload', 'payload/../evil'] });
    },
  },
  {
    name: 'an absolute member name',
    code: 'unsafe-path',
    make: (w) => {
      sign(w);
      writeFileSync(join(w, 'evil'), 'x');
      return gnuTar(w, join(w, 'b.tar'), { flags: ['-P', `--transform=s,^evil$,${ABS_TARGET},`], members: ['manifest.json', 'manifest.sig', 'signer.pem', 'payload', 'evil'] });
    },
  },
  {
    name: 'a hard link (listed in the manifest as a file)',
    code: 'unsafe-member-type',
    make: (w) => {
      linkSync(join(w, 'payload', 'app', 'main.js'), join(w, 'payload', 'app', 'hard.js'));
      sign(w);
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a FIFO',
    code: 'unsafe-member-type',
    make: (w) => {
      sign(w);
      execFileSync('mkfifo', [join(w, 'payload', 'app', 'fifo')]);
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a character device (hand-written header)',
    code: 'unsafe-member-type',
    make: (w) => {
      sign(w);
      return write(w, handTar([...headMembers(w), { path: 'payload/app/main.js', data: file(w, 'app/main.js') }, { path: 'payload/null', type: 'CharacterDevice', devmaj: 1, devmin: 3 }]));
    },
  },
  {
    name: 'a file the manifest does not list',
    code: 'unlisted-member',
    make: (w) => {
      sign(w);
      writeFileSync(join(w, 'payload', 'app', 'extra.js'), 'evil()');
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'the same member twice',
    code: 'duplicate-member',
    make: (w) => {
      sign(w);
      // --hard-dereference: else GNU tar stores the second copy as a hard link to the first.
      return gnuTar(w, join(w, 'b.tar'), { flags: ['--hard-dereference'], members: ['manifest.json', 'manifest.sig', 'signer.pem', 'payload', 'payload/app/main.js'] });
    },
  },
  {
    name: 'a member whose size differs from the manifest',
    code: 'size-mismatch',
    make: (w) => {
      sign(w);
      writeFileSync(join(w, 'payload', 'app', 'main.js'), 'console.log("edge-agent"); evil();\n');
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a member whose content differs from the manifest (same size)',
    code: 'hash-mismatch',
    make: (w) => {
      sign(w);
      writeFileSync(join(w, 'payload', 'app', 'main.js'), 'console.log("evil!!!!!!");\n');
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a symlink the manifest does not list',
    code: 'symlink-invalid',
    make: (w) => {
      sign(w);
      symlinkSync('main.js', join(w, 'payload', 'app', 'alias.js'));
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a listed symlink that points outside in the archive',
    code: 'symlink-invalid',
    make: (w) => {
      sign(w);
      execFileSync('ln', ['-sfn', '/etc/passwd', join(w, 'payload', 'bin', 'main')]);
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a manifest that lists a symlink pointing outside the slot',
    code: 'symlink-invalid',
    make: (w) => {
      symlinkSync('../../../etc', join(w, 'payload', 'app', 'etc'));
      sign(w);
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a file written through a listed symlink',
    code: 'symlink-invalid',
    make: (w) => {
      sign(w, [...listPayload(join(w, 'payload')), { path: 'lib', type: 'symlink', target: 'app/lib' }]);
      const heads = headMembers(w);
      return write(w, handTar([...heads, { path: 'payload/lib', type: 'SymbolicLink', linkpath: 'app/lib' }, { path: 'payload/lib/evil.js', data: Buffer.from('evil()') }]));
    },
  },
  {
    name: 'manifest.sig before manifest.json',
    code: 'bundle-order',
    make: (w) => {
      sign(w);
      return gnuTar(w, join(w, 'b.tar'), { members: ['manifest.sig', 'manifest.json', 'signer.pem', 'payload'] });
    },
  },
  {
    name: 'the payload before signer.pem',
    code: 'bundle-order',
    make: (w) => {
      sign(w);
      return gnuTar(w, join(w, 'b.tar'), { members: ['manifest.json', 'manifest.sig', 'payload', 'signer.pem'] });
    },
  },
  {
    name: 'a listed file missing from the archive',
    code: 'missing-file',
    make: (w) => {
      sign(w, [...listPayload(join(w, 'payload')), { path: 'app/gone.js', sha256: 'a'.repeat(64), size: 1 }]);
      return gnuTar(w, join(w, 'b.tar'));
    },
  },
  {
    name: 'a bundle cut short in the payload',
    code: 'bundle-malformed',
    make: (w) => {
      sign(w);
      const f = gnuTar(w, join(w, 'b.tar'));
      truncateSync(f, 12_345);
      return f;
    },
  },
  {
    name: 'a gzip bundle cut short',
    code: 'bundle-malformed',
    make: (w) => {
      sign(w);
      const f = gnuTar(w, join(w, 'b.tgz'), { gzip: true });
      truncateSync(f, statSync(f).size - 100);
      return f;
    },
  },
  {
    name: 'a tar bomb: a header claiming 1 TiB for a listed file',
    code: 'size-mismatch',
    make: (w) => {
      sign(w);
      // The header alone (size in GNU base-256): the data it claims never comes and must not be awaited.
      const bomb = new Header({ path: 'payload/app/main.js', size: 2 ** 40, mode: 0o644, type: 'File', mtime: new Date(0) });
      bomb.encode();
      return write(w, Buffer.concat([handTar(headMembers(w)).subarray(0, -1024), bomb.block!]));
    },
  },
];

for (const c of cases) {
  test(`refused with ${c.code}: ${c.name}`, async () => {
    const base = join(root, c.name.replace(/[^a-z0-9]+/gi, '-'));
    const work = workWith(join(base, 'work'), payload);
    const bundle = c.make(work);
    const box = join(base, 'box');
    mkdirSync(box);
    const slot = join(box, 'slot');
    assert.equal(await outcome(readFileBundle(bundle, { trustPem: pki.ca.certPem, extractTo: slot })), c.code);
    assert.deepEqual(readdirSync(box).filter((n) => n !== 'slot'), [], 'something was written next to the slot');
    assert.equal(existsSync(ABS_TARGET), false);
    assert.equal(existsSync(join(slot, 'app', 'lib', 'evil.js')), false, 'a file was written through a symlink');
    // The same bundle without extraction (bundle verify) gives the same code.
    assert.equal(await outcome(readFileBundle(bundle, { trustPem: pki.ca.certPem })), c.code);
  });
}

