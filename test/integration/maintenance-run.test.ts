/**
 * Procedures run by the real agent (docs/maintenance.md), with a real Mosquitto, real child
 * processes and real files: success with a command, a check and a validation; a failing step
 * that rolls back; a dry run that creates nothing; pause, resume and cancel during a long
 * command step (its process group is gone); confirm answered yes, no and timed out; an update
 * waiting in the one queue behind a procedure, by priority, and `busy` when the queue is full;
 * bad input refused with its own code and nothing run; the command line.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, processGone, procState, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, runCli, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-maint';
const NODE = process.execPath;

interface Res {
  id: string;
  op: string;
  status: string;
  progress?: { step: string; percent?: number };
  reason?: { code: string; message: string };
  result?: Record<string, unknown> & { steps?: { id: string; outcome: string; output?: string; exitCode?: number | null; validation?: { ok: boolean } }[]; rollback?: { executed: boolean; steps: { id: string; outcome: string }[] } };
}



/** A node one-liner as a command step's argv (argv[0] is absolute, the script is literal). */
const js = (script: string, ...args: string[]): string[] => [NODE, '-e', script, ...args];

describe('maintenance procedures run by the agent', () => {
  let broker: Broker;
  let wms: MqttClient;
  let results: Received[];
  let events: Received[];
  let agent: AgentProcess;
  let procs: string;
  let work: string;
  const root = tempDir('maint-run-');

  const put = (id: string, doc: Record<string, unknown>, mode = 0o644): string => {
    const f = join(procs, `${id}.yaml`);
    writeFileSync(f, stringify({ id, name: id, ...doc }));
    chmodSync(f, mode);
    return f;
  };
  const statuses = (id: string): Res[] => results.map((r) => r.payload as Res).filter((p) => p.id === id);
  const terminal = async (id: string, timeoutMs = 30_000): Promise<Res> => {
    await waitFor(() => statuses(id).some((s) => ['successful', 'failed', 'cancelled', 'rejected'].includes(s.status)), { timeoutMs, what: `${id} terminal\n${JSON.stringify(statuses(id))}\n${agent.logText().slice(-4000)}` });
    return statuses(id).find((s) => ['successful', 'failed', 'cancelled', 'rejected'].includes(s.status))!;
  };
  const send = async (op: string, id: string, params: unknown, extra: Record<string, unknown> = {}): Promise<void> => {
    await wms.publishAsync(`edge/${GW}/cmd/${op}`, JSON.stringify({ id, params, ...extra }), { qos: 1 });
  };
  const stepSeen = (id: string, step: string): Promise<void> => waitFor(() => statuses(id).some((s) => s.progress?.step === step), { timeoutMs: 20_000, what: `${id} at step ${step}: ${JSON.stringify(statuses(id))}` });

  before(async () => {
    chmodSync(root, 0o755);
    procs = join(root, 'procedures');
    work = join(root, 'work');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    mkdirSync(work);
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    results = await collect(wms, `edge/${GW}/res/+`);
    events = await collect(wms, `edge/${GW}/events`);
    put('write-and-check', {
      disruptive: false,
      params: { file: { type: 'string', pattern: '^/[A-Za-z0-9_./-]{1,200}$' }, text: { type: 'string', maxLength: 100, default: 'hello' } },
      steps: [
        { id: 'write', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1], process.argv[2]); console.log('wrote', process.argv[1])", '{{params.file}}', '{{params.text}}'), validate: { check: { metric: 'broker.connected', op: '==', value: true } } },
        { id: 'connected', type: 'check', check: { metric: 'broker.connected', op: '==', value: true } },
        { id: 'note', type: 'log', message: 'done' },
      ],
      successCriteria: [{ name: 'the agent is connected', check: { metric: 'broker.connected', op: '==', value: true } }],
    });
    put('fails-and-rolls-back', {
      params: { dir: { type: 'string', pattern: '^/[A-Za-z0-9_./-]{1,200}$' } },
      steps: [
        { id: 'first', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/first', '1')", '{{params.dir}}') },
        { id: 'breaks', type: 'command', argv: js('process.exit(3)'), onFailure: 'rollback' },
        { id: 'never', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/never', '1')", '{{params.dir}}') },
      ],
      rollback: [
        { id: 'undo-first', type: 'command', argv: js("require('fs').rmSync(process.argv[1] + '/first'); require('fs').appendFileSync(process.argv[1] + '/order', 'undo-first\\n')", '{{params.dir}}') },
        { id: 'undo-more', type: 'command', argv: js("require('fs').appendFileSync(process.argv[1] + '/order', 'undo-more\\n')", '{{params.dir}}') },
      ],
    });
    put('long', {
      params: { dir: { type: 'string', pattern: '^/[A-Za-z0-9_./-]{1,200}$' } },
      steps: [
        { id: 'mark', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/mark', '1')", '{{params.dir}}') },
        // Writes its pid, starts a grandchild in its group, then sleeps.
        { id: 'sleep', type: 'command', timeoutSec: 120, argv: js("const cp=require('child_process'); const c=cp.spawn(process.execPath,['-e','setTimeout(()=>{},600000)'],{stdio:'ignore'}); require('fs').writeFileSync(process.argv[1] + '/pids', process.pid + ' ' + c.pid); setTimeout(()=>{},600000)", '{{params.dir}}') },
        { id: 'after', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/after', '1')", '{{params.dir}}') },
      ],
      rollback: [{ id: 'cleanup', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/rolled-back', '1')", '{{params.dir}}') }],
    });
    put('pausable', {
      params: { dir: { type: 'string', pattern: '^/[A-Za-z0-9_./-]{1,200}$' } },
      steps: [
        { id: 'one', type: 'command', argv: js("setTimeout(()=>require('fs').writeFileSync(process.argv[1] + '/one', '1'), 1500)", '{{params.dir}}') },
        { id: 'two', type: 'command', argv: js("require('fs').writeFileSync(process.argv[1] + '/two', '1')", '{{params.dir}}') },
      ],
    });
    put('ask', {
      params: { ttl: { type: 'integer', min: 1, max: 600, default: 60 } },
      steps: [
        { id: 'question', type: 'confirm', message: 'Stop the sorter?', ttlSec: 2 },
        { id: 'after', type: 'log', message: 'confirmed' },
      ],
    });
    put('ask-long', { steps: [{ id: 'q', type: 'confirm', message: 'Go on?', ttlSec: 120 }, { id: 'after', type: 'log', message: 'yes' }] });
    put('broken', { steps: [{ id: 'a', type: 'command', argv: ['rm', '-rf', '/'] }, { id: 'b', type: 'action', action: 'format-disk' }] });
    agent = startAgent({ dataDir: join(root, 'data'), gatewayId: GW, config: { mqtt: { url: broker.url }, maintenance: { proceduresDir: procs }, commands: { maxQueued: 1 } } });
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await agent?.stop().catch(() => undefined);
    await wms?.endAsync();
    await broker?.stop();
  });

  test('a run with a command, a check and a validation succeeds; its report says exactly what ran', async () => {
    const file = join(work, 'ok.txt');
    await send('maintenance', 'ok-1', { procedure: 'write-and-check', params: { file, text: 'hi there' } });
    const t = await terminal('ok-1');
    assert.equal(t.status, 'successful', JSON.stringify(t));
    assert.equal(readFileSync(file, 'utf8'), 'hi there');
    const r = t.result!;
    const sha = (await import('node:crypto')).createHash('sha256').update(readFileSync(join(procs, 'write-and-check.yaml'))).digest('hex');
    assert.deepEqual([r.runId, r.procedure, r.definitionSha256, r.trigger, r.startedBy, r.dryRun, r.state, r.ok], ['ok-1', 'write-and-check', sha, 'wms', 'ok-1', false, 'succeeded', true]);
    assert.deepEqual(r.params, { file, text: 'hi there' });
    assert.deepEqual(r.steps!.map((s) => [s.id, s.outcome]), [['write', 'ok'], ['connected', 'ok'], ['note', 'ok']]);
    assert.equal(r.steps![0]!.exitCode, 0);
    assert.match(r.steps![0]!.output!, /wrote/);
    assert.equal(r.steps![0]!.validation?.ok, true);
    assert.deepEqual([r.stepsTotal, r.stepsOk, r.stepsFailed, r.successCriteriaOk], [3, 3, 0, true]);
    // Progress names the step ids, with a percentage.
    assert.ok(statuses('ok-1').some((s) => s.progress?.step === 'write' && typeof s.progress.percent === 'number'));
    await waitFor(() => events.some((e) => (e.payload as { type?: string; runId?: string }).type === 'maintenance-report' && (e.payload as { runId?: string }).runId === 'ok-1'), { timeoutMs: 10_000, what: 'maintenance-report event' });
    const ev = events.map((e) => e.payload as { type?: string; runId?: string; report?: { state: string } }).find((e) => e.type === 'maintenance-report' && e.runId === 'ok-1')!;
    assert.equal(ev.report?.state, 'succeeded');
  });

  test('a failing step with onFailure: rollback runs the rollback steps in order and ends rolled-back', async () => {
    const dir = join(work, 'rb');
    mkdirSync(dir);
    await send('maintenance', 'rb-1', { procedure: 'fails-and-rolls-back', params: { dir } });
    const t = await terminal('rb-1');
    assert.deepEqual([t.status, t.reason?.code], ['failed', 'rolled-back'], JSON.stringify(t));
    const r = t.result!;
    assert.equal(r.state, 'rolled-back');
    assert.deepEqual(r.steps!.map((s) => [s.id, s.outcome]), [['first', 'ok'], ['breaks', 'failed'], ['never', 'skipped']]);
    assert.equal(r.steps![1]!.exitCode, 3);
    assert.deepEqual(r.rollback!.steps.map((s) => [s.id, s.outcome]), [['undo-first', 'ok'], ['undo-more', 'ok']]);
    assert.equal(existsSync(join(dir, 'first')), false, 'the rollback undid the first step');
    assert.equal(existsSync(join(dir, 'never')), false);
    assert.equal(readFileSync(join(dir, 'order'), 'utf8'), 'undo-first\nundo-more\n');
    // The stored report is the one the WMS got.
    const stored = await runCli(['maintenance', 'report', 'rb-1', '--json', '--config', agent.configPath]);
    assert.deepEqual(JSON.parse(stored.stdout), r);
  });

  test('a dry run creates nothing: the command step is reported would-run', async () => {
    const file = join(work, 'dry.txt');
    await send('maintenance', 'dry-1', { procedure: 'write-and-check', params: { file }, dryRun: true });
    const t = await terminal('dry-1');
    assert.equal(t.status, 'successful', JSON.stringify(t));
    assert.equal(existsSync(file), false, 'the dry run never ran the command');
    assert.deepEqual(t.result!.steps!.map((s) => [s.id, s.outcome]), [['write', 'would-run'], ['connected', 'ok'], ['note', 'ok']]);
    assert.equal(t.result!.dryRun, true);
  });

  test('pause, resume and cancel during a long command step: the group is gone after cancel, the rollback ran', async () => {
    const dir = join(work, 'long');
    mkdirSync(dir);
    await send('maintenance', 'long-1', { procedure: 'long', params: { dir } });
    await waitFor(() => existsSync(join(dir, 'pids')), { timeoutMs: 20_000, what: 'the long step started' });
    const [pid, grandchild] = readFileSync(join(dir, 'pids'), 'utf8').split(' ').map(Number) as [number, number];
    await send('pause', 'p-1', { target: 'long-1' });
    // The pause takes effect at the boundary: the sleeping step keeps running meanwhile.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(statuses('p-1').some((s) => s.status === 'successful'), false, 'not paused while the step runs');
    const ops = await runCli(['operations', '--json', '--config', agent.configPath]);
    assert.equal(ops.code, 0, ops.stderr);
    const listed = (JSON.parse(ops.stdout) as { operations: { id: string; state: string; run?: { step: string } }[] }).operations.find((o) => o.id === 'long-1');
    assert.equal(listed?.run?.step, 'sleep');
    await send('cancel', 'c-1', { target: 'long-1' });
    const t = await terminal('long-1');
    assert.equal(t.status, 'cancelled', JSON.stringify(t));
    assert.deepEqual(t.result!.steps!.map((s) => [s.id, s.outcome]), [['mark', 'ok'], ['sleep', 'cancelled'], ['after', 'skipped']]);
    assert.deepEqual(t.result!.rollback!.steps.map((s) => [s.id, s.outcome]), [['cleanup', 'ok']]);
    assert.ok(existsSync(join(dir, 'rolled-back')));
    assert.equal(existsSync(join(dir, 'after')), false);
    for (const p of [pid, grandchild]) assert.ok(processGone(p), `process ${p} of the cancelled step is gone: ${procState(p)}`);
    // The pause never got its boundary: the run ended first.
    const p = await terminal('p-1');
    assert.deepEqual([p.status, p.reason?.code], ['failed', 'not-running']);
  });

  test('pause takes effect at the next boundary and resume goes on from there', async () => {
    const dir = join(work, 'pause');
    mkdirSync(dir);
    await send('maintenance', 'pz-1', { procedure: 'pausable', params: { dir } });
    await stepSeen('pz-1', 'one');
    await send('pause', 'pz-p', { target: 'pz-1' });
    const p = await terminal('pz-p');
    assert.equal(p.status, 'successful', JSON.stringify(p));
    assert.ok(existsSync(join(dir, 'one')), 'the running step finished first');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(existsSync(join(dir, 'two')), false, 'paused: the next step does not start');
    const ops = await runCli(['operations', '--config', agent.configPath]);
    assert.match(ops.stdout, /pz-1\s+paused/);
    const resumed = await runCli(['resume', 'pz-1', '--config', agent.configPath]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const t = await terminal('pz-1');
    assert.equal(t.status, 'successful');
    assert.ok(existsSync(join(dir, 'two')));
  });

  test('confirm: yes goes on, no fails the step, no answer within the TTL fails it', async () => {
    await send('maintenance', 'cf-yes', { procedure: 'ask-long' });
    await stepSeen('cf-yes', 'q');
    await waitFor(() => events.some((e) => (e.payload as { code?: string; runId?: string }).code === 'confirm-requested' && (e.payload as { runId?: string }).runId === 'cf-yes'), { timeoutMs: 10_000, what: 'confirm-requested' });
    // Not waiting at that step: rejected, and the run goes on waiting.
    await send('confirm', 'cf-bad', { target: 'cf-yes', step: 'after', answer: 'yes' });
    assert.deepEqual([(await terminal('cf-bad')).status, (await terminal('cf-bad')).reason?.code], ['rejected', 'not-waiting']);
    const yes = await runCli(['confirm', 'cf-yes', 'q', '--yes', '--config', agent.configPath]);
    assert.equal(yes.code, 0, yes.stderr);
    assert.equal((await terminal('cf-yes')).status, 'successful');

    await send('maintenance', 'cf-no', { procedure: 'ask-long' });
    await stepSeen('cf-no', 'q');
    await send('confirm', 'cf-no-a', { target: 'cf-no', step: 'q', answer: 'no' });
    const no = await terminal('cf-no');
    assert.deepEqual([no.status, no.reason?.code], ['failed', 'step-failed']);
    assert.equal(no.result!.steps![0]!.outcome, 'failed');

    await send('maintenance', 'cf-ttl', { procedure: 'ask' });
    const ttl = await terminal('cf-ttl');
    assert.deepEqual([ttl.status, ttl.reason?.code], ['failed', 'step-timeout']);
    assert.equal(ttl.result!.steps![0]!.outcome, 'timeout');
    // A confirm for a run that is over: not-waiting.
    await send('confirm', 'cf-late', { target: 'cf-ttl', step: 'question', answer: 'yes' });
    assert.equal((await terminal('cf-late')).reason?.code, 'not-waiting');
  });

  test('an update waits in the queue behind a running procedure; one more exclusive operation is busy; priority orders the queue', async () => {
    const dir = join(work, 'queue');
    mkdirSync(dir);
    await send('maintenance', 'q-proc', { procedure: 'long', params: { dir } });
    await stepSeen('q-proc', 'sleep');
    // The update cannot download anything (no server): what matters is when it starts.
    await send('update', 'q-upd', { url: 'http://127.0.0.1:9/none.tar' }, { priority: 'high' });
    await waitFor(() => statuses('q-upd').some((s) => s.status === 'accepted'), { timeoutMs: 10_000, what: 'q-upd accepted' });
    await send('maintenance', 'q-more', { procedure: 'long', params: { dir } });
    const busy = await terminal('q-more');
    assert.deepEqual([busy.status, busy.reason?.code], ['rejected', 'busy'], 'maxQueued 1: the queue is full');
    // A read-only run is not exclusive: it runs beside.
    await send('maintenance', 'q-ro', { procedure: 'write-and-check', params: { file: join(dir, 'x') }, dryRun: true });
    assert.equal((await terminal('q-ro')).status, 'successful');
    assert.equal(statuses('q-upd').some((s) => s.status === 'executing'), false, 'the update waits while the procedure runs');
    const ops = JSON.parse((await runCli(['operations', '--json', '--config', agent.configPath])).stdout) as { operations: { id: string; state: string; priority: string; position?: number }[] };
    assert.deepEqual(ops.operations.filter((o) => o.id.startsWith('q-')).map((o) => [o.id, o.state, o.priority]), [['q-proc', 'running', 'normal'], ['q-upd', 'waiting', 'high']]);
    await send('cancel', 'q-c', { target: 'q-proc' });
    assert.equal((await terminal('q-proc')).status, 'cancelled');
    // Then the update starts (and fails on the missing server).
    const upd = await terminal('q-upd', 60_000);
    assert.ok(statuses('q-upd').some((s) => s.status === 'executing'));
    assert.equal(upd.status, 'failed');
  });

  test('bad input: each with its own code, and nothing runs', async () => {
    const marker = join(work, 'smuggled');
    const cases: [string, unknown, string][] = [
      ['bad-unknown', { procedure: 'no-such' }, 'unknown-procedure'],
      ['bad-invalid', { procedure: 'broken' }, 'invalid-procedure'],
      ['bad-type', { procedure: 'write-and-check', params: { file: 5 } }, 'invalid-params'],
      ['bad-bounds', { procedure: 'ask', params: { ttl: 601 } }, 'invalid-params'],
      ['bad-unknown-param', { procedure: 'ask', params: { nope: 1 } }, 'invalid-params'],
      ['bad-shell-pattern', { procedure: 'write-and-check', params: { file: `${marker}; rm -rf /` } }, 'invalid-params'],
      ['bad-missing', { procedure: 'write-and-check' }, 'invalid-params'],
      ['bad-shape', { procedure: 'ask', dryRun: 'yes' }, 'invalid-params'],
    ];
    for (const [id, params] of cases) await send('maintenance', id, params);
    for (const [id, , code] of cases) {
      const t = await terminal(id);
      assert.deepEqual([t.status, t.reason?.code], ['rejected', code], `${id}: ${JSON.stringify(t)}`);
    }
    const inv = await terminal('bad-invalid');
    assert.match(inv.reason!.message, /argv\[0\]|absolute path/);
    assert.match(inv.reason!.message, /format-disk/);
    // Unsafe: a procedure file others may write is refused.
    put('unsafe', { steps: [{ id: 'a', type: 'log', message: 'x' }] }, 0o666);
    await send('maintenance', 'bad-unsafe', { procedure: 'unsafe' });
    assert.deepEqual([(await terminal('bad-unsafe')).status, (await terminal('bad-unsafe')).reason?.code], ['rejected', 'unsafe-procedure']);
    // Shell metacharacters that fit the pattern are one literal argv element: $(...) and backticks
    // end up in the file's content, nothing is executed.
    const text = '$(touch /tmp/pwned-maint) `touch /tmp/pwned-maint2`; rm -rf /';
    await send('maintenance', 'smuggle', { procedure: 'write-and-check', params: { file: marker, text } });
    assert.equal((await terminal('smuggle')).status, 'successful');
    assert.equal(readFileSync(marker, 'utf8'), text);
    assert.equal(existsSync('/tmp/pwned-maint') || existsSync('/tmp/pwned-maint2'), false);
    // Nothing of the rejected ones ran: no report for them.
    const reps = await runCli(['maintenance', 'reports', '--json', '--limit', '100', '--config', agent.configPath]);
    const ids = (JSON.parse(reps.stdout) as { reports: { runId: string }[] }).reports.map((r) => r.runId);
    for (const [id] of cases) assert.ok(!ids.includes(id), `${id} has no run`);
    assert.ok(ids.includes('smuggle'));
  });

  test('the command line: run (with --param and --dry-run), reports, report RUN', async () => {
    const file = join(work, 'cli.txt');
    const r = await runCli(['maintenance', 'run', 'write-and-check', '--param', `file=${file}`, '--param', 'text=from the CLI', '--config', agent.configPath]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /SUCCEEDED/);
    assert.match(r.stdout, /write\s+ok/);
    assert.equal(readFileSync(file, 'utf8'), 'from the CLI');
    const runId = /run (local-\S+|console-\S+)/.exec(r.stdout)?.[1];
    assert.ok(runId, r.stdout);
    const one = await runCli(['maintenance', 'report', runId, '--json', '--config', agent.configPath]);
    const rep = JSON.parse(one.stdout) as { trigger: string; startedBy: string; state: string };
    assert.deepEqual([rep.trigger, rep.startedBy, rep.state], ['local', 'local', 'succeeded']);
    const bad = await runCli(['maintenance', 'run', 'ask', '--param', 'ttl=abc', '--config', agent.configPath]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid-params/);
    const unknown = await runCli(['maintenance', 'run', 'nope', '--config', agent.configPath]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown-procedure/);
    const list = await runCli(['maintenance', 'reports', '--config', agent.configPath]);
    assert.match(list.stdout, new RegExp(`write-and-check\\s+run ${runId}`));
  });
});
