/**
 * Resuming a bundle read at a checkpoint, as the updater does after a restart: the second read
 * starts at the checkpoint's offset of the same file and ends with the same tree as one read
 * from the start; a gzip bundle offers no checkpoints (its stream cannot be entered midway).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBundle } from '../../ota/bundle-writer.js';
import { readBundle, type Checkpoint } from '../../ota/bundle-reader.js';
import { OtaError } from '../../ota/errors.js';
import { createCa, issueCert } from '../../certs/devca.js';
import { tempDir } from '../helpers/util.js';

const work = tempDir('resume-');
const ca = createCa({ commonName: 'resume CA' });
const signer = issueCert(ca, { commonName: 'resume signer', kind: 'codeSigning' });

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out[r] = createHash('sha256').update(readFileSync(join(dir, r))).digest('hex');
    }
  };
  walk('');
  return out;
}

async function bundle(gzip: boolean): Promise<{ path: string; src: string }> {
  const src = join(work, `src-${gzip}`);
  mkdirSync(join(src, 'a', 'b'), { recursive: true });
  for (let i = 0; i < 12; i++) writeFileSync(join(src, i % 2 ? 'a' : join('a', 'b'), `f${i}`), randomBytes(100_000 + i));
  const path = join(work, `b-${gzip}.tar`);
  await createBundle({ inDir: src, version: '2.0.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: path, gzip });
  return { path, src };
}

test('a read cut at a checkpoint resumes from its offset and ends with the whole tree', async () => {
  const { path, src } = await bundle(false);
  const out = join(work, 'out');
  const cps: Checkpoint[] = [];
  const ac = new AbortController();
  await assert.rejects(
    readBundle(createReadStream(path), {
      trustPem: ca.certPem,
      extractTo: out,
      signal: ac.signal,
      onCheckpoint: (_offset, take) => {
        cps.push(take());
        if (cps.length === 8) ac.abort(new Error('power cut'));
      },
    }),
  );
  const cp = cps.at(-1)!;
  assert.ok(cp.seen.length >= 5 && cp.offset > 0 && cp.offset < statSync(path).size, JSON.stringify({ offset: cp.offset, seen: cp.seen.length }));
  // What was written after the checkpoint goes (the updater's prepareResume does this).
  for (const f of Object.keys(tree(out))) if (!cp.seen.includes(f)) rmSync(join(out, f));
  const res = await readBundle(createReadStream(path, { start: cp.offset }), { trustPem: ca.certPem, extractTo: out, resume: cp });
  assert.equal(res.files, 12);
  assert.deepEqual(tree(out), tree(src));
});

test('a resumed read still checks everything: a wrong offset or a foreign manifest is refused', async () => {
  const { path } = await bundle(false);
  const cps: Checkpoint[] = [];
  await readBundle(createReadStream(path), { trustPem: ca.certPem, onCheckpoint: (_o, take) => cps.push(take()) });
  const cp = cps[4]!;
  await assert.rejects(readBundle(createReadStream(path, { start: cp.offset + 512 }), { trustPem: ca.certPem, resume: cp }), (e: unknown) => e instanceof OtaError);
  const other = createCa({ commonName: 'other' });
  await assert.rejects(readBundle(createReadStream(path, { start: cp.offset }), { trustPem: other.certPem, resume: cp }), (e: unknown) => e instanceof OtaError && e.code === 'signer-untrusted');
  const forged = { ...cp, manifestBytes: Buffer.from(cp.manifestBytes.toString().replace('2.0.0', '2.0.1')) };
  await assert.rejects(readBundle(createReadStream(path, { start: cp.offset }), { trustPem: ca.certPem, resume: forged }), (e: unknown) => e instanceof OtaError && e.code === 'signature-invalid');
});

test('a gzip bundle offers no checkpoint', async () => {
  const { path } = await bundle(true);
  let n = 0;
  await readBundle(createReadStream(path), { trustPem: ca.certPem, onCheckpoint: () => n++ });
  assert.equal(n, 0);
});
