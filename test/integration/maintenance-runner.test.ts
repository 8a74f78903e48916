/**
 * The procedure runner on its own (maintenance/runner.ts), with a real store, real child
 * processes and a real HTTP server: prerequisites that stop a run before anything changed,
 * retries, maxDurationSec (the running command is stopped, the rollback runs, `timeout`), http
 * steps against their expected status, notify and snapshot, success criteria that do not hold,
 * an action that is not available, a large report announced as its summary, and the run row
 * written before a step with side effects.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';
import type { AgentEvent } from '../../core/ports.js';
import { MAINTENANCE_MIGRATIONS, RunStore } from '../../maintenance/run-store.js';
import { Runner, type RunEnd, type RunnerDeps } from '../../maintenance/runner.js';
import { procedureSchema, type Procedure } from '../../maintenance/schema.js';
import { tempDir } from '../helpers/util.js';

const NODE = process.execPath;
const dir = tempDir('runner-');
after(() => rmSync(dir, { recursive: true, force: true }));

function setup(extra: Partial<RunnerDeps> = {}): { runner: Runner; store: RunStore; db: Db; events: AgentEvent[]; metrics: Record<string, number | boolean | string> } {
  const db = openDatabase(join(dir, `s-${Math.random().toString(16).slice(2)}.db`), { migrations: [MAINTENANCE_MIGRATIONS] });
  const store = new RunStore(db);
  const events: AgentEvent[] = [];
  const metrics: Record<string, number | boolean | string> = { 'disk.data.usedPct': 40, ok: true };
  const runner = new Runner({
    store,
    clock: systemClock,
    logger: silentLogger(),
    actions: {},
    metrics: async () => ({ ...metrics }),
    snapshot: async () => ({ metrics: { ...metrics }, components: { x: 'running' } }),
    event: (e) => events.push(e),
    limits: { retryDelayMs: 50, killGraceMs: 300 },
    ...extra,
  });
  return { runner, store, db, events, metrics };
}

const proc = (doc: Record<string, unknown>): Procedure => procedureSchema.parse({ id: 'p', name: 'p', ...doc });
let n = 0;
async function run(r: Runner, p: Procedure, opts: { params?: Record<string, string | number | boolean>; dryRun?: boolean; signal?: AbortSignal } = {}): Promise<RunEnd> {
  return r.run(
    { runId: `r${++n}`, procedure: p, definitionSha256: 'x'.repeat(64), file: '/p.yaml', params: opts.params ?? {}, dryRun: opts.dryRun ?? false, trigger: 'local', startedBy: 'test' },
    { signal: opts.signal ?? new AbortController().signal, progress: () => undefined },
  );
}
const steps = (e: RunEnd): [string, string][] => (e.report.steps as { id: string; outcome: string }[]).map((s) => [s.id, s.outcome]);

test('a prerequisite that does not hold stops the run before any step', async () => {
  const { runner, store } = setup();
  const marker = join(dir, 'pre');
  const e = await run(runner, proc({ prerequisites: [{ name: 'room', check: { metric: 'disk.data.usedPct', op: '<', value: 10 } }], steps: [{ id: 'w', type: 'command', argv: [NODE, '-e', "require('fs').writeFileSync(process.argv[1],'x')", marker] }] }));
  assert.deepEqual([e.state, e.report.reason?.code], ['failed', 'prerequisites-failed']);
  assert.equal(existsSync(marker), false);
  assert.deepEqual(steps(e), [['w', 'skipped']]);
  assert.match(String((e.report.prerequisites as { reason: string }[])[0]!.reason), /disk\.data\.usedPct is 40/);
  // The report is stored with the terminal row (a failed run's too).
  const row = store.get(e.report.runId)!;
  assert.deepEqual([row.record.state, row.report?.state, row.endedAt !== undefined], ['failed', 'failed', true]);
});

test('retries: a step that fails twice then succeeds is ok after 3 attempts', async () => {
  const { runner } = setup();
  const counter = join(dir, 'count');
  const script = "const fs=require('fs');const f=process.argv[1];const n=fs.existsSync(f)?Number(fs.readFileSync(f,'utf8')):0;fs.writeFileSync(f,String(n+1));process.exit(n<2?1:0)";
  const e = await run(runner, proc({ steps: [{ id: 'flaky', type: 'command', retries: 3, argv: [NODE, '-e', script, counter] }] }));
  assert.equal(e.state, 'succeeded');
  assert.equal((e.report.steps as { attempts: number }[])[0]!.attempts, 3);
  assert.equal(readFileSync(counter, 'utf8'), '3');
});

test('maxDurationSec: the running command is stopped, the rollback runs, the run fails with timeout', async () => {
  const { runner } = setup();
  const marker = join(dir, 'undone');
  const e = await run(runner, proc({ maxDurationSec: 1, steps: [{ id: 'slow', type: 'command', argv: [NODE, '-e', 'setTimeout(()=>{},60000)'] }], rollback: [{ id: 'undo', type: 'command', argv: [NODE, '-e', "require('fs').writeFileSync(process.argv[1],'x')", marker] }] }));
  assert.deepEqual([e.state, e.report.reason?.code], ['failed', 'timeout']);
  assert.deepEqual(steps(e), [['slow', 'timeout']]);
  assert.ok(existsSync(marker), 'the rollback ran');
});

test('http steps: expected status or not; notify sends an event; snapshot records; success criteria that fail', async () => {
  const server: Server = createServer((req, res) => {
    res.statusCode = req.url === '/ok' ? 200 : 503;
    res.end(req.url === '/ok' ? 'fine' : 'down');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const { runner, events } = setup();
    const e = await run(runner, proc({
      steps: [
        { id: 'up', type: 'http', url: `http://127.0.0.1:${port}/ok` },
        { id: 'down', type: 'http', url: `http://127.0.0.1:${port}/down`, onFailure: 'continue' },
        { id: 'down-expected', type: 'http', url: `http://127.0.0.1:${port}/down`, expectStatus: 503 },
        { id: 'tell', type: 'notify', code: 'spool-cleared', message: 'cleared', severity: 'warning' },
        { id: 'snap', type: 'snapshot', metrics: ['disk.data.usedPct'] },
      ],
      successCriteria: [{ name: 'ok is false', check: { metric: 'ok', op: '==', value: false } }],
    }));
    assert.deepEqual(steps(e), [['up', 'ok'], ['down', 'failed'], ['down-expected', 'ok'], ['tell', 'ok'], ['snap', 'ok']]);
    assert.match(String((e.report.steps as { message: string }[])[1]!.message), /answered 503 \(expected 2xx\)/);
    assert.equal((e.report.steps as { output: string }[])[0]!.output, 'fine');
    assert.deepEqual((e.report.steps as { data: unknown }[])[4]!.data, { metrics: { 'disk.data.usedPct': 40 }, components: { x: 'running' } });
    assert.ok(events.some((ev) => ev.type === 'maintenance' && ev.code === 'spool-cleared' && ev.severity === 'warning'));
    assert.deepEqual([e.state, e.report.reason?.code, e.report.successCriteriaOk], ['failed', 'success-criteria', false]);
  } finally {
    server.close();
  }
});

test('an action this agent does not provide fails its step with action-unavailable', async () => {
  const { runner } = setup();
  const e = await run(runner, proc({ steps: [{ id: 'a', type: 'action', action: 'plc-bridge-handover' }] }));
  assert.equal(e.state, 'failed');
  assert.match(String((e.report.steps as { message: string }[])[0]!.message), /^action-unavailable/);
});

test('a large report goes to ~/events as its summary (no outputs)', async () => {
  const { runner, events } = setup({ limits: { reportEventBytes: 2048, retryDelayMs: 50 } });
  const e = await run(runner, proc({ steps: [{ id: 'chatty', type: 'command', argv: [NODE, '-e', "process.stdout.write('x'.repeat(8000))"] }] }));
  assert.equal(e.state, 'succeeded');
  const ev = events.find((x) => x.type === 'maintenance-report')!;
  assert.equal(ev.truncated, true);
  assert.equal(ev.report, undefined);
  assert.equal(((ev.summary as { steps: { output?: string }[] }).steps[0]!).output, undefined);
  assert.ok(String((e.report.steps as { output: string }[])[0]!.output).length > 4000, 'the full report keeps the output');
});

test('the run row names the side-effecting step before it runs', async () => {
  const { runner, store } = setup();
  const seen = join(dir, 'seen');
  const p = proc({ steps: [{ id: 'look', type: 'log', message: 'x' }, { id: 'act', type: 'command', argv: [NODE, '-e', "require('fs').writeFileSync(process.argv[1],'x');setTimeout(()=>{},500)", seen] }] });
  const running = run(runner, p);
  for (let i = 0; i < 100 && !existsSync(seen); i++) await new Promise((r) => setTimeout(r, 20));
  const captured = store.get(`r${n}`)?.record;
  await running;
  assert.deepEqual({ ...(captured as object) }, { state: 'running', phase: 'steps', cursor: 1, pauseRequested: false, cancelRequested: false });
});
