/**
 * `edge-agent install`, `slots`, `history` and `rollback` (CONTRACT.md section 5), run as the real
 * CLI binary against real files in temp dirs: an install from a small fake release (package.json,
 * the boot guard's files of dist/, a tiny node_modules with a relative symlink), hand-made
 * slots.json states, and a state store filled by a real agent against a real broker.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { GUARD_FILES } from '../../ota/guard-install.js';
import { activate, beginInstall, failTrial, initSlots, loadSlots, markVerified, saveSlots } from '../../ota/slots.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, REPO, runCli, startAgent, writeAgentConfig, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-cli-slots';

/** A release as `install` expects one, small: the guard's files are real, the agent is a stub. */
function fakeRelease(dir: string, version = '1.0.0'): string {
  for (const f of GUARD_FILES) {
    mkdirSync(dirname(join(dir, 'dist', f)), { recursive: true });
    copyFileSync(join(REPO, 'dist', f), join(dir, 'dist', f));
  }
  mkdirSync(join(dir, 'dist', 'agent', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'agent', 'cli', 'index.js'), 'process.exit(0);\n');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'edge-agent', version, type: 'module' }));
  mkdirSync(join(dir, 'node_modules', 'tiny', 'bin'), { recursive: true });
  mkdirSync(join(dir, 'node_modules', '.bin'));
  writeFileSync(join(dir, 'node_modules', 'tiny', 'bin', 'tiny.js'), 'export {};\n');
  symlinkSync('../tiny/bin/tiny.js', join(dir, 'node_modules', '.bin', 'tiny'));
  return dir;
}

interface SlotsJson {
  root: string;
  active: string;
  highestSecurityVersion: number;
  slots: Record<'A' | 'B', { state: string; active: boolean; version: string | null; trialStarts: number | null; reason: string | null; installedAt: string | null; committedAt: string | null }>;
}
interface HistoryJson {
  sources: { slots: string; commands: string };
  entries: { at: string; source: string; event?: string; op?: string; id?: string; status?: string; slot?: string; version?: string | null; reason: string | null }[];
}

function json<T>(r: { code: number | null; stdout: string; stderr: string }): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (err) {
    throw new Error(`no JSON on stdout (exit ${r.code}):\n${r.stdout}\n${r.stderr}`, { cause: err });
  }
}

describe('edge-agent install, slots, history, rollback', () => {
  const work = tempDir('cli-slots');
  const root = join(work, 'root');
  const release = fakeRelease(join(work, 'release'));
  const dataDir = join(work, 'data');
  const config = writeAgentConfig(dataDir, GW, { ota: { root } });

  test('--help of each new command prints its usage and exits 0', async () => {
    for (const cmd of ['slots', 'history', 'rollback', 'install']) {
      const r = await runCli([cmd, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: edge-agent ${cmd} `));
    }
    const main = await runCli(['--help']);
    for (const cmd of ['slots', 'history', 'rollback', 'install']) assert.match(main.stdout, new RegExp(`^  ${cmd} `, 'm'));
  });

  test('slots and history before the install: exit 3, saying how to install', async () => {
    const r = await runCli(['slots', '--config', config]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /not installed under .*edge-agent install --root/);
    const h = await runCli(['history', '--config', config]);
    assert.equal(h.code, 3, h.stderr);
    assert.match(h.stderr, /nothing to show/);
  });

  test('install copies the release into slot A, installs the guard, writes slots.json, prints ExecStart', async () => {
    const r = await runCli(['install', '--root', root, '--from', release, '--config', '/etc/edge-agent/site.yaml']);
    assert.equal(r.code, 0, r.stderr);
    const slot = join(root, 'slots', 'A');
    assert.equal(readFileSync(join(slot, 'dist', 'agent', 'cli', 'index.js'), 'utf8'), 'process.exit(0);\n');
    assert.equal(JSON.parse(readFileSync(join(slot, 'package.json'), 'utf8')).version, '1.0.0');
    assert.ok(lstatSync(join(slot, 'node_modules', '.bin', 'tiny')).isSymbolicLink(), 'the symlink is copied as a symlink');
    assert.equal(readlinkSync(join(slot, 'node_modules', '.bin', 'tiny')), '../tiny/bin/tiny.js', 'verbatim, not rewritten');
    for (const f of GUARD_FILES) assert.ok(existsSync(join(root, 'guard', f)), `guard file ${f}`);
    const s = loadSlots(root);
    assert.equal(s.active, 'A');
    assert.equal(s.slots.A.state, 'committed');
    assert.equal(s.slots.A.version, '1.0.0');
    assert.equal(s.slots.B.state, 'empty');
    assert.match(r.stdout, new RegExp(`^ExecStart=\\S+ --max-semi-space-size=1 ${root}/guard/ota/boot-guard\\.js --root ${root} .*-- run --config /etc/edge-agent/site\\.yaml$`, 'm'));
  });

  test('install into an installed root refuses, and leaves it untouched', async () => {
    const before = readFileSync(join(root, 'slots.json'), 'utf8');
    const r = await runCli(['install', '--root', root, '--from', fakeRelease(join(work, 'release-2'), '2.0.0')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already installed under .*; use an update bundle/);
    assert.equal(readFileSync(join(root, 'slots.json'), 'utf8'), before);
    assert.equal(JSON.parse(readFileSync(join(root, 'slots', 'A', 'package.json'), 'utf8')).version, '1.0.0');
  });

  test('install refuses a release with a symlink pointing outside it, writing no slots.json', async () => {
    const rel = fakeRelease(join(work, 'release-link'));
    symlinkSync('/etc/passwd', join(rel, 'node_modules', 'outside'));
    const other = join(work, 'root-link');
    const r = await runCli(['install', '--root', other, '--from', rel]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /symbolic link to \/etc\/passwd, outside the release/);
    assert.ok(!existsSync(join(other, 'slots.json')));
    assert.ok(!existsSync(join(other, 'slots', 'A')));
  });

  test('slots and slots --json: A 1.0.0 committed and active, B empty', async () => {
    const t = await runCli(['slots', '--config', config]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^A {2}1\.0\.0 {2}committed, active/m);
    assert.match(t.stdout, /^B {2}- +empty$/m);
    assert.match(t.stdout, /^highest security version {2}0$/m);
    const j = json<SlotsJson>(await runCli(['slots', '--json', '--config', config]));
    assert.equal(j.root, root);
    assert.equal(j.active, 'A');
    assert.equal(j.highestSecurityVersion, 0);
    assert.deepEqual(Object.keys(j.slots), ['A', 'B']);
    assert.equal(j.slots.A.state, 'committed');
    assert.equal(j.slots.A.active, true);
    assert.equal(j.slots.A.version, '1.0.0');
    assert.ok(j.slots.A.installedAt && j.slots.A.committedAt);
    assert.equal(j.slots.B.state, 'empty');
    assert.equal(j.slots.B.active, false);
    assert.equal(j.slots.B.version, null);
    // Stable shape: both slots carry the same keys, absent ones as null.
    assert.deepEqual(Object.keys(j.slots.B), Object.keys(j.slots.A));
  });

  test('EDGE_AGENT_ROOT names the root when the configuration does not', async () => {
    const ok = await runCli(['slots', '--json', '--config', writeAgentConfig(join(work, 'plain'), GW, {})], { EDGE_AGENT_ROOT: root });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(json<SlotsJson>(ok).root, root);
  });

  test('hand-made slots.json: B on trial, then B bad with its reason', async () => {
    const r2 = join(work, 'root-trial');
    const cfg = writeAgentConfig(join(work, 'data-trial'), GW, { ota: { root: r2 } });
    let s = initSlots(r2, { version: '1.0.0', securityVersion: 1 });
    s = beginInstall(s, 'B', { version: '1.1.0', securityVersion: 2, updateId: 'u-7' });
    s = activate(markVerified(s, 'B'), 'B');
    s = { ...s, slots: { ...s.slots, B: { ...s.slots.B, trialStarts: 2 } } };
    saveSlots(r2, s);
    const t = await runCli(['slots', '--config', cfg]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^A {2}1\.0\.0 {2}committed {2}\(security version 1/m);
    assert.match(t.stdout, /^B {2}1\.1\.0 {2}trial, active {2}\(.*trial since .*, 2 trial starts, update u-7\)$/m);
    const j = json<SlotsJson>(await runCli(['slots', '--json', '--config', cfg]));
    assert.equal(j.active, 'B');
    assert.equal(j.slots.B.state, 'trial');
    assert.equal(j.slots.B.trialStarts, 2);
    assert.equal(j.slots.A.active, false);

    saveSlots(r2, failTrial(s, 'health-gate-timeout'));
    const b = await runCli(['slots', '--config', cfg]);
    assert.match(b.stdout, /^A {2}1\.0\.0 {2}committed, active/m);
    assert.match(b.stdout, /^B {2}1\.1\.0 {2}bad {2}\(.*reason: health-gate-timeout\)$/m);
    const jb = json<SlotsJson>(await runCli(['slots', '--json', '--config', cfg]));
    assert.equal(jb.slots.B.state, 'bad');
    assert.equal(jb.slots.B.reason, 'health-gate-timeout');
    assert.equal(jb.slots.B.trialStarts, null);

    // The same transitions in history, newest first; no store: only the slots' history.
    const h = json<HistoryJson>(await runCli(['history', '--json', '--config', cfg]));
    assert.deepEqual(
      h.entries.map((e) => e.event),
      ['fail-trial', 'activate', 'verified', 'install', 'init'],
    );
    assert.equal(h.entries[0]!.reason, 'health-gate-timeout');
    assert.match(h.sources.commands, /no store/);
  });

  test('a corrupt slots.json: slots exits 1 with slots-corrupt', async () => {
    const r3 = join(work, 'root-corrupt');
    mkdirSync(r3);
    writeFileSync(join(r3, 'slots.json'), '{"format": 1, "active": "C"');
    const r = await runCli(['slots', '--config', writeAgentConfig(join(work, 'data-corrupt'), GW, { ota: { root: r3 } })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /slots-corrupt/);
  });

  describe('with a state store written by a real agent', () => {
    let broker: Broker;
    let wms: MqttClient;
    let results: Received[];
    let agent: AgentProcess | undefined;

    before(async () => {
      broker = await startBroker();
      wms = await mqttClient(broker.url);
      results = await collect(wms, `edge/${GW}/res/+`);
      agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url }, ota: { root } } });
      await agentConnected(agent, 20_000);
    });

    after(async () => {
      await agent?.stop();
      await wms?.endAsync();
      await broker?.stop();
    });

    const terminal = (id: string): Received | undefined =>
      results.find((m) => m.topic.endsWith(`/res/${id}`) && ['successful', 'failed', 'rejected'].includes((m.payload as { status: string }).status));

    test('rollback with a daemon not under the boot guard: the op fails not-installed, exit 1', async () => {
      await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'diag-1' }), { qos: 1 });
      await waitFor(() => terminal('diag-1') !== undefined, { timeoutMs: 30_000, what: `diag-1 to finish\n${agent!.logText().slice(-3000)}` });

      const r = await runCli(['rollback', '--config', config]);
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /^rollback requested as command console-\d+-[0-9a-f]+$/m);
      assert.match(r.stderr, /failed: not-installed: .*boot guard/);
      // As if the WMS had sent it: the status went out on ~/res/{id} too.
      const id = /command (console-\S+)/.exec(r.stdout)![1]!;
      await waitFor(() => terminal(id) !== undefined, { timeoutMs: 10_000, what: `${id} on ~/res` });
      assert.equal((terminal(id)!.payload as { reason: { code: string } }).reason.code, 'not-installed');
    });

    test('history merges the store commands with the slots history, newest first; also with the daemon down', async () => {
      await agent!.stop();
      agent = undefined;
      const h = json<HistoryJson>(await runCli(['history', '--json', '--config', config]));
      assert.deepEqual(h.sources, { slots: 'ok', commands: 'ok' });
      const kinds = h.entries.map((e) => (e.source === 'slots' ? `slots:${e.event}` : `cmd:${e.op}:${e.status}`));
      assert.deepEqual(kinds, ['cmd:rollback:failed', 'cmd:diagnostics:successful', 'slots:init']);
      assert.equal(h.entries[0]!.reason, 'not-installed');
      assert.equal(h.entries[1]!.id, 'diag-1');
      const times = h.entries.map((e) => Date.parse(e.at));
      assert.deepEqual([...times].sort((a, b) => b - a), times);

      const t = await runCli(['history', '--config', config]);
      assert.equal(t.code, 0, t.stderr);
      assert.match(t.stdout, /Z {2}cmd {5}rollback {8}failed not-installed {2}id console-/);
      assert.match(t.stdout, /Z {2}cmd {5}diagnostics {5}successful {2}id diag-1$/m);
      assert.match(t.stdout, /Z {2}slot A {2}init {12}1\.0\.0$/m);

      const one = json<HistoryJson>(await runCli(['history', '--json', '--limit', '1', '--config', config]));
      assert.equal(one.entries.length, 1);
      const bad = await runCli(['history', '--limit', '0', '--config', config]);
      assert.equal(bad.code, 64);
    });

    test('history with the store but no installation shows the commands only', async () => {
      const cfg = writeAgentConfig(join(work, 'data-noroot'), GW, { dataDir, ota: { root: join(work, 'nowhere') } });
      const h = json<HistoryJson>(await runCli(['history', '--json', '--config', cfg]));
      assert.match(h.sources.slots, /not installed/);
      assert.deepEqual(
        h.entries.map((e) => e.source),
        ['commands', 'commands'],
      );
    });

    test('rollback with the daemon down exits 3 saying so', async () => {
      const r = await runCli(['rollback', '--config', config]);
      assert.equal(r.code, 3);
      assert.match(r.stderr, /daemon is not running/);
    });
  });
});
