/**
 * Procedures started by incidents, and the procedures that ship with the release, run by the real
 * agent (docs/maintenance.md):
 * - a service that keeps crashing makes incidents; the repair procedure whose triggers name it
 *   runs once, not again within its cooldown, and the incident says so;
 * - plc-bridge-repair on a whole gateway (real bridge, simulated PLC in its own process): the
 *   bridge is handed over to a fresh process and the WMS's data has no seq gap;
 * - broker-triage and disk-pressure-repair against a real data directory: they report what they
 *   should, and the cleanup removes the agent's leftovers and nothing else.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, REPO, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { startPlcGateway, type PlcGateway } from '../helpers/plc-gateway.js';
import { bridgePing } from '../helpers/bridge.js';
import { dataMessages, gapReport } from '../helpers/plc-data.js';
import { openDatabase } from '../../lib/sqlite.js';
import { IncidentStore } from '../../recovery/incidents.js';
import { resOf, TERMINAL } from '../helpers/ota-root.js';

const SERVICE = join(REPO, 'dist', 'test', 'fixtures', 'service.js');
const NODE = process.execPath;

interface Ev {
  type?: string;
  code?: string;
  component?: string;
  runId?: string;
  procedure?: string;
  report?: { state: string; trigger: string; startedBy: string; steps: { id: string; outcome: string; message?: string; data?: unknown }[] };
}

describe('a repair procedure started by an incident', () => {
  const GW = 'gw-maint-trig';
  let broker: Broker;
  let wms: MqttClient;
  let events: Received[];
  let agent: AgentProcess;
  const root = tempDir('maint-trig-');
  const dataDir = join(root, 'data');
  const marker = join(root, 'repairs');

  before(async () => {
    chmodSync(root, 0o755);
    const procs = join(root, 'procedures');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    const f = join(procs, 'crasher-repair.yaml');
    writeFileSync(
      f,
      stringify({
        id: 'crasher-repair',
        name: 'Repair the crasher',
        category: 'repair',
        severity: 'medium',
        steps: [{ id: 'note', type: 'command', argv: [NODE, '-e', "require('fs').appendFileSync(process.argv[1], 'repair\\n')", marker] }],
        triggers: { incidents: [{ component: 'crasher' }], cooldownSec: 3600, maxAutoRunsPerDay: 5 },
      }),
    );
    chmodSync(f, 0o644);
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    events = await collect(wms, `edge/${GW}/events`);
    agent = startAgent({
      dataDir,
      gatewayId: GW,
      config: {
        mqtt: { url: broker.url },
        maintenance: { proceduresDir: procs },
        recovery: {
          intervalMs: 200,
          deadlineMs: 1500,
          startTimeoutMs: 15_000,
          healthyMs: 2000,
          stopGraceMs: 2000,
          backoff: { initialMs: 100, maxMs: 400, factor: 2, jitter: 0 },
          // Never escalate to a restore or a rollback here: only incidents matter.
          escalation: { windowMs: 300_000, restoreConfigAfter: 1000, rollbackAfter: 1000, slowRetryAfter: 1000, rollbackWithinMs: 3_600_000 },
          services: [{ name: 'crasher', command: [NODE, SERVICE, 'exit', '3'], probe: { kind: 'process' } }],
        },
      },
    });
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await agent?.kill9().catch(() => undefined);
    await wms?.endAsync();
    await broker?.stop();
  });

  test('the matching procedure runs once for many incidents (cooldown), and the incident names its run', async () => {
    const evs = (): Ev[] => events.map((e) => e.payload as Ev);
    await waitFor(() => evs().filter((e) => e.type === 'incident' && e.component === 'crasher').length >= 4, { timeoutMs: 30_000, what: `four crasher incidents\n${agent.logText().slice(-3000)}` });
    await waitFor(() => evs().some((e) => e.type === 'maintenance-report' && e.procedure === 'crasher-repair'), { timeoutMs: 20_000, what: 'the repair report' });
    // More incidents come; no second run within the cooldown.
    const seen = evs().filter((e) => e.type === 'incident' && e.component === 'crasher').length;
    await waitFor(() => evs().filter((e) => e.type === 'incident' && e.component === 'crasher').length >= seen + 3, { timeoutMs: 30_000, what: 'three more incidents' });
    await new Promise((r) => setTimeout(r, 1000));
    const reports = evs().filter((e) => e.type === 'maintenance-report' && e.procedure === 'crasher-repair');
    assert.equal(reports.length, 1, 'one run within the cooldown');
    assert.equal(readFileSync(marker, 'utf8'), 'repair\n');
    const rep = reports[0]!.report!;
    assert.deepEqual([rep.state, rep.trigger], ['succeeded', 'incident']);
    assert.match(rep.startedBy, /^incident:\d+$/);
    const incidentId = Number(rep.startedBy.split(':')[1]);
    const db = openDatabase(join(dataDir, 'agent.db'), { readonly: true });
    try {
      const inc = new IncidentStore(db).list({ component: 'crasher', limit: 1000 }).find((i) => i.id === incidentId);
      assert.match(inc?.detail ?? '', new RegExp(`repair procedure crasher-repair started as run ${reports[0]!.runId}`));
    } finally {
      db.close();
    }
  });
});

describe('the procedures that ship with the release', () => {
  let gw: PlcGateway;
  let configPath: string;

  before(async () => {
    gw = await startPlcGateway({ gatewayId: 'gw-maint-ship', releases: [] });
    configPath = join(gw.r.root, 'config.yaml');
  });

  after(async () => {
    await gw?.stop();
  });

  const run = async (id: string, procedure: string, params: Record<string, unknown> = {}): Promise<{ status: string; reason?: { code: string }; result?: Ev['report'] }> => {
    await waitFor(() => gw.got.some((m) => m.topic === `${gw.root}/status` && (m.payload as { state: string }).state === 'online'), { timeoutMs: 30_000, what: 'online' });
    gw.wms.publish(`${gw.root}/cmd/maintenance`, JSON.stringify({ id, params: { procedure, params } }), { qos: 1 });
    await waitFor(() => resOf(gw.got, gw.gatewayId, id).some((p) => TERMINAL.includes(p.status)), { timeoutMs: 120_000, what: `${id} terminal: ${JSON.stringify(resOf(gw.got, gw.gatewayId, id))}` });
    return resOf(gw.got, gw.gatewayId, id).find((p) => TERMINAL.includes(p.status)) as never;
  };

  test('plc-bridge-repair hands the bridge over to a fresh process with no gap in the data', { timeout: 180_000 }, async () => {
    const before = await bridgePing(gw.socket);
    assert.equal(before?.role, 'active');
    const t = await run('ship-plc', 'plc-bridge-repair');
    assert.equal(t.status, 'successful', JSON.stringify(t));
    const after = await bridgePing(gw.socket);
    assert.notEqual(after?.pid, before!.pid, 'a fresh bridge process');
    assert.equal(after?.role, 'active');
    const step = t.result!.steps.find((s) => s.id === 'fresh-bridge')!;
    assert.equal(step.outcome, 'ok');
    assert.match(step.message ?? '', /handed over from pid \d+ to pid \d+/);
    await new Promise((r) => setTimeout(r, 1500));
    const fast = dataMessages(gw.got, `${gw.root}/plc/plc0/fast`);
    const report = gapReport(fast, 100);
    assert.ok(fast.length > 50, `data messages: ${fast.length}`);
    assert.deepEqual(report.seqGaps, [], 'no seq gap through the repair');
  });

  test('broker-triage reports the link and the checks, changing nothing', async () => {
    const t = await run('ship-triage', 'broker-triage');
    assert.equal(t.status, 'successful', JSON.stringify(t));
    assert.deepEqual(t.result!.steps.map((s) => [s.id, s.outcome]), [['state', 'ok'], ['connected', 'ok'], ['checks', t.result!.steps[2]!.outcome], ['outbox', 'ok']]);
    const checks = (t.result!.steps[2]!.data as { checks: { group: string }[] }).checks;
    assert.ok(checks.some((c) => c.group === 'connectivity'), 'the connectivity checks ran');
  });

  test('disk-pressure-repair removes the agent\'s leftovers and touches nothing else', async () => {
    const dataDir = join(gw.r.root, 'data');
    const old = Date.now() / 1000 - 3 * 86400;
    // Leftovers: an old support bundle in the temp directory, old temporary files, a fresh one.
    const bundle = join(tmpdir(), `edge-agent-support-gw-maint-ship-${Date.now()}.tar.gz`);
    writeFileSync(bundle, 'x'.repeat(1000));
    utimesSync(bundle, old, old);
    mkdirSync(join(dataDir, 'tmp'), { recursive: true });
    writeFileSync(join(dataDir, 'tmp', 'old.part'), 'y'.repeat(1000));
    utimesSync(join(dataDir, 'tmp', 'old.part'), old, old);
    writeFileSync(join(dataDir, 'tmp', 'fresh.part'), 'z');
    const keep = join(dataDir, 'not-ours.txt');
    writeFileSync(keep, 'keep me');
    utimesSync(keep, old, old);
    const listing = (): string[] => readdirSync(dataDir, { recursive: true }).map(String).filter((n) => !/agent\.db|\.sock|logs|recovery|backups|known-good/.test(n)).sort();
    const beforeList = listing();
    const t = await run('ship-disk', 'disk-pressure-repair', { maxUsedPct: 100 });
    assert.equal(t.status, 'successful', JSON.stringify(t));
    assert.equal(existsSync(bundle), false, 'the old support bundle is gone');
    assert.equal(existsSync(join(dataDir, 'tmp', 'old.part')), false);
    assert.ok(existsSync(join(dataDir, 'tmp', 'fresh.part')), 'a fresh temporary file stays');
    assert.equal(readFileSync(keep, 'utf8'), 'keep me', 'a file that is not the agent\'s stays');
    assert.deepEqual(listing(), beforeList.filter((n) => n !== join('tmp', 'old.part')));
    const cleanup = t.result!.steps.find((s) => s.id === 'temp-files')!;
    assert.match(cleanup.message ?? '', /removed 2 files/);
    const reports = await runCli(['maintenance', 'reports', '--json', '--config', configPath]);
    assert.ok((JSON.parse(reports.stdout) as { reports: { runId: string }[] }).reports.some((r) => r.runId === 'ship-disk'), reports.stderr);
  });
});
