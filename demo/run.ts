/**
 * `npm run demo`: the agent against a WMS, on a machine with nothing installed.
 *
 * An embedded broker (aedes), the real daemon as a child process (its log made readable by
 * pino-pretty), and a small WMS that sends commands one after another, each awaited with a
 * deadline: diagnostics, a duplicate id, an unknown op, invalid JSON, an expired command, the
 * admin CLI (`status`, `event`), and a restart of the agent itself. Exits 0 when every expected
 * status arrived, 1 (naming what was missing) when one did not.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedBroker, type EmbeddedBroker } from './broker.js';
import { agentEnv, runCli, startAgent, stopAll, type AgentProcess } from './agent.js';
import { brief, WmsSim, type StatusMessage } from './wms-sim.js';

const GATEWAY = 'demo-gw';
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'agent', 'cli', 'index.js');
const CONNECT_MS = 10_000;
const STATUS_MS = 5_000;
const RESTART_MS = 15_000;
const STOP_MS = 8_000;

const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: number, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const print = (line: string): void => void process.stdout.write(`${line}\n`);
const say = (line: string): void => print(paint(1, line));
const wms = (line: string): void => print(paint(33, line));

function expect(st: StatusMessage, status: string, code?: string): void {
  const got = `${st.status}${st.reason ? ` (${st.reason.code}: ${st.reason.message})` : ''}`;
  if (st.status !== status || (code !== undefined && st.reason?.code !== code)) {
    throw new Error(`command ${st.id}: expected ${status}${code ? ` with ${code}` : ''}, got ${got}`);
  }
}

/** The daemon's pid as `edge-agent status --json` reports it (live, or the last one the store saw). */
async function daemonPid(env: NodeJS.ProcessEnv, local: string[]): Promise<number | undefined> {
  const r = await runCli(CLI, ['status', '--json', ...local], env, 2000);
  try {
    const pid = (JSON.parse(r.stdout) as { pid?: unknown }).pid;
    return typeof pid === 'number' ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'edge-agent-demo-'));
  const dataDir = join(work, 'data');
  const configPath = join(work, 'config.yaml');
  mkdirSync(dataDir);
  // aedes speaks MQTT 3.1.1 only; the agent's default is MQTT 5.
  writeFileSync(configPath, 'mqtt:\n  protocolVersion: 4\n  reconnect: {initialMs: 200, maxMs: 2000}\n');
  const env = agentEnv(process.env);
  const local = ['--config', configPath, '--data-dir', dataDir];
  const shown: string[] = [];
  const pids = new Set<number>();
  let broker: EmbeddedBroker | undefined;
  let sim: WmsSim | undefined;
  let agent: AgentProcess | undefined;
  let failed = false;
  let interrupted = false;
  let stopping: Promise<void> | undefined;
  /** Agents first (they say `offline` while the broker still runs), then the WMS, then the broker. */
  const stopEverything = (): Promise<void> =>
    (stopping ??= (async () => {
      say('== stopping: SIGTERM to the agent, then the broker');
      if (agent) {
        const killed = await stopAll(pids, agent.allGone, () => daemonPid(env, local), STOP_MS);
        if (killed.length > 0) process.stderr.write(`agent pid(s) ${killed.join(', ')} ignored SIGTERM for ${STOP_MS} ms: killed\n`);
      }
      await sim?.stop();
      await broker?.close();
      if (failed && !interrupted) process.stderr.write(`agent data kept in ${work}\n`);
      else rmSync(work, { recursive: true, force: true });
    })());
  // Ctrl-C: the detached replacement is in its own session, so the terminal's SIGINT misses it.
  process.once('SIGINT', () => {
    interrupted = true;
    void stopEverything().finally(() => process.exit(130));
  });

  try {
    broker = await startEmbeddedBroker();
    say(`== embedded MQTT broker (aedes) on ${broker.url}; data dir ${dataDir}`);
    sim = new WmsSim({ url: broker.url, gatewayId: GATEWAY, print: wms });
    await sim.start();
    say(`== WMS simulator subscribed to edge/${GATEWAY}/#; starting the agent`);
    let mark = sim.mark();
    agent = startAgent({
      cli: CLI,
      args: ['run', '--broker', broker.url, '--gateway-id', GATEWAY, ...local],
      env,
      prefix: paint(36, 'agent │ '),
      colorize: color,
      print,
    });
    const firstPid = agent.child.pid;
    if (firstPid === undefined) throw new Error('the agent could not be spawned');
    pids.add(firstPid);
    await sim.waitFor('status "online" from the agent', (m) => m.sub === 'status' && m.payload.state === 'online', CONNECT_MS, mark);
    shown.push('agent online (retained ~/status)');

    say('== 1. diagnostics');
    mark = sim.mark();
    await sim.send('diagnostics', { id: 'd-1', params: {} });
    const d1 = await sim.terminal('d-1', STATUS_MS, mark);
    expect(d1, 'successful');
    shown.push('diagnostics: accepted -> executing -> successful');

    say('== 2. the same id again: its latest status is published again, nothing is executed');
    mark = sim.mark();
    await sim.send('diagnostics', { id: 'd-1', params: {} });
    const again = await sim.terminal('d-1', STATUS_MS, mark);
    expect(again, 'successful');
    if (again.ts !== d1.ts) throw new Error(`duplicate d-1 was executed again (ts ${d1.ts} -> ${again.ts})`);
    say(`   same status, same ts ${again.ts}: not executed twice`);
    shown.push('duplicate id: latest status republished, not re-executed');

    say('== 3. an operation the agent does not know');
    mark = sim.mark();
    await sim.send('teleport', { id: 'u-1', params: { to: 'bay 7' } });
    expect(await sim.terminal('u-1', STATUS_MS, mark), 'rejected', 'unknown-op');
    shown.push('unknown op: rejected unknown-op');

    say('== 4. malformed JSON (the id can still be read, so it gets an answer)');
    mark = sim.mark();
    await sim.send('diagnostics', '{"id": "j-1", "params": {');
    expect(await sim.terminal('j-1', STATUS_MS, mark), 'rejected', 'invalid-json');
    shown.push('invalid JSON: rejected invalid-json');

    say('== 5. a command that expired before it arrived');
    mark = sim.mark();
    await sim.send('diagnostics', { id: 'x-1', expiresAt: new Date(Date.now() - 60_000).toISOString() });
    expect(await sim.terminal('x-1', STATUS_MS, mark), 'rejected', 'expired');
    shown.push('expired command: rejected expired');

    say('== 6. `edge-agent status` over the admin socket');
    const status = await runCli(CLI, ['status', ...local], env);
    for (const line of `${status.stdout}${status.stderr}`.split('\n')) if (line) print(paint(35, `cli   │ ${line}`));
    if (status.code !== 0) throw new Error(`edge-agent status exited with ${status.code}`);
    shown.push('edge-agent status (exit 0)');

    say('== 7. `edge-agent event`: an admin note reaches the WMS on ~/events');
    mark = sim.mark();
    const note = await runCli(CLI, ['event', ...local, '--code', 'demo-note', '--message', 'forklift 7 parked in bay 3 for service'], env);
    print(paint(35, `cli   │ ${(note.stdout + note.stderr).trim()}`));
    if (note.code !== 0) throw new Error(`edge-agent event exited with ${note.code}`);
    await sim.waitFor('the admin note on ~/events', (m) => m.sub === 'events' && m.payload.code === 'demo-note', STATUS_MS, mark);
    shown.push('admin note on ~/events');

    say(`== 8. restart the agent (pid ${firstPid}); the next process reports the outcome`);
    mark = sim.mark();
    await sim.send('restart', { id: 'r-1', params: { component: 'agent' } });
    const r1 = await sim.terminal('r-1', RESTART_MS, mark);
    expect(r1, 'successful');
    const result = (r1.result ?? {}) as { pid?: unknown; previousPid?: unknown };
    if (typeof result.pid !== 'number') throw new Error(`restart result has no pid: ${brief(r1.result)}`);
    pids.add(result.pid);
    say(`   old pid ${String(result.previousPid)} -> new pid ${result.pid}; the first process exited with ${String(await agent.exited)}`);
    if (result.previousPid !== firstPid || result.pid === firstPid) throw new Error(`restart: expected previousPid ${firstPid} and a new pid, got ${brief(result)}`);
    shown.push(`restart: pid ${firstPid} -> ${result.pid}, successful from the new process`);

    say('== 9. diagnostics on the new process');
    mark = sim.mark();
    await sim.send('diagnostics', { id: 'd-2' });
    const d2 = await sim.terminal('d-2', STATUS_MS, mark);
    expect(d2, 'successful');
    if ((d2.result as { pid?: unknown } | undefined)?.pid !== result.pid) throw new Error('diagnostics d-2 did not come from the new process');
    shown.push('diagnostics after the restart: answered by the new pid');

    const counts = sim.statusCounts();
    say('== summary');
    for (const s of shown) print(`   ✓ ${s}`);
    print(`   ${counts.all} statuses on ~/res: ${counts.terminal} terminal, ${counts.again} sent again (QoS 1 is at-least-once)`);
    print(`   ${sim.received.length} messages in all, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return 0;
  } catch (err) {
    failed = true;
    if (interrupted) return 130;
    process.stderr.write(`\nDEMO FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
    if (sim) process.stderr.write(`last messages the WMS received:\n${sim.received.slice(-8).map((m) => `  ${m.sub} ${brief(m.payload, 160)}`).join('\n')}\n`);
    return 1;
  } finally {
    await stopEverything();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`demo crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
