/**
 * The demo's signed self-updates (CONTRACT.md section 2, `update`), played by the WMS against
 * the agent running under the real boot guard:
 *
 *  10. a bundle of this agent with the next version: download, verify, install into the other
 *      slot, activate, the guard restarts the agent into it, health-check, commit.
 *  11. a bundle whose release never gets healthy: it is activated, fails its health gate, and
 *      rolls back; the WMS gets `failed` with `rolled-back`, and the slot is marked bad.
 *
 * The PLC bridge keeps running through both: the agent of each release it activates hands it
 * over to that release's code (agent/bridge-upgrade.ts), and the first update's health gate
 * waits for that handover.
 *
 * Each expectation is awaited with a deadline and throws, naming what did not come, when it fails.
 */
import { runCli, waitGuard, type GuardEvent, type GuardProcess } from './agent.js';
import type { BundleServer, DemoBundles } from './bundles.js';
import { expectBridgeSlot, type PlcDemo } from './plc-steps.js';
import { expectStatus, print, printCli, say } from './ui.js';
import { brief, type Received, type StatusMessage, type WmsSim } from './wms-sim.js';

const GOOD_MS = 30_000;
/** The failed gate takes ota.healthGate.timeoutMs, plus two agent starts. */
const UNHEALTHY_MS = 40_000;
/** The rolled-back release's agent hands the bridge back to its code after it started. */
const BRIDGE_MS = 20_000;
const ONLINE_MS = 15_000;
const GUARD_MS = 5_000;

export interface UpdateDemo {
  sim: WmsSim;
  guard: GuardProcess;
  server: BundleServer;
  bundles: DemoBundles;
  /** The version and slot running now. */
  version: string;
  slot: 'A' | 'B';
  cli: string;
  env: NodeJS.ProcessEnv;
  /** `--config FILE`, for the CLI calls. */
  local: string[];
  plc: PlcDemo;
}

interface UpdateResult {
  fromVersion?: unknown;
  toVersion?: unknown;
  slot?: unknown;
  rolledBack?: unknown;
}

/** The progress of command `id` after `after`, consecutive repeats folded: `download 0% 100%`, `verify`, ... */
function progressOf(sim: WmsSim, id: string, after: number): { steps: string[]; text: string } {
  const shown: { step: string; percents: number[] }[] = [];
  for (const m of sim.received) {
    const p = m.payload as unknown as StatusMessage;
    if (m.seq <= after || m.sub !== `res/${id}` || p.status !== 'executing' || !p.progress || m.again) continue;
    let cur = shown.at(-1);
    if (cur?.step !== p.progress.step) shown.push((cur = { step: p.progress.step, percents: [] }));
    if (p.progress.percent !== undefined && cur.percents.at(-1) !== p.progress.percent) cur.percents.push(p.progress.percent);
  }
  const text = shown.map((s) => `${s.step}${s.percents.map((n) => ` ${n}%`).join('')}`).join(' → ');
  return { steps: shown.map((s) => s.step), text };
}

/** One line for what the guard did since `from`: exits, rollbacks, starts, commits. */
function guardStory(events: GuardEvent[], from: number): string {
  const parts: string[] = [];
  for (const e of events.slice(from)) {
    const s = String(e.slot);
    if (e.event === 'child-exit') parts.push(`agent of slot ${s} exited ${String(e.code ?? e.signal)} (${String(e.reason)})`);
    else if (e.event === 'rolled-back') parts.push(`slot ${String(e.from)} abandoned for ${s}`);
    else if (e.event === 'spawned') parts.push(`pid ${String(e.childPid)} started from slot ${s}${e.trial === true ? ' on trial' : ''}`);
    else if (e.event === 'trial-committed') parts.push(`slot ${s} committed`);
  }
  return parts.join(' → ');
}

function checkResult(st: StatusMessage, want: Required<UpdateResult>): void {
  const r = (st.result ?? {}) as UpdateResult;
  if (r.fromVersion !== want.fromVersion || r.toVersion !== want.toVersion || r.slot !== want.slot || r.rolledBack !== want.rolledBack) {
    throw new Error(`command ${st.id}: expected result ${brief(want)}, got ${brief(st.result)}`);
  }
}

async function online(d: UpdateDemo, version: string, slot: string, after: number): Promise<Received> {
  const ok = (m: Received): boolean => m.sub === 'status' && m.payload.state === 'online' && m.payload.version === version && m.payload.slot === slot;
  return d.sim.waitFor(`status "online" ${version} slot ${slot}`, ok, ONLINE_MS, after);
}

async function cli(d: UpdateDemo, args: string[]): Promise<string> {
  const r = await runCli(d.cli, [...args, ...d.local], d.env);
  printCli(`${r.stdout}${r.stderr}`);
  if (r.code !== 0) throw new Error(`edge-agent ${args.join(' ')} exited with ${r.code}`);
  return r.stdout;
}

/** Steps 10 and 11; returns the summary lines. */
export async function demoUpdates(d: UpdateDemo): Promise<string[]> {
  const shown: string[] = [];
  const { sim, guard, bundles } = d;
  const target = d.slot === 'A' ? 'B' : 'A';

  const good = bundles.good;
  say(`== 10. update ${d.version} -> ${good.version}: a signed bundle of this agent, installed into slot ${target}`);
  let mark = sim.mark();
  let gMark = guard.events.length;
  await sim.send('update', { id: 'up-1', params: { url: d.server.url(good.file) } });
  const u1 = await sim.terminal('up-1', GOOD_MS, mark);
  expectStatus(u1, 'successful');
  checkResult(u1, { fromVersion: d.version, toVersion: good.version, slot: target, rolledBack: false });
  const p1 = progressOf(sim, 'up-1', mark);
  print(`   progress: ${p1.text}`);
  const want = ['download', 'verify', 'install', 'activate', 'health-check', 'commit'];
  if (p1.steps.join() !== want.join()) throw new Error(`up-1: expected the steps ${want.join(', ')}, got ${p1.steps.join(', ')}`);
  print(`   result: ${brief(u1.result)}`);
  await online(d, good.version, target, mark);
  await waitGuard(guard, `the commit of slot ${target}`, (ev) => ev.slice(gMark).some((e) => e.event === 'trial-committed' && e.slot === target), GUARD_MS);
  print(`   guard: ${guardStory(guard.events, gMark)}`);
  shown.push(`update ${d.version} -> ${good.version}: ${p1.steps.join(' → ')}; successful, now slot ${target}`);
  shown.push(await expectBridgeSlot(d.plc, target, BRIDGE_MS));
  say('== `edge-agent slots`');
  await cli(d, ['slots']);

  const bad = bundles.unhealthy;
  const back = target;
  const trial = back === 'A' ? 'B' : 'A';
  say(`== 11. update ${good.version} -> ${bad.version}: this release never connects, so it fails its health gate`);
  mark = sim.mark();
  gMark = guard.events.length;
  await sim.send('update', { id: 'up-2', params: { url: d.server.url(bad.file) } });
  const u2 = await sim.terminal('up-2', UNHEALTHY_MS, mark);
  expectStatus(u2, 'failed', 'rolled-back');
  checkResult(u2, { fromVersion: good.version, toVersion: bad.version, slot: back, rolledBack: true });
  const p2 = progressOf(sim, 'up-2', mark);
  print(`   progress: ${p2.text}`);
  const activated = p2.steps.indexOf('activate');
  if (activated < 0 || p2.steps.indexOf('health-check') < activated) throw new Error(`up-2: expected activate, then health-check; got ${p2.steps.join(', ')}`);
  print(`   result: ${brief(u2.result)}`);
  // The status that counts comes after the activation: the one from the release we went back to.
  const activatedAt = sim.received.find((m) => m.seq > mark && m.sub === 'res/up-2' && (m.payload as unknown as StatusMessage).progress?.step === 'activate');
  await online(d, good.version, back, activatedAt?.seq ?? mark);
  await waitGuard(
    guard,
    `a start of slot ${trial} and then of slot ${back}`,
    (ev) => {
      const starts = ev.slice(gMark).filter((e) => e.event === 'spawned');
      return starts.some((e, i) => e.slot === trial && starts.slice(i + 1).some((f) => f.slot === back));
    },
    GUARD_MS,
  );
  print(`   guard: ${guardStory(guard.events, gMark)}`);
  shown.push(`update ${good.version} -> ${bad.version}: activated, health gate failed, rolled back; failed rolled-back, back on ${good.version} slot ${back}`);
  shown.push(await expectBridgeSlot(d.plc, back, BRIDGE_MS));
  say('== `edge-agent slots`: the failed release is marked bad');
  const slots = await cli(d, ['slots']);
  if (!new RegExp(`^${trial}\\s+${bad.version.replace(/\./g, '\\.')}\\s+bad\\b`, 'm').test(slots)) throw new Error(`edge-agent slots does not show slot ${trial} (${bad.version}) bad`);
  say('== `edge-agent history`');
  await cli(d, ['history', '--limit', '12']);
  shown.push(`edge-agent slots: ${trial} ${bad.version} bad; edge-agent history`);
  return shown;
}
