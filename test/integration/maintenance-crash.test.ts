/**
 * kill -9 of the agent during each step of a running procedure (docs/maintenance.md, Runs and
 * restarts), with a real Mosquitto and the real agent: for every step and each `onInterrupt`
 * (resume, rollback, fail) the run ends in exactly one terminal state after the restart, its
 * rollback ran exactly when the procedure asks for it, the WMS got exactly one terminal status,
 * and the step's processes the killed agent left behind are gone.
 *
 * The fault point: each step's command writes `started-{step}` and, the first time only, sleeps
 * (it writes `slept-{step}` before); the test kills the agent while it sleeps.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, processGone, procState, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-maint-crash';
const NODE = process.execPath;
const STEPS = ['a', 'b', 'c'];
const TERMINAL = ['successful', 'failed', 'cancelled', 'rejected'];

// argv: dir, step. Sleeps the first time (the fault point), then appends the step to `done`.
const STEP_JS =
  "const fs=require('fs'),[d,s]=process.argv.slice(1);fs.writeFileSync(d+'/started-'+s,String(process.pid));" +
  "if(!fs.existsSync(d+'/slept-'+s)){fs.writeFileSync(d+'/slept-'+s,'1');setTimeout(()=>{},600000);}else{fs.appendFileSync(d+'/done',s+'\\n');}";
const ROLLBACK_JS = "require('fs').appendFileSync(process.argv[1]+'/rolled-back','r\\n')";

interface Res {
  id: string;
  status: string;
  reason?: { code: string };
  result?: { state: string; steps: { id: string; outcome: string }[]; rollback: { executed: boolean; steps: { id: string; outcome: string }[] } };
}


describe('kill -9 of the agent during each step of a procedure', () => {
  let broker: Broker;
  let wms: MqttClient;
  let results: Received[];
  let procs: string;
  let dataDir: string;
  let agent: AgentProcess;
  const root = tempDir('maint-crash-');

  const start = async (): Promise<void> => {
    agent = startAgent({ dataDir, gatewayId: GW, config: { mqtt: { url: broker.url }, maintenance: { proceduresDir: procs } } });
    await agentConnected(agent, 20_000);
  };
  const statuses = (id: string): Res[] => results.map((r) => r.payload as Res).filter((p) => p.id === id);

  before(async () => {
    chmodSync(root, 0o755);
    procs = join(root, 'procedures');
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    dataDir = join(root, 'data');
    for (const mode of ['resume', 'rollback', 'fail']) {
      const f = join(procs, `crashy-${mode}.yaml`);
      writeFileSync(
        f,
        stringify({
          id: `crashy-${mode}`,
          name: `crash test, onInterrupt ${mode}`,
          onInterrupt: mode,
          params: { dir: { type: 'string', pattern: '^/[A-Za-z0-9_./-]{1,200}$' } },
          steps: STEPS.map((s) => ({ id: s, type: 'command', argv: [NODE, '-e', STEP_JS, '{{params.dir}}', s] })),
          rollback: [{ id: 'undo', type: 'command', argv: [NODE, '-e', ROLLBACK_JS, '{{params.dir}}'] }],
        }),
      );
      chmodSync(f, 0o644);
    }
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    results = await collect(wms, `edge/${GW}/res/+`);
    await start();
  });

  after(async () => {
    await agent?.stop().catch(() => undefined);
    await wms?.endAsync();
    await broker?.stop();
  });

  for (const mode of ['resume', 'rollback', 'fail'] as const) {
    for (const [i, step] of STEPS.entries()) {
      test(`onInterrupt ${mode}, killed during step ${step}`, async () => {
        const dir = join(root, `w-${mode}-${step}`);
        mkdirSync(dir);
        // Only this step stops: the others find their `slept-` marker.
        for (const s of STEPS) if (s !== step) writeFileSync(join(dir, `slept-${s}`), '1');
        const id = `crash-${mode}-${step}`;
        await wms.publishAsync(`edge/${GW}/cmd/maintenance`, JSON.stringify({ id, params: { procedure: `crashy-${mode}`, params: { dir } } }), { qos: 1 });
        await waitFor(() => existsSync(join(dir, `slept-${step}`)) && existsSync(join(dir, `started-${step}`)), { timeoutMs: 20_000, what: `step ${step} started\n${agent.logText().slice(-3000)}` });
        const orphan = Number(readFileSync(join(dir, `started-${step}`), 'utf8'));
        await agent.kill9();
        await start();
        await waitFor(() => statuses(id).some((s) => TERMINAL.includes(s.status)), { timeoutMs: 30_000, what: `${id} terminal after the restart\n${JSON.stringify(statuses(id))}\n${agent.logText().slice(-3000)}` });
        // Give a duplicate (a second terminal status) the time to show up.
        await new Promise((r) => setTimeout(r, 500));
        const terminals = statuses(id).filter((s) => TERMINAL.includes(s.status));
        assert.equal(new Set(terminals.map((t) => JSON.stringify(t))).size, 1, `exactly one terminal status: ${JSON.stringify(terminals)}`);
        const t = terminals[0]!;
        const done = existsSync(join(dir, 'done')) ? readFileSync(join(dir, 'done'), 'utf8').trim().split('\n') : [];
        const rolledBack = existsSync(join(dir, 'rolled-back'));
        if (mode === 'resume') {
          assert.equal(t.status, 'successful', JSON.stringify(t));
          assert.equal(t.result!.state, 'succeeded');
          // The interrupted step ran again from its boundary, and the rest after it.
          assert.deepEqual(done, STEPS, `steps done: ${done.join(',')}`);
          assert.equal(rolledBack, false);
        } else if (mode === 'rollback') {
          assert.deepEqual([t.status, t.reason?.code, t.result!.state], ['failed', 'rolled-back', 'rolled-back'], JSON.stringify(t));
          assert.equal(rolledBack, true, 'the rollback ran');
          assert.equal(readFileSync(join(dir, 'rolled-back'), 'utf8'), 'r\n', 'exactly once');
          assert.deepEqual(done, STEPS.slice(0, i), 'no step after the interrupted one ran');
          assert.deepEqual(t.result!.rollback.steps.map((s) => [s.id, s.outcome]), [['undo', 'ok']]);
        } else {
          assert.deepEqual([t.status, t.reason?.code, t.result!.state], ['failed', 'interrupted', 'interrupted'], JSON.stringify(t));
          assert.equal(rolledBack, false);
          assert.deepEqual(done, STEPS.slice(0, i));
        }
        // The step's process the killed agent left sleeping was stopped by the new one.
        await waitFor(() => processGone(orphan), { timeoutMs: 10_000, what: `the interrupted step's process ${orphan} is gone (state ${procState(orphan)})` });
      });
    }
  }
});
