/**
 * `npm run demo`: the agent against a WMS, on a machine with nothing installed.
 *
 * An embedded broker (aedes); a simulated PLC (Modbus TCP, a child process: demo/plc.ts); the
 * agent installed into a temporary A/B root (demo/install.ts) and started through the real boot
 * guard, as systemd would (its log and the guard's made readable by pino-pretty), its watchdog
 * starting the PLC bridge; and a small WMS that sends commands one after another, each awaited
 * with a deadline: the bridge's data and two writes (demo/plc-steps.ts), diagnostics, a
 * duplicate id, an unknown op, invalid JSON, an expired command, a maintenance procedure and a
 * dry run of a repair, the admin CLI (`status`,
 * `event`), a restart of the agent (exit 75: the guard starts it again), then two signed
 * self-updates (demo/update.ts): one committed, one that fails its health gate and is rolled
 * back; the bridge keeps publishing throughout and is handed over to each release's code. Ends
 * with the PLC data report (a seq gap fails the demo). Exits 0 when every expected status
 * arrived, 1 (naming what was missing) when one did not; stops the guard (which stops its
 * agent), the bridge and the PLC, and removes the temp dir either way.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedBroker, type EmbeddedBroker } from './broker.js';
import { agentEnv, agentPids, runCli, startGuard, stopGuard, waitGuard, type GuardProcess } from './agent.js';
import { makeBundles, serveBundles, type BundleServer } from './bundles.js';
import { installRoot, PLC_DEVICE, repoVersion } from './install.js';
import { asciiRegisters, BridgeWatch, shortCli, slotOf, startPlcSim, type PlcSimProcess } from './plc.js';
import { demoPlcUp, demoPlcWrites, plcReport, type PlcDemo } from './plc-steps.js';
import { color, expectStatus as expect, paint, print, printCli, say, wms } from './ui.js';
import { demoUpdates } from './update.js';
import { brief, WmsSim } from './wms-sim.js';

const GATEWAY = 'demo-gw';
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(REPO, 'dist', 'agent', 'cli', 'index.js');
const CONNECT_MS = 10_000;
const STATUS_MS = 5_000;
const RESTART_MS = 15_000;
const STOP_MS = 12_000;
/** Fast restarts for the demo; the guard's SIGKILL comes before the demo's own (STOP_MS). */
const GUARD_ARGS = ['--max-trial-starts', '3', '--trial-timeout-ms', '30000', '--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100', '--kill-grace-ms', '10000'];
const HEALTH_GATE = { stableMs: 2000, timeoutMs: 8000 };

async function main(): Promise<number> {
  const t0 = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'edge-agent-demo-'));
  const env = agentEnv(process.env);
  const shown: string[] = [];
  let broker: EmbeddedBroker | undefined;
  let server: BundleServer | undefined;
  let sim: WmsSim | undefined;
  let guard: GuardProcess | undefined;
  let plc: PlcSimProcess | undefined;
  let watch: BridgeWatch | undefined;
  let bridgeLog: string | undefined;
  let failed = false;
  let interrupted = false;
  let stopping: Promise<void> | undefined;
  /**
   * The guard and its agent first (the agent says `offline` while the broker still runs), then
   * the bridge (detached: the agent leaves it running), the PLC, the WMS, the bundle server, the broker.
   */
  const stopEverything = (): Promise<void> =>
    (stopping ??= (async () => {
      say('== stopping: SIGTERM to the boot guard (it stops its agent), to the PLC bridge, the PLC, then the broker');
      if (guard) {
        const killed = await stopGuard(guard, STOP_MS);
        if (killed.length > 0) process.stderr.write(`pid(s) ${killed.join(', ')} still ran ${STOP_MS} ms after SIGTERM to the guard: killed\n`);
        else print(`   guard pid ${String(guard.child.pid)} exited with ${String(await guard.exited)}; agent pids ${agentPids(guard).join(', ')}: all exited`);
      }
      if (watch) {
        const killed = await watch.stopBridge(STOP_MS);
        if (killed.length > 0) process.stderr.write(`bridge pid(s) ${killed.join(', ')} still ran ${STOP_MS} ms after SIGTERM: killed\n`);
        else if (watch.pids.length > 0) print(`   bridge pids ${watch.pids.join(', ')}: all exited`);
      }
      if (plc) print(`   PLC simulator pid ${String(plc.child.pid)} ${(await plc.stop(STOP_MS)) ? 'exited' : 'killed'}`);
      await sim?.stop();
      await server?.close();
      await broker?.close();
      if (failed && !interrupted) process.stderr.write(`agent data kept in ${work}\n`);
      else rmSync(work, { recursive: true, force: true });
    })());
  // Ctrl-C reaches the guard and its agent too (one process group); this stops them in order.
  process.once('SIGINT', () => {
    interrupted = true;
    void stopEverything().finally(() => process.exit(130));
  });

  try {
    broker = await startEmbeddedBroker();
    say(`== embedded MQTT broker (aedes) on ${broker.url}`);
    const version = repoVersion(REPO);
    const bundles = await makeBundles({ repo: REPO, dir: join(work, 'bundles'), current: version, compatible: 'wms-gateway' });
    plc = await startPlcSim(REPO, (line) => print(`plc   │ ${line}`));
    // What the WMS will see before its first write: a setpoint and a label already in the PLC.
    await plc.command({ set: { area: 'holding', address: 10, values: [800] } });
    await plc.command({ set: { area: 'holding', address: 20, values: asciiRegisters('IDLE', 4) } });
    say(`== simulated PLC (Modbus TCP, pid ${String(plc.child.pid)}) on 127.0.0.1:${plc.port}: a counter, a sine speed, a ramp, a toggling coil`);
    const inst = installRoot({ repo: REPO, root: join(work, 'root'), trustPem: bundles.trustPem, brokerUrl: broker.url, gatewayId: GATEWAY, healthGate: HEALTH_GATE, plcPort: plc.port });
    const local = ['--config', inst.configPath];
    // Where the agent's watchdog sends the bridge's output (recovery/process.ts).
    bridgeLog = join(inst.dataDir, 'recovery', 'plc-bridge.log');
    server = await serveBundles(join(work, 'bundles'));
    say(`== installed into ${inst.root}: slot A = ${version} (package.json + dist/), the boot guard in ROOT/guard, trust.pem = a dev CA, plc-bridge.yaml`);
    say(`== bundles ${bundles.good.version} and ${bundles.unhealthy.version} of this agent, signed by the CA's code-signing certificate, served on ${server.url('')}`);
    sim = new WmsSim({ url: broker.url, gatewayId: GATEWAY, print: wms });
    await sim.start();
    say(`== WMS simulator subscribed to edge/${GATEWAY}/#; starting the boot guard, which starts the agent from slot A`);
    watch = new BridgeWatch(inst.bridgeSocket, inst.bridgeConfigPath, (now, before) =>
      print(
        paint(32, before ? `bridge│ handed over: pid ${before.pid} (${shortCli(before.cli)}) → pid ${now.pid} (${shortCli(now.cli)}, v${now.version})` : `bridge│ pid ${now.pid} answers on its control socket: ${shortCli(now.cli)}, v${now.version}`),
      ),
    );
    watch.start();
    let mark = sim.mark();
    guard = startGuard({
      entry: inst.guard,
      root: inst.root,
      guardArgs: GUARD_ARGS,
      agentArgs: ['run', '--config', inst.configPath],
      env,
      agentPrefix: paint(36, 'agent │ '),
      guardPrefix: paint(34, 'guard │ '),
      colorize: color,
      print,
    });
    const g = guard;
    await sim.waitFor(`status "online" ${version} slot A from the agent`, (m) => m.sub === 'status' && m.payload.state === 'online' && m.payload.version === version && m.payload.slot === 'A', CONNECT_MS, mark);
    const firstPid = agentPids(g)[0];
    if (firstPid === undefined) throw new Error('the boot guard reported no agent');
    shown.push(`agent ${version} online from slot A under the boot guard (retained ~/status)`);

    const plcDemo: PlcDemo = { sim, watch, device: PLC_DEVICE, slot: 'A' };
    shown.push(...(await demoPlcUp(plcDemo, 0)));
    shown.push(...(await demoPlcWrites(plcDemo)));

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
    printCli(`${status.stdout}${status.stderr}`);
    if (status.code !== 0) throw new Error(`edge-agent status exited with ${status.code}`);
    shown.push('edge-agent status (exit 0)');

    say('== 7. `edge-agent event`: an admin note reaches the WMS on ~/events');
    mark = sim.mark();
    const note = await runCli(CLI, ['event', ...local, '--code', 'demo-note', '--message', 'forklift 7 parked in bay 3 for service'], env);
    printCli(note.stdout + note.stderr);
    if (note.code !== 0) throw new Error(`edge-agent event exited with ${note.code}`);
    await sim.waitFor('the admin note on ~/events', (m) => m.sub === 'events' && m.payload.code === 'demo-note', STATUS_MS, mark);
    shown.push('admin note on ~/events');

    say('== 7b. maintenance procedures (docs/maintenance.md): a health check, then a dry run of a repair');
    mark = sim.mark();
    await sim.send('maintenance', { id: 'm-1', params: { procedure: 'gateway-health-check' } });
    const m1 = await sim.terminal('m-1', STATUS_MS, mark);
    expect(m1, 'successful');
    await sim.send('maintenance', { id: 'm-2', params: { procedure: 'disk-pressure-repair', dryRun: true } });
    const m2 = await sim.terminal('m-2', STATUS_MS, mark);
    expect(m2, 'successful');
    const steps = ((m2.result ?? {}) as { steps?: { id: string; outcome: string }[] }).steps ?? [];
    say(`   dry run of disk-pressure-repair: ${steps.map((x) => `${x.id} ${x.outcome}`).join(', ')}`);
    shown.push('maintenance: gateway-health-check successful, disk-pressure-repair dry run (would-run steps)');

    say(`== 8. restart the agent (pid ${firstPid}): it exits 75, the guard starts it again, the new process reports the outcome`);
    mark = sim.mark();
    const gMark = g.events.length;
    await sim.send('restart', { id: 'r-1', params: { component: 'agent' } });
    const r1 = await sim.terminal('r-1', RESTART_MS, mark);
    expect(r1, 'successful');
    const result = (r1.result ?? {}) as { pid?: unknown; previousPid?: unknown };
    if (typeof result.pid !== 'number') throw new Error(`restart result has no pid: ${brief(r1.result)}`);
    if (result.previousPid !== firstPid || result.pid === firstPid) throw new Error(`restart: expected previousPid ${firstPid} and a new pid, got ${brief(result)}`);
    const newPid = result.pid;
    await waitGuard(g, `the restart of pid ${firstPid}`, (ev) => ev.slice(gMark).some((e) => e.event === 'spawned' && e.childPid === newPid), STATUS_MS);
    const exit = g.events.slice(gMark).find((e) => e.event === 'child-exit');
    say(`   old pid ${firstPid} exited with ${String(exit?.code)} (${String(exit?.reason)}) -> the guard started pid ${newPid}`);
    if (exit?.code !== 75) throw new Error(`restart: expected the agent to exit 75 for the guard, got ${brief(exit)}`);
    shown.push(`restart: pid ${firstPid} -> ${result.pid}, successful from the new process`);

    say('== 9. diagnostics on the new process');
    mark = sim.mark();
    await sim.send('diagnostics', { id: 'd-2' });
    const d2 = await sim.terminal('d-2', STATUS_MS, mark);
    expect(d2, 'successful');
    if ((d2.result as { pid?: unknown } | undefined)?.pid !== result.pid) throw new Error('diagnostics d-2 did not come from the new process');
    shown.push('diagnostics after the restart: answered by the new pid');

    shown.push(...(await demoUpdates({ sim, guard: g, server, bundles, version, slot: 'A', cli: CLI, env, local, plc: plcDemo })));

    const report = plcReport(sim, { fast: 200, slow: 1000 });
    if (report.problems.length > 0) throw new Error(`the PLC data has gaps: ${report.problems.join('; ')}`);
    shown.push(report.summary);
    if (slotOf(watch.current) !== plcDemo.slot) throw new Error(`the PLC bridge runs ${shortCli(watch.current?.cli)}, not slot ${plcDemo.slot}`);

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
    if (bridgeLog) process.stderr.write(`the PLC bridge's log (${bridgeLog}), last lines:\n${tail(bridgeLog, 12)}\n`);
    return 1;
  } finally {
    await stopEverything();
  }
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(unreadable: ${err instanceof Error ? err.message : String(err)})`;
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
