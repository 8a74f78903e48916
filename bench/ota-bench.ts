/**
 * Measurements 5 and 6, parent side: an update bundle installed by the real Updater in a child
 * process (ota-child.js install), against references measured in the same run on the same
 * bundle and the same server:
 *
 *   install time   vs `curl URL | tee >(sha256sum) | tar -x -C DIR` (download, hash, unpack)
 *   peak RSS       vs a child that only downloads the bundle with http.get and discards it
 *                  (the floor of Node plus an HTTP stream); at 512 MiB and at 2 GiB, whose
 *                  ratio shows whether memory grows with the bundle
 *
 * The bundles (random data, signed by a throw-away dev CA) are made once per run in a temp dir
 * and served by a node:http server in its own process (ota-child.js serve). Nothing drops the
 * page cache: one warm-up of each subject comes first, so both read a cached bundle; and `sync`
 * runs before every sample, so no sample pays for the writeback of the one before.
 *
 * Temp space: one bundle at a time, beside its payload or one installed copy (2x the largest
 * bundle); the whole dir goes at the end, also on failure or SIGINT/SIGTERM.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { createCa, issueCert } from '../certs/devca.js';
import { DEPLOYED_NODE_FLAGS, DIST, runJsonChild, spawnNode, type NodeChild } from './proc.js';
import { measurement, type Measurement } from './report.js';

const CHILD = join(DIST, 'bench', 'ota-child.js');
const MB = 1024 * 1024;
const execFileP = promisify(execFile);
/** The reference, as an operator would unpack a bundle by hand; URL and DIR are $1 and $2, not spliced in. */
const REFERENCE_SH = 'set -o pipefail; curl -sS --fail "$1" | tee >(sha256sum >/dev/null) | tar -x -C "$2"';

export interface OtaConfig {
  runs: number;
  /** The bundle of the install-time and first RSS measurement (512; 32 with --quick). */
  bundleMiB: number;
  /** The second RSS measurement's bundle; 0 skips it (--quick). */
  largeMiB: number;
  cpuProfDir: string | undefined;
}

type Bundle = { mib: number; bytes: number; sha256: string; url: string; path: string };
/** What ota-child.js reports of its memory (see there). */
type Mem = Record<'vmHwmBytes' | 'peakRssAnonBytes' | 'peakHeapUsedBytes' | 'peakArrayBuffersBytes' | 'rssFileEndBytes', number>;
type InstallSample = Mem & { installMs: number; files: number; progressCalls: number; steps: string[]; lastPercent: number };
type FetchSample = Mem & { fetchMs: number };

/** `reference`: milliseconds of the curl | tee | tar reference; empty when not measured. */
type OtaRun = { bundle: Bundle; install: InstallSample[]; reference: number[]; fetch: FetchSample[] };
export type OtaResults = { main: OtaRun; large: OtaRun | undefined };

type Log = (s: string) => void;

/** The server's port, from the first line it prints. */
function serverPort(s: NodeChild): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ota-child serve printed no port in 10 s\n${s.tail()}`)), 10_000);
    const check = (): void => {
      const m = /"port":(\d+)/.exec(s.stdout());
      if (!m) return;
      clearTimeout(timer);
      s.proc.stdout?.off('data', check);
      resolve(Number(m[1]));
    };
    s.proc.stdout?.on('data', check);
    void s.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ota-child serve exited with ${code}\n${s.tail()}`));
    });
  });
}

class OtaBench {
  constructor(
    private readonly cfg: OtaConfig,
    private readonly base: string,
    private readonly port: number,
    private readonly log: Log,
  ) {}

  async bundle(mib: number): Promise<Bundle> {
    const name = `bundle-${mib}m.tar`;
    const path = join(this.base, 'bundles', name);
    const args = ['bundle', '--mib', String(mib), '--out', path, '--dir', join(this.base, 'payload'), '--key', join(this.base, 'signer.key'), '--cert', join(this.base, 'signer.pem')];
    const t0 = performance.now();
    const r = await runJsonChild<{ bytes: number; sha256: string; files: number }>(CHILD, args);
    this.log(`ota: made ${name} (${(r.bytes / MB).toFixed(0)} MiB, ${r.files} files) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { mib, bytes: r.bytes, sha256: r.sha256, url: `http://127.0.0.1:${this.port}/${name}`, path };
  }

  async install(b: Bundle): Promise<InstallSample> {
    await execFileP('sync');
    const root = mkdtempSync(join(this.base, 'root-'));
    const prof = this.cfg.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', this.cfg.cpuProfDir] : [];
    try {
      const args = ['install', '--root', root, '--trust', join(this.base, 'ca.pem'), '--url', b.url, '--sha256', b.sha256, '--size', String(b.bytes)];
      const r = await runJsonChild<InstallSample>(CHILD, args, [...DEPLOYED_NODE_FLAGS, ...prof]);
      if (r.lastPercent !== 100 || !['download', 'verify', 'install'].every((s) => r.steps.includes(s))) {
        this.log(`ota: WARNING: progress ended at ${r.lastPercent}% after steps ${r.steps.join(',')}`);
      }
      return r;
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  async reference(b: Bundle): Promise<number> {
    await execFileP('sync');
    const dir = mkdtempSync(join(this.base, 'tar-'));
    try {
      const t0 = performance.now();
      await execFileP('bash', ['-c', REFERENCE_SH, 'ota-reference', b.url, dir]);
      const ms = performance.now() - t0;
      if (!existsSync(join(dir, 'manifest.json'))) throw new Error(`the reference unpacked no manifest.json into ${dir}`);
      return ms;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** `runs` samples of the install (and its references), alternating which goes first. */
  async measure(b: Bundle, withReference: boolean): Promise<OtaRun> {
    const out: OtaRun = { bundle: b, install: [], reference: [], fetch: [] };
    const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    if (withReference) {
      this.log(`ota ${b.mib} MiB: warm-up (discarded)`);
      await this.reference(b);
      await this.install(b);
    }
    for (let i = 0; i < this.cfg.runs; i++) {
      const refFirst = withReference && i % 2 === 0;
      if (refFirst) out.reference.push(await this.reference(b));
      const inst = await this.install(b);
      if (withReference && !refFirst) out.reference.push(await this.reference(b));
      const f = await runJsonChild<FetchSample>(CHILD, ['fetch', '--url', b.url, '--size', String(b.bytes)], DEPLOYED_NODE_FLAGS);
      out.install.push(inst);
      out.fetch.push(f);
      this.log(
        `ota ${b.mib} MiB run ${i + 1}/${this.cfg.runs}: install ${s(inst.installMs)}${withReference ? ` (curl|tar ${s(out.reference.at(-1)!)})` : ''}, ` +
          `peak RSS ${(inst.vmHwmBytes / MB).toFixed(1)} MB (http.get ${(f.vmHwmBytes / MB).toFixed(1)} MB, ${s(f.fetchMs)})`,
      );
    }
    return out;
  }
}

/** The dev CA (trust anchor) and a code-signing certificate it issued, as files under `base`. */
function writeSigner(base: string): void {
  const ca = createCa({ commonName: 'bench dev CA' });
  const signer = issueCert(ca, { commonName: 'bench release signer', kind: 'codeSigning' });
  writeFileSync(join(base, 'ca.pem'), ca.certPem);
  writeFileSync(join(base, 'signer.pem'), signer.certPem);
  writeFileSync(join(base, 'signer.key'), signer.keyPem, { mode: 0o600 });
}

export async function otaPhase(cfg: OtaConfig, log: Log): Promise<OtaResults> {
  const base = mkdtempSync(join(tmpdir(), 'bench-ota-'));
  const cleanup = (): void => rmSync(base, { recursive: true, force: true });
  const onSignal = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let server: NodeChild | undefined;
  try {
    writeSigner(base);
    mkdirSync(join(base, 'bundles'));
    server = spawnNode(CHILD, ['serve', '--dir', join(base, 'bundles')]);
    const bench = new OtaBench(cfg, base, await serverPort(server), log);
    const mainBundle = await bench.bundle(cfg.bundleMiB);
    const main = await bench.measure(mainBundle, true);
    rmSync(mainBundle.path, { force: true }); // room for the large one
    let large: OtaRun | undefined;
    if (cfg.largeMiB > 0) {
      const b = await bench.bundle(cfg.largeMiB);
      large = await bench.measure(b, false);
      rmSync(b.path, { force: true });
    }
    return { main, large };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server?.stop();
    cleanup();
  }
}

const mb = (xs: number[]): number[] => xs.map((x) => x / MB);
const size = (mib: number): string => (mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`);

function rss(id: string, r: OtaRun): Measurement {
  return measurement({
    id,
    title: `OTA install peak RSS (VmHWM), ${size(r.bundle.mib)} bundle`,
    unit: 'MB',
    samples: mb(r.install.map((x) => x.vmHwmBytes)),
    reference: { name: 'node http.get of the bundle, discarded', samples: mb(r.fetch.map((x) => x.vmHwmBytes)) },
    goal: { op: '<=', value: 120 },
    details: {
      peakRssAnonMB: mb(r.install.map((x) => x.peakRssAnonBytes)),
      peakArrayBuffersMB: mb(r.install.map((x) => x.peakArrayBuffersBytes)),
      peakHeapUsedMB: mb(r.install.map((x) => x.peakHeapUsedBytes)),
      rssFileEndMB: mb(r.install.map((x) => x.rssFileEndBytes)),
      installS: r.install.map((x) => x.installMs / 1000),
      referencePeakRssAnonMB: mb(r.fetch.map((x) => x.peakRssAnonBytes)),
    },
  });
}

export function otaMeasurements(o: OtaResults): Measurement[] {
  const { main, large } = o;
  const mibps = (ms: number): number => main.bundle.bytes / MB / (ms / 1000);
  const out = [
    measurement({
      id: 'ota-install-time',
      title: `OTA install, ${size(main.bundle.mib)} bundle (Updater.install)`,
      unit: 's',
      samples: main.install.map((x) => x.installMs / 1000),
      reference: { name: 'curl | tee >(sha256sum) | tar -x', samples: main.reference.map((ms) => ms / 1000) },
      goal: { op: '<=', value: 1.25, of: 'ratio' },
      details: {
        installMiBps: main.install.map((x) => mibps(x.installMs)),
        referenceMiBps: main.reference.map(mibps),
        downloadOnlyS: main.fetch.map((x) => x.fetchMs / 1000),
        files: main.install.map((x) => x.files),
        progressCalls: main.install.map((x) => x.progressCalls),
      },
    }),
    rss('ota-peak-rss-512m', main),
  ];
  if (large) {
    out.push(rss('ota-peak-rss-2g', large));
    out.push(
      measurement({
        id: 'ota-peak-rss-2g-vs-512m',
        title: `OTA peak RSS, ${size(large.bundle.mib)} vs ${size(main.bundle.mib)} bundle`,
        unit: 'MB',
        samples: mb(large.install.map((x) => x.vmHwmBytes)),
        reference: { name: `the ${size(main.bundle.mib)} install above`, samples: mb(main.install.map((x) => x.vmHwmBytes)) },
        goal: { op: '<=', value: 1.15, of: 'ratio' },
      }),
    );
  }
  return out;
}
