/**
 * The OTA benchmark's processes, started by ota-bench.ts; each prints one JSON object on its last
 * stdout line.
 *
 *   bundle   a payload of random data in --dir (320 files of mixed sizes, half the bytes, and four
 *            large ones, the other half), packed with createBundle (plain tar, signed) into --out,
 *            then the payload is deleted; written in 4 MiB chunks, never held in memory
 *   serve    a node:http file server for the bundles (Content-Length, ETag, single Range):
 *            prints its port, runs until SIGTERM or until its parent is gone
 *   install  the measurement: a fresh ROOT (initSlots, 1.0.0 in slot A), then Updater.install
 *            from the server, timed from the call until it resolves, then VmHWM
 *   fetch    the RSS reference: the same bundle with a plain http.get, every byte discarded
 *
 * Memory: VmHWM (proc(5)) is the kernel's own peak of the whole process; a 100 ms sampler adds
 * the peaks of RssAnon and of Node's view (heap, ArrayBuffers), to tell which part grew.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, createReadStream, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { silentLogger } from '../lib/log.js';
import { createBundle } from '../ota/bundle-writer.js';
import { loadSlots, initSlots } from '../ota/slots.js';
import { Updater, type UpdateContext, type UpdateStep } from '../ota/updater.js';

const DEVICE_CLASS = 'bench-gateway';
const MiB = 1024 * 1024;

/** A small seeded PRNG (mulberry32): the same sizes in every run; the bytes come from randomFillSync. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Relative path -> size: 320 files in 8 directories, log-uniform over 1:4096, then 4 large ones. */
function payloadLayout(totalBytes: number, seed = 1): Map<string, number> {
  const rand = prng(seed);
  const small = 320;
  const smallBytes = Math.floor(totalBytes / 2);
  const weights = Array.from({ length: small }, () => 2 ** (rand() * 12));
  const sum = weights.reduce((a, b) => a + b, 0);
  const out = new Map<string, number>();
  let used = 0;
  weights.forEach((w, i) => {
    const size = i === small - 1 ? smallBytes - used : Math.floor((w / sum) * smallBytes);
    out.set(`lib/m${i % 8}/part-${String(i).padStart(3, '0')}.bin`, size);
    used += size;
  });
  const large = 4;
  const each = Math.floor((totalBytes - smallBytes) / large);
  for (let j = 0; j < large; j++) out.set(`images/large-${j}.img`, j === large - 1 ? totalBytes - smallBytes - each * (large - 1) : each);
  return out;
}

function writeRandomFile(path: string, size: number, buf: Buffer): void {
  const fd = openSync(path, 'wx', 0o644);
  try {
    for (let left = size; left > 0; ) {
      const n = Math.min(left, buf.length);
      randomFillSync(buf, 0, n);
      for (let off = 0; off < n; ) off += writeSync(fd, buf, off, n - off);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

async function bundleMode(a: Args): Promise<Record<string, unknown>> {
  const inDir = a.dir;
  const buf = Buffer.allocUnsafe(4 * MiB);
  const layout = payloadLayout(a.mib * MiB);
  try {
    for (const [rel, size] of layout) {
      const path = join(inDir, ...rel.split('/'));
      mkdirSync(join(path, '..'), { recursive: true });
      writeRandomFile(path, size, buf);
    }
    const t0 = performance.now();
    const { bytes } = await createBundle({ inDir, version: '1.1.0', compatible: [DEVICE_CLASS], keyPem: readFileSync(a.key, 'utf8'), certPem: readFileSync(a.cert, 'utf8'), out: a.out });
    return { bytes, sha256: await sha256File(a.out), files: layout.size, createMs: performance.now() - t0 };
  } finally {
    rmSync(inDir, { recursive: true, force: true });
  }
}

/** GET /NAME from `dir`; `Range: bytes=A-` or `bytes=A-B` (RFC 9110 14.2) gets a 206, If-Range honoured. */
function serveFile(dir: string, req: IncomingMessage, res: ServerResponse): void {
  const name = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^\/+/, '');
  const path = join(dir, name);
  let size: number;
  let etag: string;
  try {
    if (name === '' || name.includes('..')) throw new Error('bad name');
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
    etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
  } catch {
    res.writeHead(404).end();
    return;
  }
  let start = 0;
  let end = size - 1;
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const ifRange = req.headers['if-range'];
  if (m && (ifRange === undefined || ifRange === etag)) {
    start = Number(m[1]);
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start > end) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, etag, 'accept-ranges': 'bytes' });
  } else {
    res.writeHead(200, { 'content-length': size, etag, 'accept-ranges': 'bytes', 'content-type': 'application/x-tar' });
  }
  const stream = createReadStream(path, { start, end, highWaterMark: 256 * 1024 });
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

async function serveMode(a: Args): Promise<never> {
  const server = createServer((req, res) => serveFile(a.dir, req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  const parent = process.ppid;
  // Orphaned (the bench was SIGKILLed): exit rather than serve forever.
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1000).unref();
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
  return new Promise<never>(() => undefined);
}

/** proc(5) /proc/self/status fields, in bytes. */
function status(): { vmHwm: number; vmRss: number; rssAnon: number; rssFile: number } {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { vmHwm: kb('VmHWM'), vmRss: kb('VmRSS'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile') };
}

function peakSampler(): () => Record<string, number> {
  const peak = { rssAnon: 0, heapUsed: 0, arrayBuffers: 0 };
  const sample = (): void => {
    const m = process.memoryUsage();
    peak.rssAnon = Math.max(peak.rssAnon, status().rssAnon);
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
  };
  const timer = setInterval(sample, 100).unref();
  return () => {
    clearInterval(timer);
    sample();
    const end = status();
    return { vmHwmBytes: end.vmHwm, rssFileEndBytes: end.rssFile, peakRssAnonBytes: peak.rssAnon, peakHeapUsedBytes: peak.heapUsed, peakArrayBuffersBytes: peak.arrayBuffers };
  };
}

async function installMode(a: Args): Promise<Record<string, unknown>> {
  initSlots(a.root, { version: '1.0.0' });
  const updater = new Updater({
    root: a.root,
    runningSlot: 'A',
    runningVersion: '1.0.0',
    deviceClass: DEVICE_CLASS,
    trustPath: a.trust,
    maxBundleBytes: 8 * 1024 * MiB,
    download: { idleTimeoutMs: 60_000, retries: 0 },
    backup: () => undefined,
    logger: silentLogger(),
  });
  const progress = { calls: 0, steps: [] as UpdateStep[], lastPercent: -1 };
  const ctx: UpdateContext = {
    signal: new AbortController().signal,
    progress(step, percent) {
      progress.calls++;
      if (progress.steps.at(-1) !== step) progress.steps.push(step);
      if (percent !== undefined) progress.lastPercent = percent;
    },
    setCancellable: () => undefined,
    save: () => undefined,
  };
  const peaks = peakSampler();
  const t0 = performance.now();
  const { manifest } = await updater.install('bench', { url: a.url, sha256: a.sha256, size: a.size }, ctx);
  const installMs = performance.now() - t0;
  const mem = peaks();
  const slot = loadSlots(a.root).slots.B;
  if (slot.state !== 'installing' || slot.verified !== true) throw new Error(`slot B is ${JSON.stringify(slot)} after install`);
  return { installMs, files: manifest.files.length, progressCalls: progress.calls, steps: progress.steps, lastPercent: progress.lastPercent, ...mem };
}

async function fetchMode(a: Args): Promise<Record<string, unknown>> {
  const peaks = peakSampler();
  const t0 = performance.now();
  const bytes = await new Promise<number>((resolve, reject) => {
    get(a.url, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => void (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    }).on('error', reject);
  });
  const fetchMs = performance.now() - t0;
  if (bytes !== a.size) throw new Error(`fetched ${bytes} bytes, expected ${a.size}`);
  return { fetchMs, bytes, ...peaks() };
}

const KEYS = ['out', 'key', 'cert', 'dir', 'root', 'trust', 'url', 'sha256'] as const;
type Args = Record<(typeof KEYS)[number] | 'mode', string> & { mib: number; size: number };

function args(): Args {
  const { values: v, positionals } = parseArgs({
    allowPositionals: true,
    options: Object.fromEntries([...KEYS, 'mib', 'size'].map((k) => [k, { type: 'string' as const }])),
  });
  const strings = Object.fromEntries(KEYS.map((k) => [k, String(v[k] ?? '')])) as Record<(typeof KEYS)[number], string>;
  return { ...strings, mode: positionals[0] ?? '', mib: Number(v.mib ?? 0), size: Number(v.size ?? 0) };
}

const a = args();
const modes: Record<string, (a: Args) => Promise<Record<string, unknown>>> = { bundle: bundleMode, serve: serveMode, install: installMode, fetch: fetchMode };
const run = modes[a.mode];
if (run === undefined) throw new Error(`usage: ota-child.js bundle|serve|install|fetch [options] (got ${JSON.stringify(a.mode)})`);
run(a).then(
  (r) => void process.stdout.write(`${JSON.stringify(r)}\n`),
  (err: unknown) => {
    process.stderr.write(`ota-child ${a.mode}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
