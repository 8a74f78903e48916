/**
 * The daily, weekly and monthly procedures that ship with the release, run by the real agent of a
 * whole gateway (A/B install under the boot guard, updated once to a signed release so its
 * active slot has a manifest; the PLC bridge polling two pymodbus PLCs every 100 ms) against a
 * real data directory with real things to find (docs/maintenance.md, "Built-in procedures"):
 * - daily: a log ring over its bound, old temporary files, an old support bundle, quarantined
 *   files over their number, a configuration file that differs from its known-good copy: it
 *   removes exactly what is past its bound and reports the difference; every other file keeps its
 *   size and mtime (a listing before and after);
 * - weekly: a modified slot file is reported; the store is optimised, backed up, verified and
 *   rotated; the bridge is handed over to a fresh process, and through all of it both devices'
 *   data has no seq gap and no missed poll interval; its trend report has a table per component;
 * - monthly: the full check, a backup, the restore test (its temporary directory is gone after),
 *   the security review (a private key others can read is a finding, and its mode is left
 *   alone), the performance review, printed by `edge-agent maintenance report RUN` as tables.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { waitFor } from '../helpers/util.js';
import { runCli } from '../helpers/agent.js';
import { startPlcGateway, type PlcGateway } from '../helpers/plc-gateway.js';
import { bridgePing } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { resOf, TERMINAL } from '../helpers/ota-root.js';
import { listKnownGood } from '../../recovery/known-good.js';

interface Step {
  id: string;
  outcome: string;
  message?: string;
  data?: Record<string, unknown>;
}
interface Report {
  state: string;
  steps: Step[];
}

const OLD = Date.now() / 1000 - 3 * 86400;

/** path -> "size mtime" of every file under `dir` (directories as "dir"), but the ones the running agent writes all the time. */
function listing(dir: string, volatile: RegExp): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of readdirSync(dir, { recursive: true }).map(String)) {
    if (volatile.test(n)) continue;
    try {
      const st = statSync(join(dir, n));
      out.set(n, st.isDirectory() ? 'dir' : `${st.size} ${st.mtimeMs}`);
    } catch {
      // removed while listing
    }
  }
  return out;
}

/** What changed between two listings: [removed, added, changed]. */
function diff(a: Map<string, string>, b: Map<string, string>): { removed: string[]; added: string[]; changed: string[] } {
  return {
    removed: [...a.keys()].filter((k) => !b.has(k)).sort(),
    added: [...b.keys()].filter((k) => !a.has(k)).sort(),
    changed: [...a.keys()].filter((k) => b.has(k) && a.get(k) !== b.get(k) && a.get(k) !== 'dir').sort(),
  };
}

// What the running agent writes whatever a procedure does: its store, its socket, the current log files.
const VOLATILE = /^(agent\.db(-wal|-shm|-journal)?|agent\.sock|logs\/agent\.log(\.1)?)$/;

describe('the daily, weekly and monthly procedures on a real gateway', () => {
  let gw: PlcGateway;
  let dataDir: string;
  let configPath: string;
  const bundles: string[] = [];

  before(async () => {
    gw = await startPlcGateway({ gatewayId: 'gw-builtin', releases: [{ version: '1.0.1' }], pymodbus: 2, agent: { diag: { logRing: { maxBytes: 65_536, files: 2 } } } });
    dataDir = gw.r.dataDir;
    configPath = gw.r.configPath;
    // A signed release in the active slot, so that its files can be checked against a manifest.
    const u = await gw.update('builtin-update', '1.0.1');
    assert.equal(u.status, 'successful', JSON.stringify(u));
    await waitFor(() => gw.online('1.0.1', 'B'), { timeoutMs: 60_000, what: 'online on 1.0.1 in slot B' });
    await waitFor(() => listKnownGood(dataDir, configPath).length > 0, { timeoutMs: 30_000, what: 'a known-good copy of the configuration' });
  });

  after(async () => {
    await gw?.stop();
    for (const b of bundles) if (existsSync(b)) writeFileSync(b, ''); // tmpdir is shared: leave nothing large behind
  });

  const run = async (id: string, procedure: string, params: Record<string, unknown> = {}, force = false): Promise<{ status: string; reason?: { code: string }; result?: Report }> => {
    await waitFor(() => gw.got.some((m) => m.topic === `${gw.root}/status` && (m.payload as { state: string }).state === 'online'), { timeoutMs: 30_000, what: 'online' });
    gw.wms.publish(`${gw.root}/cmd/maintenance`, JSON.stringify({ id, params: { procedure, params, ...(force ? { force: true } : {}) } }), { qos: 1 });
    await waitFor(() => resOf(gw.got, gw.gatewayId, id).some((p) => TERMINAL.includes(p.status)), { timeoutMs: 300_000, what: `${id} terminal: ${JSON.stringify(resOf(gw.got, gw.gatewayId, id))}` });
    return resOf(gw.got, gw.gatewayId, id).find((p) => TERMINAL.includes(p.status)) as never;
  };
  const step = (r: Report | undefined, id: string): Step => {
    const s = r?.steps.find((x) => x.id === id);
    assert.ok(s, `step ${id} in ${JSON.stringify(r)}`);
    return s;
  };

  test('daily: removes what is past its bound, reports the changed configuration, touches nothing else', { timeout: 300_000 }, async () => {
    // A log ring over its bound: files beyond diag.logRing.files, left by a larger ring.
    const logs = join(dataDir, 'logs');
    for (const n of ['agent.log.2', 'agent.log.3']) {
      writeFileSync(join(logs, n), 'x'.repeat(100_000));
      utimesSync(join(logs, n), OLD, OLD);
    }
    // Old temporary files and partial downloads; a fresh one.
    mkdirSync(join(dataDir, 'tmp'), { recursive: true });
    writeFileSync(join(dataDir, 'tmp', 'old.part'), 'y'.repeat(1000));
    utimesSync(join(dataDir, 'tmp', 'old.part'), OLD, OLD);
    mkdirSync(join(dataDir, 'tmp', 'download-old'));
    writeFileSync(join(dataDir, 'tmp', 'download-old', 'bundle.tar.partial'), 'p'.repeat(5000));
    utimesSync(join(dataDir, 'tmp', 'download-old'), OLD, OLD);
    writeFileSync(join(dataDir, 'tmp', 'fresh.part'), 'z');
    // Support bundles a crash left: an old one goes, a fresh one stays.
    const oldBundle = join(tmpdir(), `edge-agent-support-gw-builtin-old-${process.pid}.tar.gz`);
    const freshBundle = join(tmpdir(), `edge-agent-support-gw-builtin-fresh-${process.pid}.tar.gz`);
    bundles.push(oldBundle, freshBundle);
    writeFileSync(oldBundle, 'b'.repeat(2000));
    utimesSync(oldBundle, OLD, OLD);
    writeFileSync(freshBundle, 'b');
    // Quarantined files over their number (20 kept, the newest by name).
    const q = join(dataDir, 'quarantine');
    mkdirSync(q, { recursive: true });
    for (let i = 0; i < 22; i++) writeFileSync(join(q, `20260101T0000${String(i).padStart(2, '0')}Z-config.yaml`), `q${i}`);
    // Files that are not the agent's, old as they are.
    writeFileSync(join(dataDir, 'not-ours.txt'), 'keep me');
    utimesSync(join(dataDir, 'not-ours.txt'), OLD, OLD);
    // The configuration edited by hand after it was kept as known-good.
    appendFileSync(configPath, '# edited by hand\n');

    const beforeList = listing(dataDir, VOLATILE);
    const t = await run('builtin-daily', 'maintenance-daily');
    assert.ok(TERMINAL.includes(t.status), JSON.stringify(t));
    const r = t.result;
    const cleanup = step(r, 'files-cleanup');
    assert.equal(cleanup.outcome, 'ok', JSON.stringify(cleanup));
    const removed = ((cleanup.data?.removed as string[]) ?? []).map((p) => (p.startsWith(dataDir) ? relative(dataDir, p) : p)).sort();
    const expected = [
      join('logs', 'agent.log.2'),
      join('logs', 'agent.log.3'),
      join('quarantine', '20260101T000000Z-config.yaml'),
      join('quarantine', '20260101T000001Z-config.yaml'),
      join('tmp', 'download-old'),
      join('tmp', 'old.part'),
      oldBundle,
    ].sort();
    assert.deepEqual(removed, expected, 'exactly what is past its bound');
    assert.equal(existsSync(oldBundle), false);
    assert.ok(existsSync(freshBundle), 'a fresh support bundle stays');
    const d = diff(beforeList, listing(dataDir, VOLATILE));
    assert.deepEqual(d.removed, [...expected.filter((p) => !p.startsWith('/')), join('tmp', 'download-old', 'bundle.tar.partial')].sort(), 'the listing lost exactly those');
    assert.deepEqual(d.added, [], 'nothing new');
    assert.deepEqual(d.changed, [], 'every other file keeps its size and mtime');
    const cv = step(r, 'config-verify');
    assert.match(cv.message ?? '', /config\.yaml differs from its known-good copy/);
    assert.equal((cv.data?.knownGood as { state: string }[]).find((k) => k.state === 'differs') !== undefined, true);
    assert.equal(step(r, 'store-check').outcome, 'ok');
    assert.equal(step(r, 'disk-space').outcome, 'ok');
  });

  test('weekly: a modified slot file is reported, the bridge is handed over with no seq gap and no missed interval on either device', { timeout: 400_000 }, async () => {
    const slotFile = join(gw.r.root, 'slots', 'B', 'dist', 'bench', 'report.js');
    appendFileSync(slotFile, '// changed on the device\n');
    const pingBefore = await bridgePing(gw.socket);
    assert.equal(pingBefore?.role, 'active');
    const beforeList = listing(dataDir, VOLATILE);
    const from = gw.got.length;
    const t = await run('builtin-weekly', 'maintenance-weekly', {}, true);
    assert.ok(TERMINAL.includes(t.status), JSON.stringify(t));
    const r = t.result;
    for (const id of ['store-optimize', 'store-backup', 'store-verify-backup', 'store-rotate-backups', 'plc-bridge-handover', 'trend-report']) assert.equal(step(r, id).outcome, 'ok', JSON.stringify(step(r, id)));
    const sv = step(r, 'slot-verify');
    assert.equal(sv.outcome, 'failed');
    assert.match(sv.message ?? '', /do not match its signed manifest/);
    assert.match(JSON.stringify(sv.data), /bench\/report\.js/);
    const pingAfter = await bridgePing(gw.socket);
    assert.notEqual(pingAfter?.pid, pingBefore?.pid, 'a fresh bridge process');
    // The data of both devices from before the run to after it: every seq, every interval.
    await new Promise((res) => setTimeout(res, 1500));
    for (const dev of ['plc0', 'plc1']) {
      const msgs = dataMessages(gw.got.slice(from), `${gw.root}/plc/${dev}/fast`);
      assert.ok(msgs.length > 20, `${dev}: ${msgs.length} data messages`);
      const g = gapReport(msgs, 100);
      assert.deepEqual(g.seqGaps, [], `${dev}: no seq gap through the weekly procedure`);
      assert.deepEqual(g.tickGaps, [], `${dev}: no missed poll interval through the weekly procedure`);
    }
    const trend = step(r, 'trend-report').data as { days: number; components: { component: string }[] };
    assert.equal(trend.days, 7);
    assert.deepEqual(trend.components.slice(0, 3).map((c) => c.component), ['agent', 'plc-bridge', 'system']);
    // Only the backups changed (a new one, and the rotation), and the watchdog's record of the
    // bridge process it now watches (the handover's new pid).
    const d = diff(beforeList, listing(dataDir, VOLATILE));
    for (const p of [...d.removed, ...d.added]) assert.match(p, /^backups(\/|$)/, `only backups come and go: ${JSON.stringify(d)}`);
    for (const p of d.changed) assert.match(p, /^(backups\/|recovery\/plc-bridge\.(pid|log)$)/, `only backups and the bridge's pid change: ${JSON.stringify(d)}`);
    assert.ok(d.added.some((p) => /^backups\/store-.+\.db$/.test(p)), `a new backup: ${JSON.stringify(d)}`);
  });

  test('monthly: restore test in a temporary directory, security review, performance review printed as tables', { timeout: 400_000 }, async () => {
    // A private key others can read: the review finds it, and leaves it as it is.
    const key = join(dataDir, 'certs', 'client.key');
    mkdirSync(join(dataDir, 'certs'), { recursive: true });
    writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n');
    chmodSync(key, 0o644);
    const beforeList = listing(dataDir, VOLATILE);
    const t = await run('builtin-monthly', 'maintenance-monthly');
    assert.ok(TERMINAL.includes(t.status), JSON.stringify(t));
    const r = t.result;
    for (const id of ['store-check-full', 'store-backup', 'store-verify-backup', 'restore-test', 'performance-review']) assert.equal(step(r, id).outcome, 'ok', JSON.stringify(step(r, id)));
    const rt = step(r, 'restore-test').data as { cleaned: boolean; tempDir: string; store: { tables: { table: string; restored: number }[] }; configs: { source: string; sameAsLive: boolean | null }[] };
    assert.equal(rt.cleaned, true);
    assert.equal(existsSync(rt.tempDir), false, 'the temporary directory is gone');
    assert.ok(rt.store.tables.some((x) => x.table === 'commands' && x.restored > 0), JSON.stringify(rt.store.tables));
    assert.equal(rt.configs.find((c) => c.source === configPath)?.sameAsLive, false, 'the live configuration was edited by hand since');
    const sr = step(r, 'security-review');
    assert.equal(sr.outcome, 'failed');
    assert.match(sr.message ?? '', /client\.key \(certs\): anyone can read it \(mode 0644\) and it holds a secret/);
    assert.equal(statSync(key).mode & 0o777, 0o644, 'a review changes no mode');
    const d = diff(beforeList, listing(dataDir, VOLATILE));
    for (const p of [...d.removed, ...d.added, ...d.changed]) assert.match(p, /^backups(\/|$)/, `only backups change: ${JSON.stringify(d)}`);

    const text = await runCli(['maintenance', 'report', 'builtin-monthly', '--config', configPath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^ {2}performance-review:$/m);
    assert.match(text.stdout, /^ {4}agent\s+last 30 days\s+30 days before\s+change$/m);
    assert.match(text.stdout, /^ {4}plc-bridge\s+last 30 days/m);
    assert.match(text.stdout, /^ {4}restarts \(count\)\s+\d+\s+\d+\s+/m);
    const json = await runCli(['maintenance', 'report', 'builtin-monthly', '--json', '--config', configPath]);
    const doc = JSON.parse(json.stdout) as Report;
    assert.equal((step(doc, 'performance-review').data as { days: number }).days, 30);
  });
});
