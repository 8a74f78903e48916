/**
 * The store's files removed under a running agent (`rm agent.db*`), with the real agent, a real
 * broker and real files (issue #12 item 5, and the modes of item 10):
 * - commands complete, then a backup holds them; every file in `backups/` is 0640 although the
 *   data directory is 0755;
 * - while the agent runs its store files are removed: the store watch notices, writes the open
 *   store back to its path, records `store-detached` and restarts (exit 75, as systemd would see
 *   it); started again, it reports the incident, and ids completed before (also after the
 *   backup) are not executed again: their stored status is published again;
 * - removed again while the agent runs, and the agent stopped before the watch can notice: the
 *   next start finds no store but backups, restores the newest with a `store-restored` incident
 *   (cause `store-missing`), and the ids in that backup are not executed again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { MqttClient } from 'mqtt';
import { startBroker, type Broker } from '../helpers/broker.js';
import { collect, mqttClient, tempDir, waitFor, type ChildExit, type Received } from '../helpers/util.js';
import { runAgent, runCli, type AgentProcess } from '../helpers/agent.js';

interface Payload {
  id?: string;
  state?: string;
  status?: string;
  ts?: string;
  type?: string;
  code?: string;
  cause?: string;
  action?: string;
  message?: string;
}
const P = (m: Received): Payload => m.payload as Payload;

describe('the store removed under a running agent', () => {
  let broker: Broker;
  let wms: MqttClient;
  let got: Received[];
  const running: AgentProcess[] = [];
  const gw = `gw-rm-${process.pid}`;
  const dataDir = tempDir('store-rm-');
  const configPath = join(dataDir, 'config.yaml');
  const store = join(dataDir, 'agent.db');
  /** Under systemd (INVOCATION_ID) a restart the agent asks for is its exit with 75. */
  const env = { INVOCATION_ID: 'store-removed-test' };

  const writeConfig = (storeWatchIntervalMs: number): void =>
    writeFileSync(configPath, stringify({ gatewayId: gw, dataDir, mqtt: { url: broker.url, reconnect: { initialMs: 100, maxMs: 500 } }, shutdownTimeoutMs: 5000, restore: { storeWatchIntervalMs } }));

  before(async () => {
    // The setting: a data directory that already exists, 0755.
    chmodSync(dataDir, 0o755);
    broker = await startBroker();
    wms = await mqttClient(broker.url, { reconnectPeriod: 100 });
    got = await collect(wms, `edge/${gw}/#`);
  });
  after(async () => {
    for (const a of running) await a.kill9().catch(() => undefined);
    await wms?.endAsync(true);
    await broker?.stop();
  });

  async function startOnline(): Promise<AgentProcess> {
    const from = got.length;
    const a = runAgent(configPath, dataDir, { env });
    running.push(a);
    let exit: ChildExit | undefined;
    void a.exited.then((c) => (exit = c));
    await waitFor(
      () => {
        if (exit !== undefined) throw new Error(`the agent exited with ${exit.code ?? exit.signal}\n${a.logText()}`);
        return got.slice(from).some((m) => m.topic.endsWith('/status') && !m.retain && P(m).state === 'online');
      },
      { timeoutMs: 30_000, what: `~/status online\n${a.logText()}` },
    );
    return a;
  }

  const statuses = (id: string, from = 0): Payload[] => got.slice(from).filter((m) => m.topic === `edge/${gw}/res/${id}`).map(P);

  async function complete(id: string): Promise<string> {
    await wms.publishAsync(`edge/${gw}/cmd/diagnostics`, JSON.stringify({ id }), { qos: 1 });
    await waitFor(() => statuses(id).some((s) => s.status === 'successful'), { timeoutMs: 30_000, what: `${id} successful` });
    return statuses(id).find((s) => s.status === 'successful')?.ts ?? '';
  }

  /** Sends `id` again: the first status that comes back is its stored one, not a new `accepted`. */
  async function notExecutedAgain(id: string, ts: string): Promise<void> {
    const from = got.length;
    await wms.publishAsync(`edge/${gw}/cmd/diagnostics`, JSON.stringify({ id }), { qos: 1 });
    await waitFor(() => statuses(id, from).length > 0, { timeoutMs: 20_000, what: `a status for ${id} sent again` });
    const first = statuses(id, from)[0]!;
    assert.equal(first.status, 'successful', `${id} sent again: ${JSON.stringify(statuses(id, from))} (accepted/executing means it ran again)`);
    assert.equal(first.ts, ts, `${id}: the stored status is published again`);
  }

  const storeBackups = (): string[] => (existsSync(join(dataDir, 'backups')) ? readdirSync(join(dataDir, 'backups')).filter((n) => /^store-.*\.db$/.test(n)) : []);
  const incidents = async (): Promise<{ component: string; cause: string; action: string; detail: string | null }[]> => {
    const r = await runCli(['incidents', '--json', '--config', configPath]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { incidents: { component: string; cause: string; action: string; detail: string | null }[] }).incidents;
  };
  const rmStore = (): void => {
    for (const f of [store, `${store}-wal`, `${store}-shm`]) rmSync(f, { force: true });
  };

  const done: Record<string, string> = {};

  test('completed commands end up in a backup; every backup file is 0640 in a 0755 data directory', async () => {
    writeConfig(200);
    const a = await startOnline();
    for (const id of ['rm-1', 'rm-2', 'rm-3']) done[id] = await complete(id);
    assert.equal((await a.stop()).code, 0);
    // A backup is taken as soon as the agent has proven itself when there is none recent.
    rmSync(join(dataDir, 'backups'), { recursive: true, force: true });
    const b = await startOnline();
    await waitFor(() => storeBackups().length === 1, { timeoutMs: 20_000, what: `a store backup\n${b.logText()}` });
    const dir = join(dataDir, 'backups');
    for (const n of readdirSync(dir)) {
      const mode = statSync(join(dir, n)).mode & 0o777;
      assert.equal(mode & ~0o640, 0, `backups/${n} is ${mode.toString(8)}, not 0640 or tighter`);
    }
    assert.equal(statSync(dir).mode & 0o027, 0, 'backups/ is 0750 or tighter');
    running.push(b);
  });

  test('rm agent.db* while it runs: the watch notices, saves the open store, records it and restarts; no id runs twice', async () => {
    const a = running.at(-1)!;
    done['rm-4'] = await complete('rm-4');
    let exit: ChildExit | undefined;
    void a.exited.then((c) => (exit = c));
    rmStore();
    await waitFor(() => exit !== undefined, { timeoutMs: 30_000, what: `the agent to notice and restart\n${a.logText().slice(-4000)}` });
    assert.equal(exit?.code, 75, `the agent asks to be restarted once it notices\n${a.logText().slice(-4000)}`);
    assert.ok(existsSync(store), 'the open store was written back to agent.db');
    assert.equal(statSync(store).mode & 0o777 & ~0o640, 0, 'the saved store is 0640 or tighter');
    const from = got.length;
    const b = await startOnline();
    await waitFor(() => got.slice(from).some((m) => m.topic.endsWith('/events') && P(m).type === 'incident' && P(m).code === 'store-detached'), {
      timeoutMs: 20_000,
      what: `the store-detached incident on ~/events\n${b.logText()}`,
    });
    // rm-4 completed after the backup: only the saved open store knows it.
    for (const [id, ts] of Object.entries(done)) await notExecutedAgain(id, ts);
    assert.equal((await b.stop()).code, 0);
    const inc = (await incidents()).find((i) => i.component === 'store' && i.action === 'save-open-store');
    assert.ok(inc, 'the incident is in the store');
    assert.equal(inc.cause, 'store-missing');
    assert.match(inc.detail ?? '', /agent\.db was removed/);
  });

  test('rm agent.db* while it runs, stopped before the watch notices: the next start restores the newest backup; its ids do not run again', async () => {
    // On its own: whatever an earlier test left running is stopped first.
    for (const r of running) if (r.proc.exitCode === null && r.proc.signalCode === null) await r.stop();
    writeConfig(3_600_000);
    const a = await startOnline();
    rmStore();
    // Sent while the store is detached: its commit cannot be made durable (the store's files are
    // gone), so it is held unacknowledged (the command path's store gate), never run on a store
    // that the next start will not have; the broker delivers it again after the restart.
    await wms.publishAsync(`edge/${gw}/cmd/diagnostics`, JSON.stringify({ id: 'rm-5' }), { qos: 1 });
    assert.equal((await a.stop()).code, 0);
    assert.equal(existsSync(store), false, 'nothing noticed the removal: the store is gone');
    const from = got.length;
    const b = await startOnline();
    // The backup holds rm-1..3 (taken after them, before rm-4).
    for (const id of ['rm-1', 'rm-2', 'rm-3']) await notExecutedAgain(id, done[id]!);
    await waitFor(() => statuses('rm-5').some((s) => s.status === 'successful'), { timeoutMs: 30_000, what: `rm-5 delivered again and run\n${b.logText()}` });
    assert.deepEqual(
      statuses('rm-5').map((s) => s.status).filter((s) => s !== 'executing'),
      ['accepted', 'successful'],
      'rm-5 ran exactly once, after the restore',
    );
    await waitFor(() => got.slice(from).some((m) => m.topic.endsWith('/events') && P(m).type === 'incident' && P(m).code === 'store-restored' && P(m).cause === 'store-missing'), {
      timeoutMs: 20_000,
      what: `the store-restored incident on ~/events\n${b.logText()}`,
    });
    assert.equal((await b.stop()).code, 0);
    const inc = (await incidents()).find((i) => i.component === 'store' && i.action === 'restore-backup');
    assert.ok(inc, 'the incident is in the store');
    assert.equal(inc.cause, 'store-missing');
    assert.match(inc.detail ?? '', /agent\.db is missing while backups of it are there; restored the periodic backup/);
    assert.equal(existsSync(join(dataDir, 'pending-incidents.json')), false);
    assert.ok(readFileSync(store).length > 0);
  });
});
