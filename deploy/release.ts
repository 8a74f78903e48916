/**
 * `npm run release -- --arch x64|arm64 [...]`: a self-contained release (docs/releases.md), the
 * directory a slot holds and a bundle carries:
 *
 *   package.json  dist/ (no tests, benches, source maps)  node_modules/ (production only)
 *   runtime/bin/node  runtime/LICENSE   (Node.js from the npm registry's node-linux-ARCH package)
 *   .edge-agent-bundle/   (the signed head of its bundle, when one is made: a delta's base)
 *
 * Decisions:
 *  - The runtime comes from `npm pack node-linux-ARCH@RUNTIME_VERSION` (the npm registry is the
 *    one network a build here has), cached in --cache, and its tarball's sha512 must equal the
 *    pinned integrity below: a registry answer that differs fails the build.
 *  - RUNTIME_VERSION is the system's Node.js 20 (same NODE_MODULE_VERSION, 115), so the native
 *    modules already built in node_modules (better-sqlite3, unix-dgram) load in the release as
 *    they are; the build checks it by loading them on the release's own runtime.
 *  - Native modules cannot be built here for another architecture (no cross toolchain, and their
 *    prebuilt binaries come from GitHub, which is not reachable): --arch other than this
 *    machine's stops with that explanation instead of shipping x64 binaries under an arm64 name.
 *  - node_modules: the production closure as `npm ls --omit=dev` sees it, without what no
 *    runtime loads (type declarations, TypeScript sources, source maps, Markdown, test and doc
 *    folders, a native module's sources and build intermediates, dot files, the packages' own
 *    command-line scripts named in their "bin"): fewer files, a smaller manifest.
 *  - Binaries are stripped (`strip --strip-unneeded`: the runtime and the native modules, as
 *    Debian ships them) and native modules are 0644 (loaded with dlopen, never executed), in the
 *    release itself, so the release directory, its bundle and the Debian package hold the same
 *    bytes (a delta made from one applies to a slot installed from another).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';

export const RUNTIME_VERSION = '20.20.2';
/** dist.integrity of node-linux-{arch}@{version} on registry.npmjs.org. */
export const RUNTIME_INTEGRITY: Record<string, Partial<Record<'x64' | 'arm64', string>>> = {
  '20.20.2': {
    x64: 'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==',
    arm64: 'sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==',
  },
  // The previous patch release, for tests of a runtime-only update.
  '20.20.1': { x64: 'sha512-klYhw1nNADJHIuuz6ESTzAR1S3TTNKdmvWnHR2Ox5OVAzDNT+R7QG5YRbSkaDJD3PqoDd+JJUZt4hzDsYY0SAA==' },
};
export type Arch = 'x64' | 'arm64';
const DIST_SKIP = new Set(['test', 'bench', 'demo']);
const SKIP_FILE = /(\.d\.[cm]?ts|\.[cm]?ts|\.map|\.md|\.markdown)$/i;
const SKIP_DIR = new Set(['test', 'tests', '__tests__', 'docs', 'example', 'examples', '.github', 'benchmark', 'benchmarks']);

export interface ReleaseOptions {
  repo: string;
  arch: Arch;
  out: string;
  cache: string;
  version?: string;
  runtimeVersion?: string;
}

/** Copies `from` to `to` keeping only what a runtime loads (see the top of this file). */
function copyPackage(from: string, to: string): void {
  const native = existsSync(join(from, 'binding.gyp'));
  const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as { bin?: string | Record<string, string> };
  const bins = new Set((typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {})).map((b) => join(from, b)));
  cpSync(from, to, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => {
      const rel = relative(from, src);
      if (rel === '') return true;
      const parts = rel.split(sep);
      if ((parts.at(-1) ?? '').startsWith('.') || bins.has(src)) return false;
      if (parts.includes('node_modules')) return false; // nested packages are listed on their own
      const st = statSync(src);
      if (st.isDirectory()) {
        if (SKIP_DIR.has(parts.at(-1) ?? '')) return false;
        if (native && (parts[0] === 'src' || parts[0] === 'deps')) return false;
        if (native && parts[0] === 'build') return parts.length === 1 || (parts.length === 2 && parts[1] === 'Release');
        return true;
      }
      if (native && parts[0] === 'build') return parts.length === 3 && parts[2]!.endsWith('.node') && !parts[2]!.startsWith('test_');
      if (native && /^(binding\.gyp|Makefile)$/.test(rel)) return false;
      return !SKIP_FILE.test(rel);
    },
  });
}

/** The production packages' directories, relative to the repo (npm ls reads node_modules only). */
function productionPackages(repo: string): string[] {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repo, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && resolve(l) !== resolve(repo))
    .map((l) => relative(repo, l))
    .filter((l) => l.startsWith(`node_modules${sep}`))
    .sort();
}

/** node-linux-ARCH@version's tarball, from the cache or `npm pack`, checked against the pin. */
export function runtimeTarball(arch: Arch, version: string, cache: string): string {
  const pinned = RUNTIME_INTEGRITY[version]?.[arch];
  if (!pinned) throw new Error(`no pinned integrity for node-linux-${arch}@${version}; add it to RUNTIME_INTEGRITY (npm view node-linux-${arch}@${version} dist.integrity)`);
  mkdirSync(cache, { recursive: true });
  const file = join(cache, `node-linux-${arch}-${version}.tgz`);
  if (!existsSync(file)) execFileSync('npm', ['pack', `node-linux-${arch}@${version}`, '--pack-destination', cache, '--silent'], { cwd: cache, stdio: ['ignore', 'ignore', 'inherit'] });
  const got = `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
  if (got !== pinned) {
    rmSync(file, { force: true });
    throw new Error(`node-linux-${arch}@${version}: the tarball's integrity is ${got}, the pinned one ${pinned}; not used`);
  }
  return file;
}

/** Why this machine cannot build a release for `arch`, or undefined. */
export function archProblem(arch: Arch): string | undefined {
  if (arch === process.arch) return undefined;
  return (
    `cannot build an ${arch} release on this ${process.arch} machine: the native modules better-sqlite3 and unix-dgram ` +
    `are compiled here for linux-${process.arch} (node_modules/*/build/Release/*.node); building them for ${arch} needs an ${arch} ` +
    `toolchain or their prebuilt binaries, which come from GitHub (not reachable here: only the npm registry is). ` +
    `Nothing was built. To build the ${process.arch} release here: npm run release -- --arch ${process.arch}. ` +
    `For ${arch}, run the same command on an ${arch} machine (or an emulated ${arch} container): the runtime (node-linux-${arch}) is pinned already.`
  );
}

/** Builds the release directory; returns its path. */
export function buildRelease(o: ReleaseOptions): { dir: string; version: string; runtimeVersion: string } {
  const problem = archProblem(o.arch);
  if (problem) throw new Error(problem);
  const pkg = JSON.parse(readFileSync(join(o.repo, 'package.json'), 'utf8')) as Record<string, unknown>;
  const version = o.version ?? String(pkg.version);
  const runtimeVersion = o.runtimeVersion ?? RUNTIME_VERSION;
  const dir = join(o.out, `edge-agent-${version}-linux-${o.arch}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, version, devDependencies: undefined, scripts: undefined }, null, 2) + '\n');
  for (const e of readdirSync(join(o.repo, 'dist'))) {
    if (DIST_SKIP.has(e)) continue;
    cpSync(join(o.repo, 'dist', e), join(dir, 'dist', e), { recursive: true, filter: (src) => !src.endsWith('.map') });
  }
  for (const p of productionPackages(o.repo)) copyPackage(join(o.repo, p), join(dir, p));
  const tgz = runtimeTarball(o.arch, runtimeVersion, o.cache);
  const unpack = join(o.out, `.runtime-${process.pid}`);
  rmSync(unpack, { recursive: true, force: true });
  mkdirSync(unpack, { recursive: true });
  try {
    execFileSync('tar', ['-xzf', tgz, '-C', unpack, 'package/bin/node', 'package/LICENSE']);
    mkdirSync(join(dir, 'runtime', 'bin'), { recursive: true });
    cpSync(join(unpack, 'package', 'bin', 'node'), join(dir, 'runtime', 'bin', 'node'));
    cpSync(join(unpack, 'package', 'LICENSE'), join(dir, 'runtime', 'LICENSE'));
  } finally {
    rmSync(unpack, { recursive: true, force: true });
  }
  strip(dir);
  smokeTest(dir, runtimeVersion);
  return { dir, version, runtimeVersion };
}

/** Strips the runtime and the native modules; native modules become 0644. */
function strip(dir: string): void {
  const natives: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.node')) natives.push(p);
    }
  };
  walk(join(dir, 'node_modules'));
  for (const n of natives) chmodSync(n, 0o644);
  execFileSync('strip', ['--strip-unneeded', join(dir, 'runtime', 'bin', 'node'), ...natives]);
}

/** The release's own runtime runs its CLI and loads its native modules (the ABI matches). */
function smokeTest(dir: string, runtimeVersion: string): void {
  const node = join(dir, 'runtime', 'bin', 'node');
  const env = { PATH: '/nonexistent' }; // no other Node.js to fall back on
  const v = execFileSync(node, ['--version'], { env, encoding: 'utf8' }).trim();
  if (v !== `v${runtimeVersion}`) throw new Error(`${node} says ${v}, expected v${runtimeVersion}`);
  const probe = "const D=require('better-sqlite3');new D(':memory:').prepare('select 1').get();require('unix-dgram');";
  try {
    execFileSync(node, ['-e', probe], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const detail = (err as { stderr?: Buffer }).stderr?.toString() ?? String(err);
    throw new Error(`the native modules do not load on the release's runtime v${runtimeVersion} (built for another ABI?): ${detail.slice(0, 800)}`, { cause: err });
  }
  execFileSync(node, [join(dir, 'dist', 'agent', 'cli', 'index.js'), '--help'], { env, stdio: 'ignore' });
}

const USAGE = `npm run release -- --arch x64|arm64 [--out DIR] [--version V] [--runtime-version V]
                   [--key KEY --cert PEM [--compatible C] [--gzip] [--delta-from OLD]]
  Builds OUT/edge-agent-V-linux-ARCH/ (default OUT: build/) and, with --key and --cert, its
  bundle OUT/edge-agent-V-linux-ARCH.tar[.gz] (and a delta OUT/...-from-BASE.tar[.gz] with
  --delta-from: the base release's bundle or directory). The release directory keeps its
  bundle's signed head (.edge-agent-bundle/), so later deltas can be made against it.`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: 'string' },
      out: { type: 'string' },
      cache: { type: 'string' },
      version: { type: 'string' },
      'runtime-version': { type: 'string' },
      key: { type: 'string' },
      cert: { type: 'string' },
      compatible: { type: 'string' },
      gzip: { type: 'boolean' },
      'delta-from': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const arch = values.arch ?? process.arch;
  if (arch !== 'x64' && arch !== 'arm64') {
    process.stderr.write(`release: --arch must be x64 or arm64\n${USAGE}\n`);
    return 64;
  }
  const repo = resolve(new URL('../../', import.meta.url).pathname);
  const out = resolve(values.out ?? join(repo, 'build'));
  try {
    const r = buildRelease({ repo, arch, out, cache: resolve(values.cache ?? join(out, 'cache')), ...(values.version ? { version: values.version } : {}), ...(values['runtime-version'] ? { runtimeVersion: values['runtime-version'] } : {}) });
    process.stdout.write(`release ${r.version} (linux-${arch}, Node.js ${r.runtimeVersion}): ${r.dir}\n`);
    if (values.key === undefined || values.cert === undefined) {
      process.stdout.write('no --key/--cert: no bundle made\n');
      return 0;
    }
    const { makeReleaseBundles } = await import('./release-bundle.js');
    for (const line of await makeReleaseBundles({ dir: r.dir, version: r.version, out, keyPath: values.key, certPath: values.cert, compatible: values.compatible ?? 'wms-gateway', gzip: values.gzip === true, deltaFrom: values['delta-from'] })) {
      process.stdout.write(line + '\n');
    }
    return 0;
  } catch (err) {
    process.stderr.write(`release: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && basename(process.argv[1]) === 'release.js') {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`release: ${String(err)}\n`);
    process.exit(70);
  });
}
