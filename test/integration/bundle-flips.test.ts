/**
 * Strictness: every single-bit flip anywhere in a valid bundle is refused (seeded random offsets
 * in a GNU tar bundle and a GNU tar -z bundle, plus the bytes lenient readers ignore: padding,
 * end-of-archive blocks, record padding, gzip header fields). And bombs: 1 GiB of zeros behind a
 * valid archive, gzip-compressed (made streaming), is refused after a bounded amount of work.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { tempDir } from '../helpers/util.js';
import { readBundle } from '../../ota/bundle-reader.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { gnuTar, listPayload, makePayload, makePki, manifestJson, outcome, prng, readFileBundle, stage, workWith, type Pki } from '../fixtures/bundle-kit.js';

let root: string;
let pki: Pki;
let plain: Buffer;
let gzipped: Buffer;

before(() => {
  root = tempDir('bundle-flips');
  pki = makePki(join(root, 'pki'));
  const work = workWith(join(root, 'work'), makePayload(join(root, 'src')));
  stage(work, manifestJson(listPayload(join(work, 'payload'))), pki.signers.ec);
  plain = readFileSync(gnuTar(work, join(work, 'b.tar')));
  gzipped = readFileSync(gnuTar(work, join(work, 'b.tgz'), { gzip: true }));
});

after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
async function attempt(bytes: Buffer, extract = true): Promise<string> {
  const slot = join(root, 'slots', String(n++));
  try {
    return await outcome(readBundle(Readable.from([bytes]), { trustPem: pki.ca.certPem, ...(extract ? { extractTo: slot } : {}) }));
  } finally {
    rmSync(slot, { recursive: true, force: true });
  }
}

function flip(buf: Buffer, offset: number, bit: number): Buffer {
  const b = Buffer.from(buf);
  b[offset] = b[offset]! ^ (1 << bit);
  return b;
}

/** Which part of a tar archive an offset is in: header, data, padding, end blocks, record padding. */
function regions(tar: Buffer): (offset: number) => string {
  const marks: [number, string][] = [];
  let off = 0;
  while (tar.subarray(off, off + 512).some((x) => x !== 0)) {
    const size = parseInt(tar.toString('latin1', off + 124, off + 136).replace(/\0.*$/, '').trim() || '0', 8);
    marks.push([off, 'header'], [off + 512, 'data'], [off + 512 + size, 'padding']);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  marks.push([off, 'end blocks'], [off + 1024, 'record padding']);
  return (o) => marks.filter(([at]) => at <= o).at(-1)![1];
}

test('the unmodified bundles are accepted', async () => {
  assert.equal(await attempt(plain), 'ok');
  assert.equal(await attempt(gzipped), 'ok');
});

test('200 random single-bit flips of a plain GNU tar bundle are all refused', async (t) => {
  const rnd = prng(20261122);
  const where = regions(plain);
  const codes: Record<string, number> = {};
  const hit: Record<string, number> = {};
  for (let i = 0; i < 200; i++) {
    const offset = Math.floor(rnd() * plain.length);
    const bit = Math.floor(rnd() * 8);
    const code = await attempt(flip(plain, offset, bit));
    assert.notEqual(code, 'ok', `a flip of bit ${bit} at offset ${offset} (${where(offset)}) was accepted`);
    codes[code] = (codes[code] ?? 0) + 1;
    hit[where(offset)] = (hit[where(offset)] ?? 0) + 1;
  }
  t.diagnostic(`codes: ${JSON.stringify(codes)}`);
  t.diagnostic(`regions: ${JSON.stringify(hit)}`);
  assert.ok(!Object.keys(codes).some((c) => c.startsWith('uncoded')), JSON.stringify(codes));
});

test('50 random single-bit flips of a GNU tar -z bundle are all refused', async (t) => {
  const rnd = prng(4242);
  const codes: Record<string, number> = {};
  for (let i = 0; i < 50; i++) {
    const offset = Math.floor(rnd() * gzipped.length);
    const bit = Math.floor(rnd() * 8);
    const code = await attempt(flip(gzipped, offset, bit));
    assert.notEqual(code, 'ok', `a flip of bit ${bit} at offset ${offset} of ${gzipped.length} was accepted`);
    codes[code] = (codes[code] ?? 0) + 1;
  }
  t.diagnostic(`codes: ${JSON.stringify(codes)}`);
  assert.ok(!Object.keys(codes).some((c) => c.startsWith('uncoded')), JSON.stringify(codes));
});

test('flips where lenient readers look away are refused: padding, end blocks, record padding, checksum field', async () => {
  const where = regions(plain);
  const first = (name: string): number => [...Array(plain.length).keys()].find((o) => where(o) === name)!;
  const manifestSize = parseInt(plain.toString('latin1', 124, 135), 8);
  assert.equal(where(512 + manifestSize), 'padding');
  for (const offset of [512 + manifestSize, first('end blocks'), first('end blocks') + 700, first('record padding'), plain.length - 1]) {
    for (const bit of [0, 7]) assert.equal(await attempt(flip(plain, offset, bit)), 'bundle-malformed', `offset ${offset} (${where(offset)}) bit ${bit}`);
  }
  assert.equal(plain[154], 0); // GNU tar writes the checksum as six digits, NUL, space
  assert.equal(await attempt(flip(plain, 154, 5)), 'bundle-malformed'); // NUL -> space: same number
});

test('flips in the gzip header fields no CRC covers (FTEXT, MTIME, XFL, OS) and in the trailer are refused', async () => {
  const spots: [number, number][] = [[3, 0], [4, 0], [7, 7], [8, 1], [9, 0], [9, 3], [gzipped.length - 8, 0], [gzipped.length - 1, 7]];
  for (const [offset, bit] of spots) assert.equal(await attempt(flip(gzipped, offset, bit)), 'bundle-malformed', `offset ${offset} bit ${bit}`);
});

test('a gzip bomb (a valid bundle, then 1 GiB of zeros) is refused as too-large after a bounded read', async () => {
  const bomb = join(root, 'bomb.tgz');
  const zeros = Buffer.alloc(1024 * 1024);
  async function* content(): AsyncGenerator<Buffer> {
    yield plain;
    for (let i = 0; i < 1024; i++) yield zeros;
  }
  await pipeline(Readable.from(content()), createGzip(), createWriteStream(bomb));
  const size = statSync(bomb).size;
  let read = 0;
  const rssBefore = process.memoryUsage().rss;
  const code = await outcome(readFileBundle(bomb, { trustPem: pki.ca.certPem, extractTo: join(root, 'bomb-slot'), onProgress: (b) => (read = b) }));
  assert.equal(code, 'too-large');
  assert.ok(read < size / 4, `read ${read} of ${size} compressed bytes before refusing`);
  assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024, 'memory grew with the bomb');
});

test('256 MiB of zeros, gzip-compressed, are refused before any manifest, after a bounded read', async () => {
  mkdirSync(join(root, 'z'), { recursive: true });
  const file = join(root, 'z', 'zeros.gz');
  const zeros = Buffer.alloc(1024 * 1024);
  await pipeline(Readable.from((function* () { for (let i = 0; i < 256; i++) yield zeros; })()), createGzip(), createWriteStream(file));
  const bytes = readFileSync(file);
  const chunks = Array.from({ length: Math.ceil(bytes.length / 1024) }, (_, i) => bytes.subarray(i * 1024, (i + 1) * 1024));
  let read = 0;
  assert.equal(await outcome(readBundle(Readable.from(chunks), { trustPem: pki.ca.certPem, onProgress: (b) => (read = b) })), 'too-large');
  // Input is pulled ahead only as far as gunzip's 16 KiB write buffer: a bound, whatever the size.
  assert.ok(read < 64 * 1024 && read < bytes.length / 4, `read ${read} of ${bytes.length}`);
});

test('bundle create: pax headers (non-ASCII and long names) are read, and flips in them are refused', async () => {
  const src = join(root, 'pax-src');
  const long = `${'d'.repeat(200)}/${'f'.repeat(100)}`; // over ustar's 255: a pax path
  mkdirSync(join(src, 'd'.repeat(200)), { recursive: true });
  writeFileSync(join(src, long), 'long');
  writeFileSync(join(src, 'café.txt'), 'non-ascii');
  const out = join(root, 'pax.tar');
  const signer = pki.signers.ec;
  await createBundle({ inDir: src, version: '1.0.0', compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out });
  const bytes = readFileSync(out);
  assert.equal(await attempt(bytes), 'ok');
  // The data of each pax header ('x'), found by walking the headers.
  const pax: number[][] = [];
  for (let off = 0; bytes.subarray(off, off + 512).some((x) => x !== 0); ) {
    const size = parseInt(bytes.toString('latin1', off + 124, off + 136).replace(/\0.*$/, '').trim() || '0', 8);
    if (bytes[off + 156] === 0x78) pax.push(Array.from({ length: size }, (_, i) => off + 512 + i));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  assert.equal(pax.length, 3, 'pax headers for café.txt, the long directory and the long file');
  const [cafe, ...longOnes] = pax;
  const rnd = prng(99);
  const longSample = Array.from({ length: 300 }, () => longOnes.flat()[Math.floor(rnd() * longOnes.flat().length)]!);
  for (const offset of cafe!) {
    for (let bit = 0; bit < 8; bit++) assert.notEqual(await attempt(flip(bytes, offset, bit), false), 'ok', `offset ${offset} bit ${bit}`);
  }
  for (const offset of longSample) assert.notEqual(await attempt(flip(bytes, offset, Math.floor(rnd() * 8)), false), 'ok', `offset ${offset}`);
});
