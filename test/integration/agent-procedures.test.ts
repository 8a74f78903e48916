/**
 * Invalid maintenance procedures are never skipped silently (CONTRACT.md section 6), against a
 * real Mosquitto and the real agent: a procedures directory (0755, files 0644, owned by the
 * test's user) with one valid and one invalid file. The `procedure-invalid` event arrives for
 * the invalid one only, with every problem; a second invalid file written while the agent runs
 * makes a second event (fs.watch, well before the periodic re-scan); a restart repeats neither;
 * `edge-agent diag --json` warns about the invalid file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import type { DiagReport } from '../../health/diag/types.js';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { RESCAN_MS } from '../../agent/procedure-watch.js';

const GW = 'gw-procs';

type Ev = Record<string, unknown> & { type?: string; code?: string; file?: string; problems?: { path: string; message: string }[] };

describe('invalid procedures: ~/events and diag', () => {
  let broker: Broker;
  let wms: MqttClient;
  let events: Received[];
  let procs: string;
  let dataDir: string;
  const agents: AgentProcess[] = [];
  const evs = (): Ev[] => events.map((e) => e.payload as Ev);
  const invalid = (): Ev[] => evs().filter((e) => e.type === 'procedure-invalid');
  const started = (): number => evs().filter((e) => e.code === 'agent-started').length;
  const put = (name: string, text: string): string => {
    const f = join(procs, name);
    writeFileSync(f, text, { mode: 0o644 });
    chmodSync(f, 0o644);
    return f;
  };
  const start = async (): Promise<AgentProcess> => {
    const a = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url }, maintenance: { proceduresDir: procs } } });
    agents.push(a);
    await agentConnected(a, 20_000);
    return a;
  };

  before(async () => {
    const root = tempDir('agent-procs-');
    chmodSync(root, 0o755);
    procs = join(root, 'procedures');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    dataDir = join(root, 'data');
    put('good.yaml', stringify({ id: 'good', name: 'Good', steps: [{ id: 'say', type: 'log', message: 'hello' }] }));
    // Two problems: a relative program and a wait without seconds.
    put('broken.yaml', stringify({ id: 'broken', name: 'Broken', steps: [{ id: 'a', type: 'command', argv: ['rm', '-rf', '/tmp/x'] }, { id: 'b', type: 'wait' }] }));
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    events = await collect(wms, `edge/${GW}/events`);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await wms?.endAsync();
    await broker?.stop();
  });

  test('at start: one event for the invalid file only, with every problem; logged at warn', async () => {
    const agent = await start();
    // agent-started is queued after the start scan's events, and the outbox sends in order.
    await waitFor(() => started() === 1, { timeoutMs: 20_000, what: `agent-started\n${JSON.stringify(evs())}` });
    const got = invalid();
    assert.equal(got.length, 1, JSON.stringify(got));
    const ev = got[0]!;
    assert.equal(ev.code, 'invalid-procedure');
    assert.equal(ev.severity, 'warning');
    assert.equal(ev.file, join(procs, 'broken.yaml'));
    assert.equal(ev.procedure, 'broken');
    const paths = (ev.problems ?? []).map((p) => p.path);
    assert.ok(paths.includes('steps[0].argv[0]'), JSON.stringify(ev.problems));
    assert.ok(paths.some((p) => p.startsWith('steps[1]')), JSON.stringify(ev.problems));
    assert.equal(typeof ev.ts, 'string');
    assert.ok(agent.logs.some((l) => typeof l === 'object' && l.level === 40 && l.code === 'invalid-procedure' && l.file === join(procs, 'broken.yaml')), agent.logText().slice(-3000));
  });

  test('a second invalid file written while the agent runs makes a second event', async () => {
    assert.ok(RESCAN_MS >= 60_000, 'the wait below is shorter than the periodic re-scan, so only the watch can pass it');
    put('also-bad.yaml', stringify({ id: 'also-bad', steps: [] }));
    await waitFor(() => invalid().length >= 2, { timeoutMs: 20_000, what: `a second procedure-invalid\n${JSON.stringify(invalid())}` });
    const second = invalid()[1]!;
    assert.equal(second.file, join(procs, 'also-bad.yaml'));
    assert.ok((second.problems ?? []).length >= 2, JSON.stringify(second.problems));
  });

  test('a restart does not announce them again', async () => {
    const before = invalid().length;
    assert.equal(before, 2);
    await agents[0]!.stop();
    await start();
    await waitFor(() => started() === 2, { timeoutMs: 20_000, what: `the second agent-started\n${JSON.stringify(evs())}` });
    assert.equal(invalid().length, before, JSON.stringify(invalid()));
  });

  test('edge-agent diag --json warns about each invalid file, naming it and its first problems', async () => {
    const r = await runCli(['diag', '--json', '--only', 'maintenance', '--config', join(dataDir, 'config.yaml')]);
    const report = JSON.parse(r.stdout) as DiagReport;
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const g = report.groups.find((x) => x.name === 'maintenance');
    assert.ok(g, JSON.stringify(report.groups.map((x) => x.name)));
    assert.equal(g.status, 'warning');
    const byName = Object.fromEntries(g.checks.map((c) => [c.name, c]));
    assert.equal(byName['procedures-dir']?.status, 'ok');
    assert.equal(byName['procedure:broken.yaml']?.status, 'warning');
    assert.match(byName['procedure:broken.yaml']?.message ?? '', /broken\.yaml is invalid .*steps\[0\]\.argv\[0\]/);
    assert.equal(byName['procedure:also-bad.yaml']?.status, 'warning');
    assert.equal(byName['procedure:good.yaml'], undefined);
  });
});
