/**
 * The strict tar reader (ota/tar-reader.ts) on archives written by hand, byte for byte, so each
 * test controls exactly the field it breaks. GNU tar interoperability is covered by
 * test/integration/bundle.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Header } from 'tar';
import { parseNumber, parsePax, readTar, type TarHeader } from '../../ota/tar-reader.js';
import { OtaError } from '../../ota/errors.js';

interface H {
  name: string;
  type?: string;
  size?: number;
  linkname?: string;
  gnu?: boolean;
  prefix?: string;
  sizeField?: Buffer;
}

/** One header block, POSIX ustar (`ustar\0` `00`, checksum `DDDDDD \0`) or GNU (`DDDDDD\0 `). */
function header(h: H): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, 'utf8');
  b.write('0000644\0', 100);
  b.write('0000000\0', 108);
  b.write('0000000\0', 116);
  (h.sizeField ?? Buffer.from(`${(h.size ?? 0).toString(8).padStart(11, '0')}\0`)).copy(b, 124);
  b.write('15050604060\0', 136);
  b.write(h.type ?? '0', 156, 1, 'latin1');
  b.write(h.linkname ?? '', 157, 100, 'utf8');
  b.write(h.gnu ? 'ustar  \0' : 'ustar\x0000', 257, 8, 'latin1');
  if (h.prefix) b.write(h.prefix, 345, 155, 'utf8');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(h.gnu ? `${sum.toString(8).padStart(6, '0')}\0 ` : `${sum.toString(8).padStart(6, '0')} \0`, 148, 8, 'latin1');
  return b;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);
const entry = (h: H, data = Buffer.alloc(0)): Buffer => Buffer.concat([header({ ...h, size: h.size ?? data.length }), data, pad(data.length)]);
const END = Buffer.alloc(1024);
const paxRecord = (k: string, v: string): string => {
  const base = Buffer.byteLength(`${k}=${v}`) + 2;
  let len = base + String(base).length;
  if (String(len).length > String(base).length) len++;
  return `${len} ${k}=${v}\n`;
};

async function* chunks(buf: Buffer, size = 100): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function readAll(buf: Buffer, size?: number): Promise<{ header: TarHeader; data: string }[]> {
  const out = [];
  for await (const e of readTar(chunks(buf, size))) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(Buffer.from(c));
    out.push({ header: e.header, data: Buffer.concat(parts).toString() });
  }
  return out;
}

async function rejects(buf: Buffer, pattern: RegExp): Promise<void> {
  await assert.rejects(readAll(buf), (err: unknown) => {
    assert.ok(err instanceof OtaError, String(err));
    assert.equal(err.code, 'bundle-malformed');
    assert.match(err.message, pattern);
    return true;
  });
}

const basic = (): Buffer =>
  Buffer.concat([entry({ name: 'a.txt' }, Buffer.from('hello')), entry({ name: 'dir/', type: '5' }), entry({ name: 'ln', type: '2', linkname: 'a.txt' }), END]);

test('reads files, directories and symlinks with their data, in any chunking', async () => {
  for (const size of [1, 7, 100, 512, 100_000]) {
    const got = await readAll(basic(), size);
    assert.deepEqual(
      got.map((e) => [e.header.path, e.header.type, e.header.size, e.header.linkpath, e.data]),
      [['a.txt', 'file', 5, '', 'hello'], ['dir/', 'directory', 0, '', ''], ['ln', 'symlink', 0, 'a.txt', '']],
    );
  }
});

test('reads what node-tar and the GNU header layout write: ustar prefix, GNU magic, mode', async () => {
  const h = new Header({ path: `${'p'.repeat(120)}/file`, mode: 0o755, size: 2, type: 'File', mtime: new Date(0) });
  h.encode();
  const gnu = entry({ name: 'g', gnu: true }, Buffer.from('x'));
  const got = await readAll(Buffer.concat([h.block!, Buffer.from('hi'), pad(2), gnu, END]));
  assert.equal(got[0]!.header.path, `${'p'.repeat(120)}/file`);
  assert.equal(got[0]!.header.mode, 0o755);
  assert.equal(got[1]!.header.path, 'g');
  const prefixed = await readAll(Buffer.concat([entry({ name: 'f', prefix: 'pre/fix' }, Buffer.from('y')), END]));
  assert.equal(prefixed[0]!.header.path, 'pre/fix/f');
});

test('pax x and g headers set path, linkpath and size; GNU L and K set long names', async () => {
  const long = `payload/${'d'.repeat(150)}/${'f'.repeat(120)}`;
  const pax = Buffer.from(paxRecord('path', long) + paxRecord('mtime', `${parseInt('15050604060', 8)}.5`));
  const gl = Buffer.from('g'.repeat(130) + '\0');
  const kl = Buffer.from('t'.repeat(110) + '\0');
  const archive = Buffer.concat([
    entry({ name: 'PaxHeader', type: 'x' }, pax),
    entry({ name: 'short' }, Buffer.from('pax data')),
    entry({ name: '././@LongLink', type: 'L', gnu: true }, gl),
    entry({ name: '././@LongLink', type: 'K', gnu: true }, kl),
    entry({ name: 'cut', type: '2', gnu: true }),
    entry({ name: 'G', type: 'g' }, Buffer.from(paxRecord('linkpath', 'glob'))),
    entry({ name: 'l2', type: '2' }),
    END,
  ]);
  const got = await readAll(archive);
  assert.deepEqual(
    got.map((e) => [e.header.path, e.header.linkpath, e.data]),
    [[long, '', 'pax data'], ['g'.repeat(130), 't'.repeat(110), ''], ['l2', 'glob', '']],
  );
  const sized = Buffer.concat([entry({ name: 'P', type: 'x' }, Buffer.from(paxRecord('size', '3'))), header({ name: 'f', size: 0 }), Buffer.from('abc'), pad(3), END]);
  assert.equal((await readAll(sized))[0]!.data, 'abc');
});

test('a pax mtime must agree with the header mtime to the second', async () => {
  const seconds = parseInt('15050604060', 8);
  const withMtime = (v: string): Buffer => Buffer.concat([entry({ name: 'P', type: 'x' }, Buffer.from(paxRecord('mtime', v))), entry({ name: 'f' }, Buffer.from('z')), END]);
  assert.equal((await readAll(withMtime(`${seconds}.25`)))[0]!.data, 'z');
  await rejects(withMtime(String(seconds + 1)), /pax mtime disagrees/);
});

test('a header checksum that does not match, or whose field is not in a known form, is rejected', async () => {
  const bad = basic();
  bad[10] = 0x41; // inside the first name, after its NUL
  await rejects(bad, /checksum does not match/);
  for (const field of ['0000000\0', '00000  \0', '000000  ', '00000 \0\0']) {
    const b = basic();
    b.write(field, 148, 8, 'latin1');
    await rejects(b, /checksum/);
  }
});

test('every single-bit flip in a small archive is rejected or changes what is read', async () => {
  const good = basic();
  const want = JSON.stringify(await readAll(good, 4096));
  let rejected = 0;
  for (let i = 0; i < good.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const b = Buffer.from(good);
      b[i] = b[i]! ^ (1 << bit);
      try {
        const got = JSON.stringify(await readAll(b, 4096));
        assert.notEqual(got, want, `a flip of bit ${bit} at offset ${i} went unnoticed`);
      } catch (err) {
        if (!(err instanceof OtaError)) throw err;
        rejected++;
      }
    }
  }
  // Only flips inside the file data ('hello', 40 bits) read back as other content.
  assert.equal(rejected, good.length * 8 - 40);
});

test('non-zero padding after data, and anything but zeros after the end blocks, are rejected', async () => {
  const b = basic();
  b[512 + 5] = 1; // padding right after "hello"
  await rejects(b, /padding/);
  await rejects(Buffer.concat([basic(), Buffer.from([0, 0, 1])]), /after the end/);
  assert.equal((await readAll(Buffer.concat([basic(), Buffer.alloc(10240)]))).length, 3);
});

test('truncation anywhere is rejected: in a header, in data, in padding, before or between the end blocks', async () => {
  const full = basic();
  for (const cut of [0, 100, 512 + 3, 512 + 100, full.length - 1024, full.length - 600, full.length - 512, full.length - 1]) {
    await rejects(full.subarray(0, cut), /truncated|ends early/);
  }
});

test('numeric fields must be octal; GNU base-256 is read; negative or huge sizes are refused', async () => {
  await rejects(Buffer.concat([header({ name: 'x', sizeField: Buffer.from('0000000009\0\0') }), END]), /size field/);
  assert.equal(parseNumber(Buffer.from('  0755 \0'), 'mode'), 0o755);
  assert.equal(parseNumber(Buffer.alloc(8), 'uid'), 0);
  const b256 = Buffer.alloc(12);
  b256[0] = 0x80;
  b256.writeUIntBE(2 ** 40, 6, 6);
  assert.equal(parseNumber(b256, 'size'), 2 ** 40);
  assert.throws(() => parseNumber(Buffer.alloc(12, 0xff), 'size'), /out of range/);
  b256.fill(0x7f, 1);
  assert.throws(() => parseNumber(b256, 'size'), /out of range/);
  assert.throws(() => parseNumber(Buffer.from('12a45678'), 'mode'), /octal/);
});

test('pax records are parsed strictly; unknown keys are refused', () => {
  assert.deepEqual([...parsePax(Buffer.from(paxRecord('path', 'a=b') + paxRecord('uid', '0')))], [['path', 'a=b'], ['uid', '0']]);
  for (const bad of ['8 path=a\n', '12 path=abc\n\n', '0 x=\n', '10 path=ab', ' 9 path=a\n', paxRecord('SCHILY.xattr.x', 'y'), paxRecord('size', '-1'), paxRecord('mtime', 'x')]) {
    assert.throws(() => parsePax(Buffer.from(bad)), (err: unknown) => err instanceof OtaError && err.code === 'bundle-malformed', JSON.stringify(bad));
  }
});

test('extended headers: an oversized one, a dangling one and a directory with data are refused', async () => {
  await rejects(Buffer.concat([entry({ name: 'L', type: 'L', gnu: true }, Buffer.alloc(70_000, 0x61)), END]), /over the limit/);
  await rejects(Buffer.concat([entry({ name: 'L', type: 'L', gnu: true }, Buffer.from('a\0')), END]), /zero block/);
  await rejects(Buffer.concat([entry({ name: 'L', type: 'L', gnu: true }, Buffer.from('a\0b\0')), entry({ name: 'x' }), END]), /long name/);
  await rejects(Buffer.concat([entry({ name: 'd/', type: '5' }, Buffer.from('data')), END]), /with data/);
});

test('the input is pulled on demand, unread bodies are skipped, and an early stop closes the input', async () => {
  const big = Buffer.concat([entry({ name: 'big' }, Buffer.alloc(1024 * 1024, 0x61)), entry({ name: 'small' }, Buffer.from('s')), END]);
  let pulled = 0;
  let closed = false;
  async function* source(): AsyncGenerator<Buffer> {
    try {
      for (let i = 0; i < big.length; i += 4096) {
        pulled += 4096;
        yield big.subarray(i, i + 4096);
      }
    } finally {
      closed = true;
    }
  }
  const it = readTar(source());
  const first = await it.next();
  assert.equal(first.done, false);
  assert.ok(pulled <= 8192, `pulled ${pulled} bytes before any body was read`);
  const second = await it.next(); // skips the 1 MiB body without it being consumed
  assert.equal(second.done === true ? undefined : second.value.header.path, 'small');
  await it.return();
  assert.equal(closed, true);
});
