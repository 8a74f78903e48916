/**
 * The Debian package (deploy/package-deb.ts, deploy/debian/), for real and never on this machine:
 * installed, upgraded, removed and purged with dpkg inside a debootstrapped Debian 12 (bookworm)
 * minbase chroot, in its own mount and PID namespaces (unshare), so nothing of it reaches the
 * host. The chroot has no Node.js at all: the package must bring its own. The chroot is made once
 * from deb.debian.org and cached as a tarball in the temp directory (about 2 minutes the first
 * time, seconds after). lintian checks the package too.
 *
 * Needs root (dpkg in a chroot), debootstrap, dpkg-deb and lintian (.ci/debian-packages).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeb } from '../../deploy/package-deb.js';
import { buildRelease } from '../../deploy/release.js';
import { REPO } from '../helpers/agent.js';
import { tempDir } from '../helpers/util.js';

const CACHE = join(tmpdir(), 'edge-agent-release-cache');
const CHROOT_TAR = join(CACHE, 'bookworm-minbase.tar');
const root = process.getuid?.() === 0;

let work: string;
let chroot: string;
const debs: Record<string, string> = {};

/** Runs `script` (sh -e) inside the chroot, in new mount and PID namespaces; returns its output. */
function inChroot(script: string): { code: number; out: string } {
  const r = spawnSync(
    'unshare',
    ['--mount', '--pid', '--fork', '--kill-child', 'sh', '-ec', 'mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"; exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -ec "$2" 2>&1', 'sh', chroot, script],
    { encoding: 'utf8', timeout: 300_000 },
  );
  return { code: r.status ?? -1, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

function ok(script: string): string {
  const r = inChroot(script);
  assert.equal(r.code, 0, `${script}\n--- output ---\n${r.out}`);
  return r.out;
}

before(() => {
  if (!root) return;
  work = tempDir('deb');
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(CHROOT_TAR)) {
    const build = join(work, 'debootstrap');
    execFileSync('debootstrap', ['--variant=minbase', 'bookworm', build, 'http://deb.debian.org/debian'], { stdio: 'ignore', timeout: 900_000 });
    execFileSync('tar', ['-C', build, '-cf', `${CHROOT_TAR}.tmp`, '.']);
    execFileSync('mv', [`${CHROOT_TAR}.tmp`, CHROOT_TAR]);
    rmSync(build, { recursive: true, force: true });
  }
  chroot = join(work, 'chroot');
  mkdirSync(chroot);
  execFileSync('tar', ['-C', chroot, '-xf', CHROOT_TAR]);
  const release = buildRelease({ repo: REPO, arch: 'x64', out: join(work, 'out'), cache: CACHE, version: '1.0.0' }).dir;
  for (const v of ['1.0.0', '1.0.1', '1.0.2']) {
    debs[v] = buildDeb({ repo: REPO, release, version: v, arch: 'x64', out: join(work, 'out') });
    copyFileSync(debs[v], join(chroot, 'tmp', `edge-agent_${v}.deb`));
  }
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('lintian finds no error in the package, and deploy/debian/README explains each warning it gives', { skip: !root && 'needs root (the chroot test builds the package)', timeout: 600_000 }, () => {
  const r = spawnSync('lintian', ['--tag-display-limit', '0', debs['1.0.0']!], { encoding: 'utf8', timeout: 600_000 });
  const lines = (r.stdout + r.stderr).split('\n');
  assert.deepEqual(lines.filter((l) => l.startsWith('E: ')), []);
  // "W: edge-agent: TAG [details]": each tag must be named in the README's list of warnings.
  const readme = readFileSync(join(REPO, 'deploy', 'debian', 'README'), 'utf8');
  const warnings = [...new Set(lines.filter((l) => l.startsWith('W: ')).map((l) => l.split(' ')[2] ?? ''))];
  assert.deepEqual(warnings.filter((tag) => !readme.includes(tag)), [], `lintian warnings not explained in deploy/debian/README: ${lines.filter((l) => l.startsWith('W: ')).join('\n')}`);
});

test('the .deb is installed, upgraded through the guard, removed and purged in a bookworm chroot', { skip: !root && 'needs root (dpkg inside a chroot)', timeout: 900_000 }, () => {
  assert.match(ok('command -v node || echo no-node'), /^no-node$/m, 'the chroot has no Node.js of its own');

  ok('dpkg -i /tmp/edge-agent_1.0.0.deb');
  const facts = ok(
    [
      'getent passwd edge-agent | cut -d: -f1,6,7',
      'getent group edge-agent | cut -d: -f1',
      'stat -c "%n %a %U %G" /var/lib/edge-agent /etc/edge-agent /etc/edge-agent/config.yaml /opt/edge-agent/slots.json',
      'test -x /opt/edge-agent/guard/runtime/bin/node && echo guard-runtime',
      'test -x /opt/edge-agent/slots/A/runtime/bin/node && echo slot-runtime',
      'grep -c "^ExecStart=/opt/edge-agent/guard/runtime/bin/node " /lib/systemd/system/edge-agent.service',
      'grep -c "^ExecStart=/opt/edge-agent/guard/bin/slot-exec /opt/edge-agent " /lib/systemd/system/edge-plc-bridge.service',
      // What the bridge's unit starts works with no Node.js on the PATH: the active slot's CLI.
      '/opt/edge-agent/guard/bin/slot-exec /opt/edge-agent -- --help | grep -q "^Usage: edge-agent" && echo slot-exec-runs',
      'test -f /usr/share/polkit-1/rules.d/50-edge-agent.rules && echo polkit',
      'ls /usr/share/doc/edge-agent/help/ | wc -l',
      'grep -c "^gatewayId" /etc/edge-agent/config.yaml || true',
    ].join('\n'),
  );
  assert.match(facts, /^edge-agent:\/var\/lib\/edge-agent:\/usr\/sbin\/nologin$/m);
  assert.match(facts, /^edge-agent$/m);
  assert.match(facts, /^\/var\/lib\/edge-agent 750 edge-agent edge-agent$/m);
  assert.match(facts, /^\/etc\/edge-agent\/config\.yaml 640 root edge-agent$/m);
  assert.match(facts, /^\/opt\/edge-agent\/slots\.json 644 edge-agent edge-agent$/m);
  assert.match(facts, /^guard-runtime$/m);
  assert.match(facts, /^slot-runtime$/m);
  assert.match(facts, /^slot-runtime\n1\n1\n/m, `both units start what the package installed: ${facts}`);
  assert.match(facts, /^slot-exec-runs$/m, 'slot-exec ran the active slot\'s edge-agent');
  assert.match(facts, /^polkit$/m);
  assert.ok(Number(/^(\d+)$/m.exec(facts.split('polkit')[1] ?? '')?.[1] ?? 0) > 10, `a help page per command: ${facts}`);
  let slots = JSON.parse(ok('cat /opt/edge-agent/slots.json')) as { active: string; slots: Record<string, { state: string; version?: string }> };
  assert.deepEqual([slots.active, slots.slots.A!.state, slots.slots.A!.version], ['A', 'committed', '1.0.0']);

  // The agent from inside, on the package's own runtime (there is no other).
  assert.match(ok('edge-agent --help'), /Usage: edge-agent <command>/);
  const status = inChroot('edge-agent status --config /etc/edge-agent/config.yaml --data-dir /var/lib/edge-agent');
  assert.equal(status.code, 3, `status without the daemon exits 3: ${status.out}`);
  assert.match(status.out, /daemon\s+not running/);

  // A newer package: into the inactive slot, activated as a trial for the guard.
  const up = ok('dpkg -i /tmp/edge-agent_1.0.1.deb');
  assert.match(up, /installed edge-agent 1\.0\.1 into slot B and activated it as a trial/);
  slots = JSON.parse(ok('cat /opt/edge-agent/slots.json')) as typeof slots;
  assert.deepEqual([slots.active, slots.slots.B!.state, slots.slots.B!.version, slots.slots.A!.state], ['B', 'trial', '1.0.1', 'committed']);
  assert.match(ok('cat /opt/edge-agent/slots/B/package.json'), /"version": "1\.0\.1"/);

  // While that trial runs, another package says why it cannot install, and changes nothing.
  const busy = inChroot('dpkg -i /tmp/edge-agent_1.0.2.deb');
  assert.notEqual(busy.code, 0);
  assert.match(busy.out, /a trial is running/);
  slots = JSON.parse(ok('cat /opt/edge-agent/slots.json')) as typeof slots;
  assert.deepEqual([slots.active, slots.slots.B!.state, slots.slots.B!.version], ['B', 'trial', '1.0.1']);

  ok('dpkg -r edge-agent');
  const removed = ok('for p in /opt/edge-agent /usr/bin/edge-agent /etc/edge-agent/config.yaml /var/lib/edge-agent; do test -e $p && echo "kept $p" || echo "gone $p"; done');
  assert.match(removed, /gone \/opt\/edge-agent/);
  assert.match(removed, /gone \/usr\/bin\/edge-agent/);
  assert.match(removed, /kept \/etc\/edge-agent\/config\.yaml/);
  assert.match(removed, /kept \/var\/lib\/edge-agent/);

  ok('dpkg -P edge-agent');
  const purged = ok('for p in /etc/edge-agent /var/lib/edge-agent; do test -e $p && echo "kept $p" || echo "gone $p"; done; dpkg -s edge-agent >/dev/null 2>&1 && echo installed || echo not-installed');
  assert.match(purged, /gone \/etc\/edge-agent/);
  assert.match(purged, /gone \/var\/lib\/edge-agent/);
  assert.match(purged, /not-installed/);
});
