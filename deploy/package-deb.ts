/**
 * `npm run package [-- --release DIR] [--version V] [--out DIR]`: the Debian package
 * edge-agent_{version}_{arch}.deb, made with dpkg-deb only (docs/releases.md, deploy/debian/README).
 *
 * Layout (what dpkg owns):
 *   /usr/lib/edge-agent/release/     the self-contained release (deploy/release.ts)
 *   /usr/bin/edge-agent              a wrapper: the active slot's CLI on the guard's runtime
 *   /lib/systemd/system/*.service    the units of deploy/systemd/: the boot guard on its runtime; the
 *                                    bridge through ROOT/guard/bin/slot-exec on its slot's runtime
 *   /usr/share/polkit-1/rules.d/50-edge-agent.rules
 *   /etc/edge-agent/config.yaml      conffile: deploy/config.example.yaml without gatewayId (the
 *                                    agent then takes the host name)
 *   /usr/share/doc/edge-agent/       copyright, changelog.gz, help/*.txt (every --help)
 *   /usr/share/lintian/overrides/edge-agent   (deploy/debian/lintian-overrides, explained in README)
 * The A/B install root /opt/edge-agent is not dpkg's: postinst makes it with `edge-agent install`
 * (slot A) and, on upgrade, installs into the inactive slot through the guard (--upgrade).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { buildRelease, type Arch } from './release.js';

const GUARD_NODE = '/opt/edge-agent/guard/runtime/bin/node';
const DEB_ARCH: Record<Arch, string> = { x64: 'amd64', arm64: 'arm64' };

export interface PackageOptions {
  repo: string;
  release: string;
  version: string;
  arch: Arch;
  out: string;
}

function write(path: string, text: string | Buffer, mode = 0o644): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, mode);
}

function files(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) files(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The `--help` of the CLI and of each command, as the release's own runtime prints them. */
function helpTexts(release: string): Record<string, string> {
  const node = join(release, 'runtime', 'bin', 'node');
  const cli = join(release, 'dist', 'agent', 'cli', 'index.js');
  const run = (args: string[]): string => execFileSync(node, [cli, ...args], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  const top = run(['--help']);
  const out: Record<string, string> = { 'edge-agent': top };
  const commands = [...top.matchAll(/^ {2}([a-z][a-z-]*) {2,}/gm)].map((m) => m[1]!);
  for (const c of commands) out[`edge-agent-${c}`] = run([c, '--help']);
  return out;
}

function control(o: PackageOptions, installedKiB: number): string {
  return [
    'Package: edge-agent',
    `Version: ${o.version}`,
    `Architecture: ${DEB_ARCH[o.arch]}`,
    'Maintainer: Edge Agent Maintainers <edge-agent@example.com>',
    `Installed-Size: ${installedKiB}`,
    'Depends: passwd, libc6 (>= 2.28)',
    'Recommends: systemd',
    'Section: net',
    'Priority: optional',
    'Homepage: https://example.com/edge-agent',
    'Description: edge gateway agent between the WMS and the PLCs',
    ' Links a warehouse gateway to the WMS over MQTT, bridges Modbus TCP PLCs, and',
    ' updates itself with signed A/B bundles (full or delta) behind a boot guard',
    ' with a health gate and rollback. Ships its own Node.js runtime.',
    '',
  ].join('\n');
}

/** Stages the package tree under `stage`; returns the .deb's path once dpkg-deb has built it. */
export function buildDeb(o: PackageOptions): string {
  const stage = join(o.out, `deb-${o.version}-${o.arch}`);
  rmSync(stage, { recursive: true, force: true });
  const rel = join(stage, 'usr', 'lib', 'edge-agent', 'release');
  cpSync(o.release, rel, { recursive: true, verbatimSymlinks: true });
  const pkg = JSON.parse(readFileSync(join(rel, 'package.json'), 'utf8')) as Record<string, unknown>;
  write(join(rel, 'package.json'), JSON.stringify({ ...pkg, version: o.version }, null, 2) + '\n');
  write(
    join(stage, 'usr', 'bin', 'edge-agent'),
    `#!/bin/sh\n# The active slot's edge-agent on the guard's runtime (ota/slot-entry.ts); see edge-agent --help.\nexec ${GUARD_NODE} /opt/edge-agent/guard/ota/slot-entry.js --root /opt/edge-agent -- "$@"\n`,
    0o755,
  );
  for (const unit of ['edge-agent.service', 'edge-plc-bridge.service']) {
    const text = readFileSync(join(o.repo, 'deploy', 'systemd', unit), 'utf8').replaceAll('ExecStart=/usr/bin/node ', `ExecStart=${GUARD_NODE} `);
    write(join(stage, 'lib', 'systemd', 'system', unit), text);
  }
  write(join(stage, 'usr', 'share', 'polkit-1', 'rules.d', '50-edge-agent.rules'), readFileSync(join(o.repo, 'deploy', 'polkit', '50-edge-agent.rules')));
  const example = readFileSync(join(o.repo, 'deploy', 'config.example.yaml'), 'utf8');
  const config = example.replace(/^gatewayId: .*$/m, '# gatewayId: wh1-dock-03   (default: the host name)');
  write(join(stage, 'etc', 'edge-agent', 'config.yaml'), config);
  const doc = join(stage, 'usr', 'share', 'doc', 'edge-agent');
  write(join(doc, 'copyright'), readFileSync(join(o.repo, 'deploy', 'debian', 'copyright')));
  const date = new Date().toUTCString().replace('GMT', '+0000');
  write(join(doc, 'changelog.gz'), gzipSync(`edge-agent (${o.version}) stable; urgency=medium\n\n  * Release ${o.version}.\n\n -- Edge Agent Maintainers <edge-agent@example.com>  ${date}\n`, { level: 9 }));
  for (const [name, text] of Object.entries(helpTexts(o.release))) write(join(doc, 'help', `${name}.txt`), text);
  write(join(stage, 'usr', 'share', 'lintian', 'overrides', 'edge-agent'), readFileSync(join(o.repo, 'deploy', 'debian', 'lintian-overrides')));

  const debian = join(stage, 'DEBIAN');
  mkdirSync(debian, { recursive: true });
  for (const s of ['postinst', 'prerm', 'postrm']) write(join(debian, s), readFileSync(join(o.repo, 'deploy', 'debian', s)), 0o755);
  write(join(debian, 'conffiles'), '/etc/edge-agent/config.yaml\n');
  const all = files(stage).filter((f) => !f.startsWith(debian + '/'));
  const md5 = all.map((f) => `${createHash('md5').update(readFileSync(f)).digest('hex')}  ${relative(stage, f)}`).filter((l) => !l.endsWith('  etc/edge-agent/config.yaml'));
  write(join(debian, 'md5sums'), md5.join('\n') + '\n');
  const kib = Math.ceil(all.reduce((n, f) => n + statSync(f).size, 0) / 1024);
  write(join(debian, 'control'), control(o, kib));
  // Directories 0755 and files owned by root whatever the build user's umask (--root-owner-group).
  execFileSync('find', [stage, '-type', 'd', '-exec', 'chmod', '0755', '{}', '+']);
  const deb = join(o.out, `edge-agent_${o.version}_${DEB_ARCH[o.arch]}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', stage, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(stage, { recursive: true, force: true });
  return deb;
}

export function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: { release: { type: 'string' }, version: { type: 'string' }, out: { type: 'string' }, cache: { type: 'string' }, arch: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write('npm run package [-- --release DIR] [--version V] [--out DIR] [--arch x64|arm64]\n  Builds OUT/edge-agent_V_ARCH.deb (default OUT: build/), from DIR or a release built now.\n');
    return 0;
  }
  const repo = resolve(new URL('../../', import.meta.url).pathname);
  const out = resolve(values.out ?? join(repo, 'build'));
  const arch = (values.arch ?? process.arch) as Arch;
  try {
    const pkgVersion = String((JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: unknown }).version);
    const version = values.version ?? pkgVersion;
    const release = values.release ? resolve(values.release) : buildRelease({ repo, arch, out, cache: resolve(values.cache ?? join(out, 'cache')), version }).dir;
    const deb = buildDeb({ repo, release, version, arch, out });
    process.stdout.write(`${deb} (${statSync(deb).size} bytes)\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && basename(process.argv[1]) === 'package-deb.js') process.exit(main(process.argv.slice(2)));
