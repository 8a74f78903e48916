/**
 * Schedules in the real agent, with a real Mosquitto and real files (docs/maintenance.md,
 * "Schedules and maintenance windows"):
 *
 * - the store's checks and backups are the built-in procedures store-check and store-backup on
 *   their schedules (short crons in the test's configuration), with reports; `status` shows each
 *   schedule's last run and the next window, `diag` warns about a schedule whose last run failed;
 * - a scheduled run cut by kill -9 and resumed after the restart (onInterrupt: resume) shows
 *   `running`, then its real outcome, in `maintenance schedule`;
 * - a disruptive procedure on a schedule waits for a window: the window's announcement arrives
 *   on ~/events before it opens, `skip` skips one window, `defer` moves the other (each confirmed
 *   by the agent), the run starts only when the moved window opens, and the retained ~/status
 *   says `maintenance` while it runs and `online` after.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import Database from 'better-sqlite3';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, agentReady, runAgent, runCli, writeAgentConfig, type AgentProcess } from '../helpers/agent.js';

const NODE = process.execPath;
const js = (script: string, ...args: string[]): string[] => [NODE, '-e', script, ...args];
/** The built-in schedules a test does not look at, off so that they never run beside it. */
const QUIET = { 'maintenance-daily': { enabled: false }, 'maintenance-weekly': { enabled: false }, 'maintenance-monthly': { enabled: false } };

interface ScheduleDoc {
  schedules: { procedure: string; nextRun: string | null; lastRun: { slot: string | null; outcome: string | null; runId: string | null; message: string | null } | null }[];
  windows: { id: string; start: string }[];
  notes: string[];
}

let broker: Broker;
let wms: MqttClient;
const root = tempDir('maint-agent-sched-');
const agents: AgentProcess[] = [];

before(async () => {
  chmodSync(root, 0o755);
  broker = await startBroker();
  wms = await mqttClient(broker.url);
});

after(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  await wms?.endAsync();
  await broker?.stop();
  rmSync(root, { recursive: true, force: true });
});

function procDir(name: string): string {
  const d = join(root, name);
  mkdirSync(d, { mode: 0o755 });
  chmodSync(d, 0o755);
  return d;
}

function put(dir: string, id: string, doc: Record<string, unknown>): void {
  const f = join(dir, `${id}.yaml`);
  writeFileSync(f, stringify({ id, name: id, ...doc }));
  chmodSync(f, 0o644);
}

function start(configPath: string, dataDir: string): AgentProcess {
  const a = runAgent(configPath, dataDir);
  agents.push(a);
  return a;
}

async function schedule(configPath: string): Promise<ScheduleDoc> {
  const r = await runCli(['maintenance', 'schedule', '--json', '--config', configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ScheduleDoc;
}

/** A 6-field cron (seconds first) in UTC for one moment of each day: a slot that comes once in a test. */
function onceAt(t: number): string {
  const d = new Date(t);
  return `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} * * *`;
}

test('store checks and backups run as the scheduled procedures store-check and store-backup, with reports; status shows the schedules, diag warns about a failed one', { timeout: 120_000 }, async () => {
  const dataDir = join(root, 'a');
  const procs = procDir('procs-a');
  put(procs, 'always-fails', { steps: [{ id: 'no', type: 'command', argv: js('process.exit(3)') }], schedule: { cron: '*/4 * * * * *' } });
  const configPath = writeAgentConfig(dataDir, 'gw-sched-a', {
    mqtt: { url: broker.url },
    restore: { keepBackups: 2 },
    maintenance: { proceduresDir: procs, schedules: { ...QUIET, 'store-check': { cron: '*/2 * * * * *', jitterSec: 0 }, 'store-backup': { cron: '*/3 * * * * *', jitterSec: 0 } } },
  });
  const agent = start(configPath, dataDir);
  await agentConnected(agent, 20_000);
  const reports = async (): Promise<{ procedure: string; state: string; trigger: string; startedBy: string }[]> => {
    const r = await runCli(['maintenance', 'reports', '--json', '--limit', '200', '--config', configPath]);
    return (JSON.parse(r.stdout) as { reports: { procedure: string; state: string; trigger: string; startedBy: string }[] }).reports;
  };
  await waitFor(async () => {
    const list = await reports();
    return ['store-check', 'store-backup'].every((p) => list.filter((x) => x.procedure === p && x.state === 'succeeded').length >= 3);
  }, { timeoutMs: 60_000, what: `three succeeded runs of store-check and of store-backup\n${agent.logText().slice(-3000)}` });
  const list = await reports();
  for (const p of ['store-check', 'store-backup']) {
    const runs = list.filter((x) => x.procedure === p);
    assert.ok(runs.every((x) => x.trigger === 'schedule' && x.startedBy.startsWith(`schedule:${p}@`)), `${p} runs come from its schedule: ${JSON.stringify(runs)}`);
  }
  // The backups themselves: rotated to restore.keepBackups.
  const backups = readdirSync(join(dataDir, 'backups')).filter((n) => /^store-.+\.db$/.test(n));
  assert.ok(backups.length >= 1 && backups.length <= 2, `store backups kept: ${backups.join(', ')}`);
  // The store keeper's quick_check came from a run (the report's step), not a timer of its own.
  const check = list.find((x) => x.procedure === 'store-check' && x.state === 'succeeded') as { runId?: string } | undefined;
  const rep = await runCli(['maintenance', 'report', check?.runId ?? '', '--json', '--config', configPath]);
  const report = JSON.parse(rep.stdout) as { steps: { id: string; outcome: string; message?: string }[] };
  assert.equal(report.steps[0]?.id, 'quick-check');
  assert.equal(report.steps[0]?.outcome, 'ok', JSON.stringify(report.steps[0]));
  assert.match(report.steps[0]?.message ?? '', /passed quick_check/);

  const doc = await schedule(configPath);
  for (const p of ['store-check', 'store-backup']) {
    const s = doc.schedules.find((x) => x.procedure === p);
    assert.ok(s?.lastRun?.outcome === 'succeeded' || s?.lastRun?.outcome === 'running', `${p}: ${JSON.stringify(s)}`);
  }

  // status (daemon running): each schedule's last run and the next window.
  const st = await runCli(['status', '--json', '--config', configPath]);
  assert.equal(st.code, 0, st.stderr);
  const status = JSON.parse(st.stdout) as { maintenance: { schedules: { procedure: string; lastOutcome: string | null; lastSlot: string | null; nextRun: string | null }[]; nextWindow: { id: string; start: string } | null } };
  const sc = status.maintenance.schedules.find((x) => x.procedure === 'store-check');
  assert.ok(sc?.lastSlot && sc.nextRun, JSON.stringify(sc));
  assert.equal(status.maintenance.nextWindow?.id, 'weekly');
  const text = await runCli(['status', '--config', configPath]);
  assert.match(text.stdout, /^window {6}next weekly /m);
  assert.match(text.stdout, /^ {2}store-backup +next \S+ +last \S+ (succeeded|running)/m);

  // diag: the failed schedule is a warning, with the outcome.
  await waitFor(async () => (await schedule(configPath)).schedules.find((x) => x.procedure === 'always-fails')?.lastRun?.outcome === 'failed', { timeoutMs: 20_000, what: 'always-fails failed' });
  const d = await runCli(['diag', '--json', '--only', 'maintenance', '--config', configPath]);
  const g = (JSON.parse(d.stdout) as { groups: { name: string; checks: { name: string; status: string; message: string }[] }[] }).groups.find((x) => x.name === 'maintenance');
  const w = g?.checks.find((c) => c.name === 'schedule:always-fails');
  assert.equal(w?.status, 'warning', JSON.stringify(g?.checks));
  assert.match(w?.message ?? '', /the last scheduled run of always-fails ended failed/);
  assert.equal(g?.checks.some((c) => c.name === 'schedule:store-check'), false, 'store-check is fine');
  // By hand, like any procedure.
  const byHand = await runCli(['maintenance', 'run', 'store-backup', '--json', '--config', configPath]);
  assert.equal(byHand.code, 0, byHand.stdout + byHand.stderr);
  const handReport = JSON.parse(byHand.stdout) as { state: string; steps: { id: string; outcome: string; message?: string }[] };
  assert.equal(handReport.state, 'succeeded');
  assert.match(handReport.steps[0]?.message ?? '', /^backup .*store-.*\.db/);
  await agent.stop();

  // Overdue: the store says store-check last ran 3 hours ago (the agent was down since); diag,
  // with no daemon, warns that its slots passed and nothing ran.
  const db = new Database(join(dataDir, 'agent.db'));
  const past = Date.now() - 3 * 3_600_000;
  db.prepare("UPDATE maintenance_schedules SET since = ?, handled_slot = ?, last_slot = ?, outcome = 'succeeded' WHERE procedure = 'store-check'").run(past, past, past);
  db.close();
  const d2 = await runCli(['diag', '--json', '--only', 'maintenance', '--config', configPath]);
  const g2 = (JSON.parse(d2.stdout) as { groups: { name: string; checks: { name: string; status: string; message: string }[] }[] }).groups.find((x) => x.name === 'maintenance');
  const over = g2?.checks.find((c) => c.name === 'schedule:store-check');
  assert.equal(over?.status, 'warning', JSON.stringify(g2?.checks));
  assert.match(over?.message ?? '', /the schedule of store-check is overdue: its slot of \S+ has not run/);
});

test('a scheduled run cut by kill -9 and resumed after the restart shows running, then its real outcome', { timeout: 120_000 }, async () => {
  const dataDir = join(root, 'b');
  const procs = procDir('procs-b');
  const work = join(root, 'work-b');
  mkdirSync(work);
  const slot = Date.now() + 6000;
  put(procs, 'resumable', {
    onInterrupt: 'resume',
    steps: [
      { id: 'mark', type: 'command', argv: js("require('fs').appendFileSync(process.argv[1] + '/order', 'mark\\n')", work) },
      { id: 'wait', type: 'command', timeoutSec: 60, argv: js("require('fs').appendFileSync(process.argv[1] + '/order', 'wait\\n'); setTimeout(() => {}, 4000)", work) },
      { id: 'done', type: 'command', argv: js("require('fs').appendFileSync(process.argv[1] + '/order', 'done\\n')", work) },
    ],
    schedule: { cron: onceAt(slot), timezone: 'UTC' },
  });
  const configPath = writeAgentConfig(dataDir, 'gw-sched-b', { mqtt: { url: broker.url }, maintenance: { proceduresDir: procs, schedules: QUIET } });
  const order = (): string[] => (existsSync(join(work, 'order')) ? readFileSync(join(work, 'order'), 'utf8').trim().split('\n') : []);
  const a = start(configPath, dataDir);
  await agentReady(a, 20_000);
  await waitFor(() => order().includes('wait'), { timeoutMs: 30_000, what: `the scheduled run at its wait step\n${a.logText().slice(-3000)}` });
  await a.kill9();
  const cut = (await schedule(configPath)).schedules.find((x) => x.procedure === 'resumable');
  assert.equal(cut?.lastRun?.outcome, 'running', 'committed as running');
  const runId = cut?.lastRun?.runId;
  assert.ok(runId);

  const b = start(configPath, dataDir);
  await agentReady(b, 20_000);
  // While the resumed run goes on (its wait step again: 4 s), the schedule says running.
  const during = (await schedule(configPath)).schedules.find((x) => x.procedure === 'resumable');
  assert.equal(order().includes('done'), false, 'still going');
  assert.equal(during?.lastRun?.outcome, 'running', `not interrupted: ${JSON.stringify(during)}`);
  await waitFor(() => order().includes('done'), { timeoutMs: 30_000, what: `the resumed run done\n${b.logText().slice(-3000)}` });
  await waitFor(async () => (await schedule(configPath)).schedules.find((x) => x.procedure === 'resumable')?.lastRun?.outcome === 'succeeded', {
    timeoutMs: 10_000,
    what: `the schedule shows the resumed run's outcome: ${JSON.stringify((await schedule(configPath)).schedules.find((x) => x.procedure === 'resumable'))}`,
  });
  const end = (await schedule(configPath)).schedules.find((x) => x.procedure === 'resumable');
  assert.equal(end?.lastRun?.runId, runId, 'the same run, resumed');
  const rep = JSON.parse((await runCli(['maintenance', 'report', runId, '--json', '--config', configPath])).stdout) as { state: string };
  assert.equal(rep.state, 'succeeded');
  await b.stop();
});

test('a disruptive scheduled procedure waits for a window: announced before it, skip skips one, defer moves the other, ~/status says maintenance during the run and online after', { timeout: 150_000 }, async () => {
  const gw = 'gw-sched-c';
  const dataDir = join(root, 'c');
  const procs = procDir('procs-c');
  const work = join(root, 'work-c');
  mkdirSync(work);
  put(procs, 'disrupt', {
    disruptive: true,
    steps: [{ id: 'work', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/ran', String(Date.now())); setTimeout(() => {}, 3000)", work) }],
    schedule: { cron: '*/5 * * * * *' },
  });
  const events: Received[] = await collect(wms, `edge/${gw}/events`);
  const results: Received[] = await collect(wms, `edge/${gw}/res/+`);
  const statuses: { state: string; at: number }[] = [];
  wms.on('message', (topic, payload) => {
    if (topic === `edge/${gw}/status`) statuses.push({ state: (JSON.parse(payload.toString()) as { state: string }).state, at: Date.now() });
  });
  await wms.subscribeAsync(`edge/${gw}/status`, { qos: 1 });
  // Two windows: `first` opens in 25 s (it will be skipped), `second` in 45 s (deferred by 10 s).
  const t0 = Date.now();
  const first = Math.ceil((t0 + 25_000) / 1000) * 1000;
  const second = first + 20_000;
  const configPath = writeAgentConfig(dataDir, gw, {
    mqtt: { url: broker.url },
    maintenance: {
      proceduresDir: procs,
      schedules: QUIET,
      windows: [
        { id: 'first', cron: onceAt(first), durationSec: 60, timezone: 'UTC' },
        { id: 'second', cron: onceAt(second), durationSec: 60, timezone: 'UTC' },
      ],
      announceSec: 12,
    },
  });
  const agent = start(configPath, dataDir);
  await agentConnected(agent, 20_000);
  const win = (id: string, action: string): Record<string, unknown> | undefined =>
    events.map((e) => e.payload as Record<string, unknown>).find((e) => e.type === 'maintenance-window' && e.id === id && e.action === action);
  const answer = async (cmd: string, window: Record<string, unknown>): Promise<Record<string, unknown>> => {
    await wms.publishAsync(`edge/${gw}/cmd/maintenance`, JSON.stringify({ id: cmd, params: { window } }), { qos: 1 });
    await waitFor(() => results.some((r) => (r.payload as { id: string; status: string }).id === cmd && ['successful', 'rejected', 'failed'].includes((r.payload as { status: string }).status)), { timeoutMs: 10_000, what: `${cmd} answered` });
    return results.map((r) => r.payload as Record<string, unknown>).find((r) => r.id === cmd && r.status !== 'accepted' && r.status !== 'executing')!;
  };

  // The disruptive slots outside a window wait for it.
  await waitFor(async () => (await schedule(configPath)).schedules.find((x) => x.procedure === 'disrupt')?.lastRun?.outcome === 'waiting-window', { timeoutMs: 20_000, what: 'disrupt waits for a window' });
  // `first` announced before it opens, with the procedure planned in it; skipped, and confirmed.
  await waitFor(() => win('first', 'announced') !== undefined, { timeoutMs: 30_000, what: `first announced\n${JSON.stringify(events.map((e) => e.payload))}` });
  const announced = win('first', 'announced')!;
  assert.equal(announced.start, new Date(first).toISOString());
  assert.ok(Date.now() < first, 'the announcement arrived before the window');
  assert.deepEqual(announced.procedures, ['disrupt']);
  const skipped = await answer('skip-1', { id: 'first', action: 'skip' });
  assert.equal(skipped.status, 'successful', JSON.stringify(skipped));
  await waitFor(() => win('first', 'skipped') !== undefined, { timeoutMs: 10_000, what: 'the skip confirmed on ~/events' });
  // `second` announced; deferred by 10 s, and confirmed with its new start.
  await waitFor(() => win('second', 'announced') !== undefined, { timeoutMs: 40_000, what: 'second announced' });
  assert.ok(Date.now() < second, 'announced before the window');
  const deferred = await answer('defer-1', { id: 'second', action: 'defer', bySec: 10 });
  assert.equal(deferred.status, 'successful', JSON.stringify(deferred));
  assert.equal((deferred.result as { start: string }).start, new Date(second + 10_000).toISOString());
  await waitFor(() => win('second', 'deferred') !== undefined, { timeoutMs: 10_000, what: 'the defer confirmed on ~/events' });
  assert.equal(win('second', 'deferred')?.start, new Date(second + 10_000).toISOString());
  assert.equal(existsSync(join(work, 'ran')), false, 'nothing disruptive ran in the skipped window');

  // The run: only once the moved window opens; ~/status maintenance during it, online after.
  await waitFor(() => existsSync(join(work, 'ran')), { timeoutMs: 40_000, what: `disrupt ran\n${agent.logText().slice(-3000)}` });
  const ranAt = Number(readFileSync(join(work, 'ran'), 'utf8'));
  assert.ok(ranAt >= second + 10_000, `started at ${new Date(ranAt).toISOString()}, the deferred window opens at ${new Date(second + 10_000).toISOString()}`);
  await waitFor(() => statuses.some((s) => s.state === 'maintenance'), { timeoutMs: 10_000, what: `~/status maintenance: ${JSON.stringify(statuses)}` });
  await waitFor(async () => (await schedule(configPath)).schedules.find((x) => x.procedure === 'disrupt')?.lastRun?.outcome === 'succeeded', { timeoutMs: 20_000, what: 'disrupt succeeded' });
  await waitFor(() => statuses.at(-1)?.state === 'online', { timeoutMs: 10_000, what: `~/status online after: ${JSON.stringify(statuses)}` });
  const m = statuses.findIndex((s) => s.state === 'maintenance');
  assert.ok(statuses.slice(m).some((s) => s.state === 'online'), 'online after maintenance');
  assert.ok(win('second', 'started'), 'the window started');
  // A fresh subscriber gets the retained status: online.
  const late = await mqttClient(broker.url);
  const got = await collect(late, `edge/${gw}/status`);
  await waitFor(() => got.length > 0, { timeoutMs: 5000, what: 'the retained status' });
  assert.equal((got[0]?.payload as { state: string }).state, 'online');
  assert.equal(got[0]?.retain, true);
  await late.endAsync();
  await agent.stop();
});
