/**
 * The bundle download against a real local HTTP(S) server that breaks connections on purpose:
 * resumed with Range and If-Range, checked against size and sha256, bounded, over TLS with the
 * configured CA.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { download } from '../../ota/download.js';
import { OtaError } from '../../ota/errors.js';
import { createCa, issueCert } from '../../certs/devca.js';

const BODY = randomBytes(3 * 1024 * 1024 + 17);
const SHA = createHash('sha256').update(BODY).digest('hex');

interface Behaviour {
  /** Requests that are cut after this many bytes of body. */
  cutAfter: number[];
  ranges: boolean;
  etag: string;
  requests: { range: string | undefined; ifRange: string | undefined }[];
}

function handler(b: Behaviour) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url === '/missing') {
      res.writeHead(404).end();
      return;
    }
    b.requests.push({ range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRangeOk = !req.headers['if-range'] || req.headers['if-range'] === b.etag;
    if (m && b.ranges && ifRangeOk) {
      start = Number(m[1]);
      res.writeHead(206, { 'content-range': `bytes ${start}-${BODY.length - 1}/${BODY.length}`, 'content-length': BODY.length - start, etag: b.etag });
    } else {
      res.writeHead(200, { 'content-length': BODY.length, etag: b.etag });
    }
    const cut = b.cutAfter.shift();
    const end = cut === undefined ? BODY.length : Math.min(BODY.length, start + cut);
    res.write(BODY.subarray(start, end), () => {
      if (cut !== undefined) res.socket?.destroy();
      else res.end();
    });
  };
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

const fast = { initialMs: 10, maxMs: 50, factor: 2, jitter: 0 };

describe('download over HTTP', () => {
  const b: Behaviour = { cutAfter: [], ranges: true, etag: '"v1"', requests: [] };
  const server = createHttp(handler(b));
  let base = '';
  before(async () => {
    base = `http://127.0.0.1:${await listen(server)}`;
  });
  after(() => server.close());

  test('a connection broken twice is resumed with Range and If-Range; the bytes are exact', async () => {
    b.requests = [];
    b.cutAfter = [1_000_000, 700_000];
    const d = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, sha256: SHA, size: BODY.length, backoff: fast });
    const [got, res] = await Promise.all([drain(d.stream), d.done]);
    assert.ok(got.equals(BODY));
    assert.equal(res.sha256, SHA);
    assert.deepEqual(
      b.requests.map((r) => r.range),
      [undefined, 'bytes=1000000-', 'bytes=1700000-'],
    );
    assert.equal(b.requests[1]!.ifRange, '"v1"');
  });

  test('a server that ignores Range is handled by skipping what we already have', async () => {
    b.requests = [];
    b.ranges = false;
    b.cutAfter = [500_000];
    const d = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, sha256: SHA, backoff: fast });
    const got = await drain(d.stream);
    b.ranges = true;
    assert.ok(got.equals(BODY));
    assert.equal(b.requests.length, 2);
  });

  test('resume after a restart starts at the saved offset; a changed bundle is refused', async () => {
    b.requests = [];
    const d = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, startAt: 2_000_000, ifRange: '"v1"', backoff: fast });
    const got = await drain(d.stream);
    assert.ok(got.equals(BODY.subarray(2_000_000)));
    assert.equal(b.requests[0]!.range, 'bytes=2000000-');

    b.etag = '"v2"';
    const changed = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, startAt: 2_000_000, ifRange: '"v1"', retries: 0, backoff: fast });
    changed.stream.on('error', () => undefined).resume();
    await assert.rejects(changed.done, (e: unknown) => e instanceof OtaError && e.code === 'download-failed' && /changed/.test(e.message));
    b.etag = '"v1"';
  });

  test('limits and checks: too large, wrong sha256, wrong size, 404, retries exhausted', async () => {
    const expectCode = async (opts: Parameters<typeof download>[0], code: string): Promise<void> => {
      const d = download(opts);
      d.stream.on('error', () => undefined).resume();
      await assert.rejects(d.done, (e: unknown) => e instanceof OtaError && e.code === code, code);
    };
    await expectCode({ url: `${base}/b.tar`, maxBytes: 1 << 20 }, 'download-too-large');
    await expectCode({ url: `${base}/b.tar`, maxBytes: 10 << 20, sha256: 'ab'.repeat(32) }, 'download-checksum');
    await expectCode({ url: `${base}/b.tar`, maxBytes: 10 << 20, size: 12 }, 'download-checksum');
    await expectCode({ url: `${base}/missing`, maxBytes: 10 << 20 }, 'download-http-status');
    b.cutAfter = [100, 100, 100];
    await expectCode({ url: `${base}/b.tar`, maxBytes: 10 << 20, retries: 2, backoff: fast }, 'download-failed');
    b.cutAfter = [];
    await expectCode({ url: 'ftp://example/x', maxBytes: 1, retries: 0 }, 'download-failed');
  });
});

describe('the download ends for good', () => {
  const b: Behaviour = { cutAfter: [], ranges: true, etag: '"e"', requests: [] };
  let trickles = 0;
  const server = createHttp((req, res) => {
    if (req.url !== '/trickle') return handler(b)(req, res);
    trickles++;
    res.writeHead(200, { 'content-length': BODY.length, etag: '"e"' });
    const t = setInterval(() => res.write(BODY.subarray(0, 1)), 20);
    res.on('close', () => clearInterval(t));
  });
  let base = '';
  before(async () => {
    base = `http://127.0.0.1:${await listen(server)}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('when its consumer destroys the stream: no further request, no progress after done settles', async () => {
    b.requests = [];
    let progressAfter = 0;
    let settled = false;
    const d = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, backoff: fast, onProgress: () => void (settled && progressAfter++) });
    // The bundle reader refusing a member: it reads a little, then destroys its source.
    await new Promise((r) => d.stream.once('data', r));
    d.stream.destroy();
    await assert.rejects(d.done, (e: unknown) => e instanceof OtaError && e.code === 'download-failed');
    settled = true;
    await new Promise((r) => setTimeout(r, 300)); // several backoffs of `fast`
    assert.deepEqual(b.requests.map((r) => r.range), [undefined], 'resumed after the consumer was gone');
    assert.equal(progressAfter, 0);
  });

  test('a trickle below minBytesPerSecond over the window fails download-stalled and is not resumed', async () => {
    const d = download({ url: `${base}/trickle`, maxBytes: 10 << 20, backoff: fast, minBytesPerSecond: 1000, stallWindowMs: 300 });
    d.stream.on('error', () => undefined).resume();
    await assert.rejects(d.done, (e: unknown) => e instanceof OtaError && e.code === 'download-stalled');
    const n = trickles;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(trickles, n);
    assert.equal(n, 1);
  });
});

describe('download over HTTPS', () => {
  const ca = createCa({ commonName: 'dl test CA' });
  const cert = issueCert(ca, { commonName: 'localhost', kind: 'server' });
  const b: Behaviour = { cutAfter: [], ranges: true, etag: '"t"', requests: [] };
  const server = createHttps({ cert: cert.certPem, key: cert.keyPem }, handler(b));
  let base = '';
  before(async () => {
    base = `https://localhost:${await listen(server)}`;
  });
  after(() => server.close());

  test('with the configured CA it works; with another CA it fails', async () => {
    const ok = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, ca: Buffer.from(ca.certPem), sha256: SHA });
    assert.ok((await drain(ok.stream)).equals(BODY));
    const other = createCa({ commonName: 'other' });
    const bad = download({ url: `${base}/b.tar`, maxBytes: 10 << 20, ca: Buffer.from(other.certPem), retries: 0 });
    bad.stream.on('error', () => undefined).resume();
    await assert.rejects(bad.done, (e: unknown) => e instanceof OtaError && e.code === 'download-failed' && /certificate/i.test(e.message));
  });
});
