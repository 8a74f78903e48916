/**
 * Malformed and hostile input on `~/cmd/{op}` against a real Mosquitto and the real agent binary
 * (CONTRACT.md section 2): every message whose id can be read gets exactly one `rejected` status
 * with a code, the rest are dropped with a logged reason, a duplicate id is not executed again,
 * and a flood of commands neither loses a status nor takes the agent down.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type Received } from '../helpers/util.js';
import { agentConnected, startAgent, type AgentProcess } from '../helpers/agent.js';

const GW = 'gw-bad';
const CMD = `edge/${GW}/cmd`;
const RES = `edge/${GW}/res`;
const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);

interface Status {
  id: string;
  op: string;
  status: string;
  reason?: { code: string; message: string };
}
type LogLine = Record<string, unknown>;

describe('bad input on ~/cmd/{op}', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let wms: MqttClient;
  let got: Received[];
  let agentExited = false;

  const statuses = (id: string): Status[] => got.filter((m) => m.topic === `${RES}/${id}`).map((m) => m.payload as Status);
  const jsonLogs = (): LogLine[] => agent.logs.filter((l): l is LogLine => typeof l === 'object');
  const send = (op: string, payload: string | Buffer): Promise<unknown> => wms.publishAsync(`${CMD}/${op}`, payload, { qos: 1 });

  /** Publishes, then waits for exactly one `rejected` status with `code` on `~/res/{id}`. */
  async function expectRejected(op: string, payload: string | Buffer, id: string, code: string): Promise<void> {
    await send(op, payload);
    await waitFor(() => statuses(id).length > 0, { timeoutMs: 15_000, what: `a status for ${id}\n${agent.logText().slice(-3000)}` });
    const s = statuses(id);
    assert.equal(s.length, 1, `one status for ${id}: ${JSON.stringify(s)}`);
    assert.equal(s[0]!.status, 'rejected');
    assert.equal(s[0]!.reason?.code, code, `reason for ${id}: ${JSON.stringify(s[0]!.reason)}`);
    assert.ok((s[0]!.reason?.message ?? '').length > 0, 'the reason has a message');
  }

  /** Publishes, then waits for a new warning in the agent's log that it dropped the message for `reason`. */
  async function expectDropped(payload: string, reason: string): Promise<LogLine> {
    const from = jsonLogs().length;
    await send('diagnostics', payload);
    let line: LogLine | undefined;
    await waitFor(
      () => {
        line = jsonLogs()
          .slice(from)
          .find((l) => l.reason === reason && l.op === 'diagnostics');
        return line !== undefined;
      },
      { timeoutMs: 15_000, what: `a logged drop (${reason}) of ${payload}\n${agent.logText().slice(-3000)}` },
    );
    assert.equal(line!.level, 40, 'a drop is logged as a warning');
    assert.ok(typeof line!.msg === 'string' && line!.msg.length > 0, 'the warning says why');
    return line!;
  }

  before(async () => {
    broker = await startBroker();
    wms = await mqttClient(broker.url);
    got = await collect(wms, `${RES}/#`);
    agent = startAgent({ dataDir: join(tempDir('agent-bad-'), 'data'), gatewayId: GW, config: { mqtt: { url: broker.url } } });
    void agent.exited.then(() => (agentExited = true));
    await agentConnected(agent, 20_000);
  });

  after(async () => {
    await wms?.endAsync();
    await agent?.stop();
    await broker?.stop();
  });

  test('invalid JSON with a readable id is rejected invalid-json', async () => {
    await expectRejected('diagnostics', '{"id": "bad-json-1", "params": {', 'bad-json-1', 'invalid-json');
  });

  test('invalid JSON without an id is dropped with a logged reason', async () => {
    const line = await expectDropped('{not json at all', 'no-id');
    assert.match(String(line.msg), /JSON/);
  });

  test('JSON that is not an object is dropped: not-an-object', async () => {
    for (const payload of ['[1]', '"x"', '42']) await expectDropped(payload, 'not-an-object');
  });

  test('a numeric id is dropped: invalid-id', async () => {
    await expectDropped('{"id": 5}', 'invalid-id');
    await expectDropped('{"params": {}}', 'no-id');
  });

  test('wrong types are rejected invalid-params', async () => {
    await expectRejected('diagnostics', '{"id":"w1","params":[1]}', 'w1', 'invalid-params');
    await expectRejected('diagnostics', '{"id":"w2","expiresAt":12}', 'w2', 'invalid-params');
    await expectRejected('restart', '{"id":"w3","params":{"component":"nope"}}', 'w3', 'invalid-params');
  });

  test('a 1 MiB payload is rejected too-large', async () => {
    const head = '{"id":"big-1","params":{"pad":"';
    const tail = '"}}';
    const payload = Buffer.from(head + 'x'.repeat(1024 * 1024 - head.length - tail.length) + tail);
    assert.equal(payload.length, 1024 * 1024);
    await expectRejected('diagnostics', payload, 'big-1', 'too-large');
  });

  test('an unknown operation is rejected unknown-op', async () => {
    await expectRejected('frobnicate', '{"id":"u1"}', 'u1', 'unknown-op');
  });

  test('an expired command is rejected expired', async () => {
    await expectRejected('diagnostics', JSON.stringify({ id: 'e1', expiresAt: '2000-01-01T00:00:00Z' }), 'e1', 'expired');
  });

  test('a duplicate id is executed once; its latest status is published again', async () => {
    const successful = (): number => statuses('d1').filter((s) => s.status === 'successful').length;
    await send('diagnostics', JSON.stringify({ id: 'd1' }));
    await waitFor(() => successful() === 1, { timeoutMs: 15_000, what: 'd1 successful' });
    await send('diagnostics', JSON.stringify({ id: 'd1' }));
    await waitFor(() => successful() >= 2, { timeoutMs: 15_000, what: 'd1 successful published again' });
    const forD1 = jsonLogs().filter((l) => l.id === 'd1');
    assert.equal(forD1.filter((l) => l.msg === 'command finished').length, 1, 'd1 finished once');
    assert.equal(forD1.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('duplicate command id')).length, 1, 'one duplicate logged');
    // The second delivery republished the latest status only: nothing after the first `successful` but `successful`.
    const all = statuses('d1').map((s) => s.status);
    assert.deepEqual(all.slice(all.indexOf('successful')), ['successful', 'successful']);
  });

  test('dropped messages got no status at all', async () => {
    // Commands are handled in order: once this one is answered, every earlier one has been too.
    await send('diagnostics', JSON.stringify({ id: 'sentinel-1' }));
    await waitFor(() => statuses('sentinel-1').some((s) => s.status === 'successful'), { timeoutMs: 15_000, what: 'sentinel successful' });
    const ids = [...new Set(got.map((m) => m.topic.slice(RES.length + 1)))].sort();
    assert.deepEqual(ids, ['bad-json-1', 'big-1', 'd1', 'e1', 'sentinel-1', 'u1', 'w1', 'w2', 'w3']);
    for (const id of ['bad-json-1', 'big-1', 'e1', 'u1', 'w1', 'w2', 'w3']) assert.deepEqual(statuses(id).map((s) => s.status), ['rejected'], id);
    assert.equal(agentExited, false, 'the agent is still running');
  });

  test('a flood of 1,000 commands: one terminal status each, and the agent keeps answering', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `flood-${i}`);
    const t0 = Date.now();
    for (let i = 0; i < ids.length; i += 100) {
      await Promise.all(ids.slice(i, i + 100).map((id) => send('diagnostics', JSON.stringify({ id }))));
    }
    const publishMs = Date.now() - t0;
    const terminal = (): Map<string, Set<string>> => {
      const m = new Map<string, Set<string>>();
      for (const r of got) {
        const p = r.payload as Status;
        if (!p.id?.startsWith('flood-') || !TERMINAL.has(p.status)) continue;
        const key = p.status === 'rejected' ? `rejected:${p.reason?.code}` : p.status;
        m.set(p.id, (m.get(p.id) ?? new Set()).add(key));
      }
      return m;
    };
    await waitFor(() => terminal().size === ids.length, {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: `a terminal status for all 1000 flood commands (have ${terminal().size})\n${agent.logText().slice(-2000)}`,
    });
    const t = terminal();
    for (const id of ids) {
      const kinds = [...(t.get(id) ?? [])];
      assert.equal(kinds.length, 1, `${id} has exactly one terminal status: ${kinds.join(', ')}`);
      assert.ok(kinds[0] === 'successful' || kinds[0] === 'rejected:busy', `${id} ended ${kinds[0]}`);
    }
    assert.equal([...t.keys()].filter((id) => !ids.includes(id)).length, 0);
    console.log(`flood: published in ${publishMs} ms; ${[...t.values()].filter((k) => k.has('rejected:busy')).length} rejected busy`);

    // Still alive and answering, on MQTT and on the admin socket.
    await send('diagnostics', JSON.stringify({ id: 'after-flood' }));
    await waitFor(() => statuses('after-flood').some((s) => s.status === 'successful'), { timeoutMs: 20_000, what: 'a command answered after the flood' });
    const st = (await agent.admin('status')) as { daemon: string; pid: number; broker: { connected: boolean } };
    assert.equal(st.daemon, 'running');
    assert.equal(st.pid, agent.pid);
    assert.equal(st.broker.connected, true);
    assert.equal(agentExited, false, 'the agent process is still alive');
  });

  test('params nested 100,000 levels deep: rejected too-large with a status, for any op, and the id is remembered', async () => {
    const deep = (id: string): string => `{"id":"${id}","params":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    const cases = [
      ['frobnicate', 'deep-1'],
      ['diagnostics', 'deep-2'],
      ['cancel', 'deep-3'],
      ['restart', 'deep-4'],
    ] as const;
    for (const [op, id] of cases) await expectRejected(op, deep(id), id, 'too-large');
    // Remembered: the same id again gets its status again, and nothing runs.
    await send('diagnostics', deep('deep-2'));
    await waitFor(() => statuses('deep-2').length === 2, { timeoutMs: 15_000, what: `deep-2 answered again\n${agent.logText().slice(-3000)}` });
    assert.deepEqual(statuses('deep-2').map((s) => s.status), ['rejected', 'rejected']);
    assert.equal(jsonLogs().filter((l) => /RangeError|Maximum call stack/.test(JSON.stringify(l))).length, 0, 'nothing threw on the way to the store');
    assert.equal(agentExited, false, 'the agent is still running');
  });
});
