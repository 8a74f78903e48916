/**
 * `edge-agent install --root ROOT`: the first installation of the A/B layout. Copies the release
 * this CLI runs from (or --from DIR) into ROOT/slots/A, installs the boot guard (ROOT/guard) and
 * writes ROOT/slots.json with slot A committed and active.
 *
 * INVARIANTS
 * - slots.json is written last: it is what makes ROOT an installation, so an install cut short
 *   leaves no slots.json and can simply be run again (it replaces the half-copied slot A).
 * - An existing installation is never touched: with ROOT/slots.json present the command refuses;
 *   releases change only through signed update bundles.
 * - Symbolic links are copied as they are (verbatimSymlinks), never followed; a link that points
 *   outside the release (absolute, or up out of it) makes the install refuse, so nothing outside
 *   the release ends up in, or reachable from, the slot.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { guardEntry, guardRuntime, installGuard } from '../../ota/guard-install.js';
import { SLOT_MANIFEST_DIR } from '../../ota/manifest.js';
import { initSlots, slotsPath } from '../../ota/slots.js';
import { DEFAULT_CONFIG_PATH } from '../../core/config.js';

type Values = Record<string, string | boolean | undefined>;

/** What a release is made of, relative to its package root (and to ROOT/slots/A). */
export const RELEASE_ENTRIES = ['package.json', 'dist', 'node_modules'] as const;
/**
 * What a self-contained release (npm run release, docs/releases.md) adds: its own Node.js, and
 * the signed manifest of its bundle (what delta bundles are checked against). Copied when there.
 */
export const OPTIONAL_RELEASE_ENTRIES = ['runtime', SLOT_MANIFEST_DIR] as const;
const ENTRY_POINT = join('dist', 'agent', 'cli', 'index.js');

/** The package root of the running CLI: dist/agent/cli/install.js -> three directories up. */
export function ownPackageRoot(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

function inside(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** The release's version; refuses a directory that is not a built release. */
function readRelease(from: string): string {
  for (const e of [...RELEASE_ENTRIES, ENTRY_POINT]) {
    if (!existsSync(join(from, e))) throw new Error(`${from} is not a built release: ${e} is missing (run npm run build, or give --from)`);
  }
  let pkg: { version?: unknown };
  try {
    pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as typeof pkg;
  } catch (err) {
    throw new Error(`${join(from, 'package.json')}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof pkg.version !== 'string' || semver.valid(pkg.version) !== pkg.version) {
    throw new Error(`${join(from, 'package.json')}: version ${JSON.stringify(pkg.version)} is not a semantic version`);
  }
  return pkg.version;
}

/** cpSync filter: a symbolic link must stay inside the release. */
function linkStaysInside(from: string): (src: string) => boolean {
  return (src) => {
    if (!lstatSync(src).isSymbolicLink()) return true;
    const target = readlinkSync(src);
    if (isAbsolute(target) || !inside(from, resolve(dirname(src), target))) {
      throw new Error(`${src} is a symbolic link to ${target}, outside the release; remove it or install from a copy without it`);
    }
    return true;
  };
}

export function execStartLine(root: string, configPath: string): string {
  const node = existsSync(guardRuntime(root)) ? guardRuntime(root) : process.execPath;
  return `ExecStart=${node} --max-semi-space-size=1 ${guardEntry(root)} --root ${root} --node-flag --max-semi-space-size=1 -- run --config ${configPath}`;
}

export async function installCommand(v: Values): Promise<number> {
  const name = 'edge-agent install';
  if (typeof v.root !== 'string' || v.root === '') {
    process.stderr.write(`${name}: --root is required, e.g. --root /opt/edge-agent (see --help)\n`);
    return 64;
  }
  const root = resolve(v.root);
  const from = resolve(typeof v.from === 'string' ? v.from : ownPackageRoot());
  const slotDir = join(root, 'slots', 'A');
  try {
    if (v.upgrade === true && existsSync(slotsPath(root))) {
      const version = readRelease(from);
      const entries = [...RELEASE_ENTRIES, ...OPTIONAL_RELEASE_ENTRIES.filter((e) => existsSync(join(from, e)))];
      const { upgradeInstalled } = await import('./install-upgrade.js');
      for (const line of upgradeInstalled(root, from, version, entries)) process.stdout.write(line + '\n');
      return 0;
    }
    if (existsSync(slotsPath(root))) {
      throw new Error(`already installed under ${root} (${slotsPath(root)} exists); use an update bundle to change the release`);
    }
    if (inside(from, root) || inside(root, from)) throw new Error(`the install root ${root} and the release ${from} must not contain each other`);
    const version = readRelease(from);
    if (existsSync(slotDir)) {
      process.stdout.write(`replacing ${slotDir}, left by an install that did not finish\n`);
      rmSync(slotDir, { recursive: true, force: true });
    }
    mkdirSync(slotDir, { recursive: true, mode: 0o755 });
    process.stdout.write(`copying ${from} into ${slotDir}\n`);
    const filter = linkStaysInside(from);
    try {
      const entries = [...RELEASE_ENTRIES, ...OPTIONAL_RELEASE_ENTRIES.filter((e) => existsSync(join(from, e)))];
      for (const e of entries) cpSync(join(from, e), join(slotDir, e), { recursive: true, verbatimSymlinks: true, dereference: false, errorOnExist: true, force: false, filter });
    } catch (err) {
      rmSync(slotDir, { recursive: true, force: true });
      throw err;
    }
    flushToDisk();
    const runtime = join(slotDir, 'runtime', 'bin', 'node');
    installGuard(join(slotDir, 'dist'), root, existsSync(runtime) ? { runtime } : {});
    initSlots(root, { version });
    const configPath = resolve(typeof v.config === 'string' ? v.config : DEFAULT_CONFIG_PATH);
    process.stdout.write(
      [
        `installed edge-agent ${version} under ${root}: slot A committed and active, slot B empty`,
        `boot guard: ${guardEntry(root)}`,
        '',
        'In the systemd unit (deploy/systemd/edge-agent.service, or a drop-in), start the boot guard:',
        execStartLine(root, configPath),
        `and let the service write the install root: ReadWritePaths=... ${root}; chown -R edge-agent:edge-agent ${root}`,
        '',
      ].join('\n'),
    );
    return 0;
  } catch (err) {
    process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/**
 * The copied files reach the disk before slots.json says the slot is committed (slots.json itself
 * is written with fsync). One sync(1) rather than an fsync per file of node_modules; where it is
 * missing the install still succeeds (it is a manual, attended step).
 */
function flushToDisk(): void {
  try {
    execFileSync('sync', [], { stdio: 'ignore' });
  } catch {
    /* best effort, see above */
  }
}
