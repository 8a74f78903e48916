/**
 * Measurements 7 and 8: how long the WMS sees a gateway down while an update activates, and
 * while a release that failed its health gate hands back to the old one. A real mosquitto, the
 * real boot guard in a temp ROOT (test/helpers/ota-root.ts) started as the systemd unit does
 * (defaults, --node-flag --max-semi-space-size=1), ota.healthGate {stableMs 1000, timeoutMs 4000}.
 *
 *   activation-downtime  update 1.0.0 -> 1.1.0 (bundle of this build): the old agent's retained
 *                        `offline` -> the new agent's first `online`/`updating`
 *   rollback-time        update to 1.2.0, isConnected() patched to false: its log line 'health
 *                        gate failed: rolling back' (after slots.json) -> 1.1.0 `online` again
 *   reference (both)     `restart {component: agent}` through the guard: `offline` -> `online`
 *
 * Status times are a subscriber's receive times (Date.now()); the breakdown, from guard and agent
 * log lines (ISO ms, same clock): stop (-> guard's child-exit), respawn (-> spawned), boot (->
 * the daemon's startedAt: node, imports, config), init+connect (-> 'connected to the WMS
 * broker'), publish (-> status received). One ROOT per run: restart, update (slot B), failing
 * update (slot A, rolled back to B). Guards, agents, temp dirs go, also on failure or a signal.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCa, issueCert } from '../certs/devca.js';
import { createBundle } from '../ota/bundle-writer.js';
import { makeOtaRoot, makeRelease, patchFile, serveBundles, startGuard, TERMINAL, until, type BundleServer, type GuardRun } from '../test/helpers/ota-root.js';
import { mqttClient } from '../test/helpers/util.js';
import { startBenchBroker, type BenchBroker } from './broker.js';
import { measurement, type BenchResults, type Measurement } from './report.js';

const GUARD_ARGS = ['--node-flag', '--max-semi-space-size=1'];
const HEALTH_GATE = { stableMs: 1000, timeoutMs: 4000 };
const PARTS = ['stopMs', 'respawnMs', 'bootMs', 'initConnectMs', 'publishMs'] as const;

type Log = (s: string) => void;
type Line = Record<string, unknown>;
export type Segments = Record<(typeof PARTS)[number], number>;
/** toOfflineMs, rollback only: the gate failed -> the failed release's `offline` received. */
export interface Gap extends Segments { totalMs: number; toOfflineMs?: number }
/** One sample of each per run; `broker` as in BenchResults. */
export interface ActivationResults { broker: BenchResults['broker']; restart: Gap[]; activation: Gap[]; rollback: Gap[] }
/** A `~/status` message and its receive time (ms since the epoch). */
interface Status { state: string; version: string; at: number }
/** `guards` and `dirs`: what is still running or on disk, for the clean-up on a signal. */
interface Env { url: string; protocolVersion: 4 | 5; sub: MqttClient; server: BundleServer; v1: string; trust: string; guards: Set<GuardRun>; dirs: Set<string> }

const timeOf = (l: Line | undefined): number => (l ? Date.parse(String(l.time)) : NaN);

/** The stop -> online breakdown of the first agent exit logged at or after g.lines[from]; undefined until every line is in. */
function segments(g: GuardRun, from: number, startAt: number, endAt: number): Segments | undefined {
  const lines = g.lines.slice(from).filter((l): l is Line => typeof l === 'object');
  const guard = (event: string, after: number): number => lines.findIndex((l, k) => k > after && l.component === 'boot-guard' && l.event === event);
  const exit = guard('child-exit', -1);
  const spawned = exit < 0 ? undefined : lines[guard('spawned', exit)];
  const agent = (msg: string): Line | undefined => (spawned ? lines.find((l) => l.pid === spawned.childPid && l.msg === msg) : undefined);
  const ready = agent('agent ready');
  const [exitAt, spawnAt, connAt] = [timeOf(lines[exit]), timeOf(spawned), timeOf(agent('connected to the WMS broker'))];
  const startedAt = timeOf(ready) - Number(ready?.startMs);
  if (![exitAt, spawnAt, connAt, startedAt].every(Number.isFinite)) return undefined;
  return { stopMs: exitAt - startAt, respawnMs: spawnAt - exitAt, bootMs: startedAt - spawnAt, initConnectMs: connAt - startedAt, publishMs: endAt - connAt };
}

/** One ROOT, one guard: a restart, an update, a failed update; pushes one sample of each. */
async function runOnce(env: Env, i: number, out: ActivationResults, log: Log): Promise<void> {
  const id = `bench-act-${process.pid}-${i}`;
  const config = { gatewayId: id, mqtt: { url: env.url, protocolVersion: env.protocolVersion }, ota: { trustAnchors: env.trust, healthGate: HEALTH_GATE }, shutdownTimeoutMs: 10_000 };
  const r = makeOtaRoot({ releaseDir: env.v1, version: '1.0.0', config });
  env.dirs.add(r.root);
  const statuses: Status[] = [];
  const res = new Map<string, string[]>();
  const onMessage = (topic: string, buf: Buffer): void => {
    const at = Date.now();
    let p: Line;
    try {
      p = JSON.parse(buf.toString('utf8')) as Line;
    } catch {
      return; // the empty retained payload that clears the status
    }
    if (topic === `edge/${id}/status`) statuses.push({ state: String(p.state), version: String(p.version), at });
    else if (topic.startsWith(`edge/${id}/res/`)) res.set(String(p.id), [...(res.get(String(p.id)) ?? []), String(p.status)]);
  };
  env.sub.on('message', onMessage);
  await env.sub.subscribeAsync(`edge/${id}/#`, { qos: 1 });
  const g = startGuard(r, GUARD_ARGS);
  env.guards.add(g);
  const send = (op: string, cid: string, params: Record<string, unknown>): void => void env.sub.publish(`edge/${id}/cmd/${op}`, JSON.stringify({ id: cid, params }), { qos: 1 });
  const terminal = async (cid: string, want: string): Promise<void> => {
    const t = (): string | undefined => res.get(cid)?.find((s) => TERMINAL.includes(s));
    await until(g, () => t() !== undefined, `a terminal status of ${cid}`, 90_000);
    if (t() !== want) throw new Error(`${cid} ended ${t()}, not ${want}\n${g.tail()}`);
  };
  const find = (from: number, ok: (s: Status) => boolean): number => statuses.findIndex((s, k) => k >= from && ok(s));
  /** First `offline` from status `mark` (or `startAt`, a log time) -> next status `ok`; breakdown from g.lines[line]. */
  const gap = async (what: string, mark: number, line: number, ok: (s: Status) => boolean, startAt?: number): Promise<Gap> => {
    const off = (): number => find(mark, (s) => s.state === 'offline');
    const on = (): number => (startAt !== undefined ? find(mark, ok) : off() < 0 ? -1 : find(off() + 1, ok));
    await until(g, () => on() >= 0, () => `${what}; statuses: ${JSON.stringify(statuses.slice(mark))}`, 60_000);
    const offAt = statuses[off()]?.at ?? NaN;
    const onAt = statuses[on()]!.at;
    const from = startAt ?? offAt;
    let s: Segments | undefined;
    await until(g, () => (s = segments(g, line, from, onAt)) !== undefined, `the log lines of ${what}`, 10_000);
    return { totalMs: onAt - from, ...s!, ...(startAt === undefined ? {} : { toOfflineMs: offAt - startAt }) };
  };
  try {
    await until(g, () => find(0, (s) => s.state === 'online') >= 0, 'the first online status', 30_000);
    // Subscribed to its commands once it answers one (one sent before that would be lost).
    for (let n = 1; !res.has(`ready-${n - 1}`); n++) {
      if (n > 30 || !g.running()) throw new Error(`the agent answered no ping\n${g.tail()}`);
      send('ping', `ready-${n}`, {});
      await until(g, () => res.has(`ready-${n}`), `an answer to ready-${n}`, 1000).catch(() => undefined);
    }

    let [mark, line] = [statuses.length, g.lines.length];
    send('restart', `restart-${i}`, { component: 'agent' });
    await terminal(`restart-${i}`, 'successful');
    out.restart.push(await gap('restart: offline -> online', mark, line, (s) => s.state === 'online'));

    [mark, line] = [statuses.length, g.lines.length];
    send('update', `update-${i}`, { url: env.server.url('v1.1.0.tar') });
    out.activation.push(await gap('update: offline -> 1.1.0 up', mark, line, (s) => (s.state === 'online' || s.state === 'updating') && s.version === '1.1.0'));
    await terminal(`update-${i}`, 'successful');
    await until(g, () => statuses.at(-1)?.state === 'online', '1.1.0 committed and online', 30_000);

    [mark, line] = [statuses.length, g.lines.length];
    send('update', `fail-${i}`, { url: env.server.url('v1.2.0-unhealthy.tar') });
    const failLine = (): number => g.lines.findIndex((l, k) => k >= line && typeof l === 'object' && l.msg === 'health gate failed: rolling back');
    await until(g, () => failLine() >= 0, 'the health gate of 1.2.0 to fail', 60_000);
    const failAt = timeOf(g.lines[failLine()] as Line);
    const at = find(mark, (s) => s.version === '1.2.0'); // the failed release's statuses begin here
    if (at < 0) throw new Error(`1.2.0 published no status: ${JSON.stringify(statuses.slice(mark))}\n${g.tail()}`);
    out.rollback.push(await gap('rollback: 1.1.0 online again', at, failLine(), (s) => s.state === 'online' && s.version === '1.1.0', failAt));
    await terminal(`fail-${i}`, 'failed');
    const ms = (gs: Gap[]): string => `${Math.round(gs.at(-1)!.totalMs)} ms`;
    log(`ota activation run ${i + 1}: restart ${ms(out.restart)}, activation ${ms(out.activation)}, rollback ${ms(out.rollback)}`);
  } finally {
    env.sub.off('message', onMessage);
    await g.stop(5000);
    env.guards.delete(g);
    rmSync(r.root, { recursive: true, force: true }); // ROOT/node_modules is a symlink: only the link goes
    env.dirs.delete(r.root);
    await env.sub.unsubscribeAsync(`edge/${id}/#`);
    await env.sub.publishAsync(`edge/${id}/status`, '', { qos: 1, retain: true }); // clears the retained status
  }
}

/** Releases 1.0.0, 1.1.0 and the unhealthy 1.2.0 from this build; the last two as signed bundles. */
async function releases(base: string): Promise<{ v1: string; trust: string; bundles: string }> {
  const ca = createCa({ commonName: 'bench release CA' });
  const signer = issueCert(ca, { commonName: 'bench release signer', kind: 'codeSigning' });
  const trust = join(base, 'trust.pem');
  writeFileSync(trust, ca.certPem);
  const v1 = join(base, 'rel-1.0.0');
  makeRelease(v1, '1.0.0');
  const bundles = join(base, 'bundles');
  mkdirSync(bundles);
  const bundle = async (name: string, version: string, patch?: (dir: string) => void): Promise<void> => {
    const dir = join(base, `rel-${version}`);
    makeRelease(dir, version, v1);
    patch?.(dir);
    await createBundle({ inDir: dir, version, compatible: ['wms-gateway'], keyPem: signer.keyPem, certPem: signer.certPem, out: join(bundles, name) });
  };
  await bundle('v1.1.0.tar', '1.1.0');
  await bundle('v1.2.0-unhealthy.tar', '1.2.0', (d) => patchFile(join(d, 'dist', 'agent', 'wms-link.js'), /isConnected\(\) \{\s*return this\.connected;/, 'isConnected() {\n        return false;'));
  return { v1, trust, bundles };
}

export async function activationPhase(cfg: { runs: number; prefer?: 'mosquitto' | 'aedes' | undefined }, log: Log): Promise<ActivationResults> {
  const base = mkdtempSync(join(tmpdir(), 'bench-activation-'));
  const guards = new Set<GuardRun>();
  const dirs = new Set<string>([base]);
  /** Synchronous, for 'exit' and signals: SIGKILL every guard and agent still running, remove the dirs. */
  const killAll = (): void => {
    for (const g of guards) {
      g.proc.kill('SIGKILL');
      // The guard runs one agent at a time: only the last one spawned can be alive, if its exit was not logged.
      const spawned = g.logged('spawned');
      const pid = spawned.at(-1)?.childPid;
      if (typeof pid === 'number' && g.logged('child-exit').length < spawned.length) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // ESRCH: it has exited
        }
      }
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  let [broker, sub, server]: [BenchBroker | undefined, MqttClient | undefined, BundleServer | undefined] = [undefined, undefined, undefined];
  const onSignal = (): void => {
    killAll();
    void Promise.allSettled([broker?.stop()]).then(() => process.exit(130)); // mosquitto and its temp dir
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('exit', killAll);
  try {
    broker = await startBenchBroker(cfg.prefer);
    const note = broker.kind === 'mosquitto' ? 'real broker' : 'aedes, not mosquitto: numbers are not comparable';
    log(`ota activation: broker ${broker.version} at ${broker.url} (${note}), ${cfg.runs} run(s)`);
    const rel = await releases(base);
    server = await serveBundles(rel.bundles);
    sub = await mqttClient(broker.url, { protocolVersion: broker.protocolVersion, clientId: `bench-act-sub-${process.pid}`, reconnectPeriod: 0 });
    const env: Env = { url: broker.url, protocolVersion: broker.protocolVersion, sub, server, v1: rel.v1, trust: rel.trust, guards, dirs };
    const out: ActivationResults = { broker: { kind: broker.kind, version: broker.version, note }, restart: [], activation: [], rollback: [] };
    for (let i = 0; i < cfg.runs; i++) await runOnce(env, i, out, log);
    return out;
  } catch (err) {
    if (broker?.logs()) log(`--- broker log ---\n${broker.logs()}`);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const g of guards) await g.stop(5000);
    await sub?.endAsync(true);
    await server?.close();
    await broker?.stop();
    killAll();
    process.off('exit', killAll);
  }
}

function parts(gs: Gap[], prefix = ''): Record<string, number[]> {
  const name = (k: string): string => (prefix ? `${prefix}${k[0]!.toUpperCase()}${k.slice(1)}` : k);
  return Object.fromEntries(PARTS.map((k) => [name(k), gs.map((x) => x[k])]));
}

export function activationMeasurements(a: ActivationResults): Measurement[] {
  const reference = { name: 'restart {component: agent} via the guard', samples: a.restart.map((x) => x.totalMs) };
  return [
    measurement({
      id: 'activation-downtime',
      title: 'Activation downtime, 1.0.0 -> 1.1.0 (offline -> up)',
      unit: 'ms',
      samples: a.activation.map((x) => x.totalMs),
      reference,
      goal: { op: '<=', value: 3000 },
      details: { ...parts(a.activation), ...parts(a.restart, 'ref') },
    }),
    measurement({
      id: 'rollback-time',
      title: 'Rollback, health gate failed -> old version online',
      unit: 'ms',
      samples: a.rollback.map((x) => x.totalMs),
      reference,
      goal: { op: '<=', value: 15_000 },
      details: { toOfflineMs: a.rollback.map((x) => x.toOfflineMs ?? NaN), ...parts(a.rollback) },
    }),
  ];
}
