/**
 * The watchdog in the real agent, against a real Mosquitto, with real detached child processes
 * (test/fixtures/service.ts) declared as services in its configuration:
 *
 * - `crasher` exits at once, forever: restarts follow the backoff schedule, the escalation steps
 *   come in order, one alarm is raised and stays raised (event, `status --json`), the rest of the
 *   agent keeps working (a `diagnostics` command is answered).
 * - `steady` is killed with -9 once: restarted, the incident recorded and resolved, listed by
 *   `edge-agent incidents --json`.
 * - `sleeper` is SIGSTOPped: its heartbeat stops, it is found hung within the deadline, killed
 *   and restarted.
 * - The broker stopped for 15 s (shorter than the 2 minutes, to keep the file near a
 *   minute): no component is restarted.
 * - The agent killed with -9 and started again: the services keep running and are adopted, the
 *   crash loop is remembered (still level 3, no second alarm).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, agentReady, REPO, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';
import { openDatabase } from '../../lib/sqlite.js';
import { IncidentStore, type Incident } from '../../recovery/incidents.js';
import type { ComponentStatus } from '../../recovery/supervisor.js';

const SERVICE = join(REPO, 'dist', 'test', 'fixtures', 'service.js');
const GW = 'gw-rec';
const INTERVAL_MS = 200;
const DEADLINE_MS = 1500;
const SLOW_RETRY_MS = 1500;
const OUTAGE_MS = 15_000;

interface Ev {
  type: string;
  code: string;
  component?: string;
  cause?: string;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

describe('the watchdog in a real agent', () => {
  let broker: Broker;
  let wms: MqttClient;
  let events: Received[];
  let dir: string;
  let dataDir: string;
  let config: Record<string, unknown>;
  const agents: AgentProcess[] = [];
  let agent: AgentProcess;

  const incidents = (component: string): Incident[] => {
    const db = openDatabase(join(dataDir, 'agent.db'), { readonly: true });
    try {
      const s = new IncidentStore(db);
      return s.available() ? s.list({ component, limit: 1000 }).reverse() : [];
    } finally {
      db.close();
    }
  };
  const components = async (): Promise<Record<string, ComponentStatus>> => {
    const s = (await agent.admin('status')) as { components?: ComponentStatus[] };
    return Object.fromEntries((s.components ?? []).map((c) => [c.name, c]));
  };
  const eventsOf = (type: string, component: string): Ev[] => events.map((e) => e.payload as Ev).filter((e) => e.type === type && e.component === component);

  before(async () => {
    broker = await startBroker();
    dir = tempDir('recovery');
    dataDir = join(dir, 'data');
    const svc = (name: string, args: string[], probe: Record<string, unknown>): Record<string, unknown> => ({ name, command: [process.execPath, SERVICE, ...args], probe });
    config = {
      mqtt: { url: broker.url },
      recovery: {
        intervalMs: INTERVAL_MS,
        deadlineMs: DEADLINE_MS,
        startTimeoutMs: 15_000,
        healthyMs: 2000,
        stopGraceMs: 2000,
        hungGraceMs: 500,
        backoff: { initialMs: 100, maxMs: 800, factor: 2, jitter: 0 },
        escalation: { windowMs: 300_000, restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 7, rollbackWithinMs: 3_600_000 },
        slowRetryMs: SLOW_RETRY_MS,
        services: [
          svc('crasher', ['exit', '3'], { kind: 'process' }),
          svc('steady', ['serve', join(dir, 'steady.sock')], { kind: 'heartbeat', socket: join(dir, 'steady.sock') }),
          svc('sleeper', ['serve', join(dir, 'sleeper.sock')], { kind: 'heartbeat', socket: join(dir, 'sleeper.sock') }),
        ],
      },
    };
    wms = await mqttClient(broker.url);
    events = await collect(wms, `edge/${GW}/events`);
    agent = startAgent({ dataDir, gatewayId: GW, config });
    agents.push(agent);
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.kill9()));
    // The services are detached on purpose: they outlive the agent. Their pid files say who they are.
    const piddir = join(dataDir, 'recovery');
    for (const f of readdirSync(piddir).filter((n) => n.endsWith('.pid'))) {
      const pid = (JSON.parse(readFileSync(join(piddir, f), 'utf8')) as { pid: number }).pid;
      for (const sig of ['SIGKILL', 'SIGCONT'] as const) {
        try {
          process.kill(-pid, sig);
        } catch {
          /* gone */
        }
      }
    }
    await wms?.endAsync();
    await broker?.stop();
  });

  test('a component that exits at once, forever: backoff schedule, escalation in order, one alarm that stays, the agent keeps working', async () => {
    await waitFor(() => incidents('crasher').length >= 9, { timeoutMs: 40_000, intervalMs: 200, what: `9 incidents of crasher\n${agent.logText().slice(-3000)}` });
    const list = incidents('crasher');
    assert.deepEqual(
      list.slice(0, 9).map((i) => i.action),
      ['restart', 'restart', 'restore-config', 'restart', 'rollback-skipped', 'restart', 'alarm', 'slow-retry', 'slow-retry'],
    );
    assert.deepEqual(
      list.slice(0, 9).map((i) => i.level),
      [0, 0, 1, 1, 2, 2, 3, 3, 3],
    );
    const delays = list.map((i) => Number(/next start in (\d+) ms/.exec(i.detail ?? '')?.[1]));
    assert.deepEqual(delays.slice(0, 9), [100, 200, 400, 800, 800, 800, SLOW_RETRY_MS, SLOW_RETRY_MS, SLOW_RETRY_MS]);
    for (let k = 0; k + 1 < list.length; k++) {
      const gap = Date.parse(list[k + 1]!.at) - Date.parse(list[k]!.at);
      assert.ok(gap >= delays[k]!, `failure ${k + 2} came ${gap} ms after failure ${k + 1}, before its backoff of ${delays[k]} ms was over`);
    }
    for (const i of list) {
      assert.equal(i.cause, 'exited');
      assert.equal(i.exitCode, 3);
    }
    assert.match(list[2]!.detail ?? '', /no known-good configuration/);
    // The last log lines are kept, secrets masked.
    const logText = list.flatMap((i) => i.lastLog).join('\n');
    assert.match(logText, /cannot open \/dev\/fixture/);
    assert.match(logText, /password=\[redacted\]/);
    assert.doesNotMatch(logText, /hunter2|s3cr3t/);

    // One alarm, raised once, still raised after more slow retries.
    await waitFor(() => eventsOf('alarm', 'crasher').length === 1, { timeoutMs: 10_000, what: 'the alarm event' });
    const n = incidents('crasher').length;
    await waitFor(() => incidents('crasher').length >= n + 2, { timeoutMs: 4 * SLOW_RETRY_MS + 10_000, what: 'two more slow retries' });
    assert.equal(eventsOf('alarm', 'crasher').length, 1, 'the alarm is raised once');
    assert.equal(eventsOf('alarm-cleared', 'crasher').length, 0);
    assert.ok(eventsOf('incident', 'crasher').length >= 9, 'each incident is an event');

    const st = await runCli(['status', '--json', '--config', agent.configPath]);
    assert.equal(st.code, 0, st.stderr);
    const crasher = (JSON.parse(st.stdout) as { components: ComponentStatus[] }).components.find((c) => c.name === 'crasher');
    assert.ok(crasher?.alarm, `crasher has its alarm in status --json: ${st.stdout}`);
    assert.equal(crasher.level, 3);
    assert.ok(crasher.restarts >= 10, `restarts ${crasher.restarts}`);
    assert.equal(crasher.lastFailure?.exitCode, 3);

    // The rest of the agent works: a command is answered.
    const res = await collect(wms, `edge/${GW}/res/diag-rec`);
    await wms.publishAsync(`edge/${GW}/cmd/diagnostics`, JSON.stringify({ id: 'diag-rec' }), { qos: 1 });
    await waitFor(() => res.some((m) => (m.payload as { status?: string }).status === 'successful'), { timeoutMs: 15_000, what: 'the diagnostics command answered' });
  });

  test('a component killed with -9 is restarted; the incident is recorded, resolved and listed by `edge-agent incidents`', async () => {
    const before = (await components()).steady!;
    assert.equal(before.state, 'running');
    const old = before.pid!;
    process.kill(old, 'SIGKILL');
    await waitFor(async () => {
      const c = (await components()).steady;
      return c?.state === 'running' && c.pid !== old;
    }, { timeoutMs: 15_000, what: 'steady running again with a new pid' });
    const [inc] = incidents('steady');
    assert.equal(inc?.cause, 'exited');
    assert.equal(inc.signal, 'SIGKILL');
    assert.equal(inc.action, 'restart');
    // Resolved once it has stayed healthy for healthyMs.
    await waitFor(() => incidents('steady')[0]?.resolvedAt != null, { timeoutMs: 15_000, what: 'the incident resolved' });
    const cli = await runCli(['incidents', '--json', '--component', 'steady', '--since', '1h', '--config', agent.configPath]);
    assert.equal(cli.code, 0, cli.stderr);
    const listed = (JSON.parse(cli.stdout) as { incidents: Incident[] }).incidents;
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.signal, 'SIGKILL');
    assert.ok(listed[0]!.recoveryMs !== null && listed[0]!.recoveryMs >= 0 && listed[0]!.recoveryMs < 15_000, `recoveryMs ${listed[0]!.recoveryMs}`);
    await waitFor(() => eventsOf('recovery', 'steady').length === 1, { timeoutMs: 10_000, what: 'the recovery event' });
    assert.ok(eventsOf('incident', 'steady').some((e) => e.code === 'component-exited'));
    const text = await runCli(['incidents', '--component', 'steady', '--config', agent.configPath]);
    assert.match(text.stdout, /steady {2}exited SIGKILL {2}-> restart/);
  });

  test('the `restart` command restarts a declared service: a new process, an incident `requested`, no failure', async () => {
    const before = (await components()).steady!;
    const res = await collect(wms, `edge/${GW}/res/restart-steady`);
    await wms.publishAsync(`edge/${GW}/cmd/restart`, JSON.stringify({ id: 'restart-steady', params: { component: 'steady' } }), { qos: 1 });
    await waitFor(() => res.some((m) => (m.payload as { status?: string }).status === 'successful'), { timeoutMs: 15_000, what: 'the restart command successful' });
    assert.deepEqual((res.find((m) => (m.payload as { status?: string }).status === 'successful')!.payload as { result: unknown }).result, { component: 'steady' });
    await waitFor(async () => (await components()).steady?.state === 'running', { timeoutMs: 10_000, what: 'steady running' });
    const now = (await components()).steady!;
    assert.notEqual(now.pid, before.pid);
    assert.equal(now.restarts, before.restarts + 1);
    assert.equal(now.level, 0);
    assert.equal(incidents('steady').at(-1)?.cause, 'requested');
    await waitFor(() => !alive(before.pid!), { timeoutMs: 5000, what: 'the old process gone' });
  });

  test('a hung component (SIGSTOP) is found by its heartbeat within the deadline, killed and restarted', async () => {
    const before = (await components()).sleeper!;
    assert.equal(before.state, 'running');
    const old = before.pid!;
    const stoppedAt = Date.now();
    process.kill(old, 'SIGSTOP');
    await waitFor(() => incidents('sleeper').length > 0, { timeoutMs: DEADLINE_MS + 15_000, what: 'the hang detected' });
    const [inc] = incidents('sleeper');
    assert.equal(inc?.cause, 'hung');
    const after = Date.parse(inc.at) - stoppedAt;
    // The deadline counts from the last answered ping, at most one interval (plus its answer) before the stop.
    assert.ok(after >= DEADLINE_MS - INTERVAL_MS - 200, `found hung ${after} ms after the stop: before the deadline`);
    assert.ok(after <= DEADLINE_MS + 10_000, `found hung ${after} ms after the stop`);
    await waitFor(async () => {
      const c = (await components()).sleeper;
      return c?.state === 'running' && c.pid !== old;
    }, { timeoutMs: 15_000, what: 'sleeper running again' });
    await waitFor(() => !alive(old), { timeoutMs: 5000, what: `the hung process ${old} killed` });
  });

  test(`the broker stopped for ${OUTAGE_MS / 1000} s: no component is restarted`, async () => {
    const before = await components();
    const counts = { steady: incidents('steady').length, sleeper: incidents('sleeper').length };
    await broker.stop();
    await waitFor(async () => ((await agent.admin('status')) as { broker: { connected: boolean } }).broker.connected === false, { timeoutMs: 10_000, what: 'the agent disconnected' });
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    const during = await components();
    await broker.restart();
    await agentConnected(agent, 30_000);
    for (const name of ['steady', 'sleeper'] as const) {
      assert.equal(during[name]?.state, 'running', `${name} during the outage`);
      assert.equal(during[name]?.pid, before[name]?.pid, `${name} kept its process`);
      assert.equal(during[name]?.restarts, before[name]?.restarts, `${name} was not restarted`);
      assert.equal(incidents(name).length, counts[name], `no incident for ${name}`);
    }
  });

  test('the agent killed with -9 and started again: the services are adopted, the crash loop is remembered', async () => {
    const before = await components();
    const alarms = eventsOf('alarm', 'crasher').length;
    await agent.kill9();
    assert.ok(alive(before.steady!.pid!) && alive(before.sleeper!.pid!), 'the detached services outlive the agent');
    agent = startAgent({ dataDir, gatewayId: GW, config });
    agents.push(agent);
    await agentReady(agent, 20_000);
    await waitFor(async () => {
      const c = await components();
      return c.steady?.state === 'running' && c.sleeper?.state === 'running';
    }, { timeoutMs: 15_000, what: 'the services adopted' });
    const now = await components();
    assert.equal(now.steady?.pid, before.steady?.pid, 'steady adopted, not started again');
    assert.equal(now.sleeper?.pid, before.sleeper?.pid, 'sleeper adopted, not started again');
    assert.equal(now.crasher?.level, 3, 'the crash loop is remembered');
    assert.ok(now.crasher?.alarm, 'its alarm is still raised');
    const n = incidents('crasher').length;
    await waitFor(() => incidents('crasher').length >= n + 1, { timeoutMs: 4 * SLOW_RETRY_MS + 10_000, what: 'a slow retry after the restart' });
    assert.equal(incidents('crasher').at(-1)?.action, 'slow-retry');
    await agentConnected(agent, 20_000);
    assert.equal(eventsOf('alarm', 'crasher').length, alarms, 'no second alarm');
  });
});
