/**
 * `npm run bench`: the agent's speed and memory targets, each measured against a reference in
 * the same run and reported as a ratio (STYLE.md: never as timed assertions in tests).
 *
 *   1. start-up: spawn -> retained `online` seen by a subscriber    vs a minimal mqtt.js script
 *   2. idle RSS, 3 s after online                                    vs the same script, idle
 *   3. outbox with the broker down: RSS growth for 100k events       vs the same events in a JS array
 *      and its enqueue rate                                          vs plain better-sqlite3 inserts
 *   4. outbox drain after reconnect, msg/s until depth 0             vs plain mqtt.js QoS 1, same window
 *   5. OTA install of a 512 MiB bundle (Updater.install)             vs curl | tee >(sha256sum) | tar -x
 *   6. its peak RSS, and at 2 GiB                                    vs a plain http.get of the bundle
 *   7. activation downtime, update through the boot guard            vs `restart {component: agent}`
 *   8. rollback after a failed health gate, until the old is online  vs the same restart
 *   9. agent CPU with health sampling on                             vs the same agent with it off, side by side
 *  10. start with a corrupt config / a corrupt store -> online       vs a clean start (restore-bench.ts; `--only restore`)
 *  11. `edge-agent diag` wall time, healthy and all unreachable      vs `edge-agent status` (diag-bench.ts; `--only diag`)
 *  12. a hung component: hang -> running again, beyond the deadline  vs a bare kill -9 + respawn (recovery-bench.ts; `--only recovery`)
 *      and kill -9 of the PLC bridge -> its first good poll, 50 kills vs kill -9 + spawn of a bare bridge (bridge-recovery-bench.ts)
 *  13. PLC bridge: values/s, CPU, RSS, poll->subscriber latency,     vs modbus-serial + mqtt.js raw publish, plain broker round trips
 *      write latency, handover gap (plc-bench.ts; `--only plc`)          (`--plc-minutes N`: the bridge's windows N minutes long)
 *  14. event-loop lag p99 and max under a command flood (20,000     vs the same agent idle, same run (flood-bench.ts; `--only flood`)
 *      diagnostics at QoS 1; `--flood-commands N`)
 *  15. the bridge's largest poll interval under a flood of 5,000 sets  vs the same bridge without one (plc-flood-bench.ts; `--only plc-flood`)
 *  17. web console (console-bench.ts; `--only console`): agent RSS/CPU with a tab on the PLC page vs console off,
 *      PLC change -> DOM p50/p99 vs the same change -> a plain subscriber, overview load and bytes vs a static page
 *  16. audit append, entries/s with the hash chain, durable commits  vs plain SQLite inserts, same durability (audit-bench.ts; `--only audit`)
 *      and `edge-agent audit --verify` over 1,000,000 entries        vs a plain scan of the same table
 *  17. config apply -> confirmed (restart, reconnect, confirm)       vs a plain `restart {component: agent}` (config-bench.ts; `--only config`)
 *      and config apply to an unreachable broker -> reverted        vs confirmSec
 *  18. procedure runner cost per step, 100 `log` steps (real RunStore) vs the same log calls in a plain loop
 *      and store-optimize + store-backup on a 200 MB store while the   vs the same agent, no procedure, same length
 *      bridge polls 2,000 tags at 100 ms: largest cycle gap, admin
 *      `status` p50/p99, agent CPU with children (maintenance-bench.ts; `--only maintenance`)
 *  19. bytes downloaded by a delta bundle, patch release and         vs the full bundle of the same release (release-bench.ts; `--only release`)
 *      dependency upgrade; its install time; bundle size gzip         vs full install; plain bundle
 *      idle RSS on the release's own runtime                          vs the same agent on the system's Node.js
 *  20. fleet: broker restart with 5,000 simulated + 10 real gateways, vs the same fleet without the first-reconnect
 *      peak CONNECTs/s in the broker's log and time to all online;       jitter, same broker and run (bench/fleet/;
 *      retained results after 10,000 commands once expired/cleared;     `--only fleet`, `--fleet-gateways N`,
 *      a signed bundle rolled out to the 10 real agents and the          `--fleet-agents N`, `--fleet-commands N`,
 *      simulated fleet, halting at its failing wave; the largest fleet
 *      with every command answered                                        `--fleet-capacity A,B,..|none`)
 *
 * `--only startup,outbox,ota,health` picks groups (default: startup, outbox, ota; `ota` is 5-8;
 * `health` is 9, minutes long, so only when asked for, e.g. `--only health`; health-bench.ts). 1-4 use a real mosquitto
 * on a free port, or an in-process aedes broker when mosquitto is missing (and says so); 5-6 need
 * no broker (ota-bench.ts); 7-8 start their own broker the same way (ota-activation.ts). Prints a
 * table and writes JSON to bench/results/latest.json (--quick: bench/results/quick.json; --out
 * FILE to choose). Exit 0 when every measurement completed; with --strict, exit 2 when a goal is
 * missed.
 */
import { cpus } from 'node:os';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { startBenchBroker, type BenchBroker } from './broker.js';
import { DIST, ROOT } from './proc.js';
import { startupSample, type StartupSample, type StartupSubject } from './startup.js';
import { outboxRun, type OutboxRun } from './outbox-bench.js';
import { otaMeasurements, otaPhase } from './ota-bench.js';
import { recoveryMeasurements, recoveryPhase } from './recovery-bench.js';
import { bridgeRecoveryMeasurements, bridgeRecoveryPhase } from './bridge-recovery-bench.js';
import { activationMeasurements, activationPhase } from './ota-activation.js';
import { diagMeasurements, diagPhase } from './diag-bench.js';
import { floodMeasurements, floodPhase } from './flood-bench.js';
import { healthMeasurements, healthPhase } from './health-bench.js';
import { restoreMeasurements, restorePhase } from './restore-bench.js';
import { plcPhase } from './plc-bench.js';
import { floodMeasurements as plcFloodMeasurements, floodPhase as plcFloodPhase } from './plc-flood-bench.js';
import { plcMeasurements } from './plc-measure.js';
import { auditMeasurements, auditPhase } from './audit-bench.js';
import { configMeasurements, configPhase } from './config-bench.js';
import { maintenanceMeasurements, maintenancePhase } from './maintenance-bench.js';
import { consoleMeasurements, consolePhase } from './console-bench.js';
import { releaseMeasurements, releasePhase } from './release-bench.js';
import { fleetMeasurements, fleetPhase } from './fleet/fleet-bench.js';
import { formatSamples, formatTable, measurement, writeResults, type BenchResults, type Measurement } from './report.js';

const MB = 1024 * 1024;

interface Config {
  quick: boolean;
  runs: number;
  outboxRuns: number;
  messages: number;
  inflight: number;
  idleMs: number;
  warmup: boolean;
  otaRuns: number;
  otaMiB: number;
  /** 0: no second (large) bundle. */
  otaLargeMiB: number;
}

const GROUPS = ['startup', 'outbox', 'ota', 'health', 'restore', 'diag', 'recovery', 'plc', 'flood', 'plc-flood', 'audit', 'config', 'maintenance', 'console', 'release', 'fleet'] as const;
type Group = (typeof GROUPS)[number];
/**
 * What a run without `--only` measures (bench-smoke.test.ts expects exactly these). The other groups
 * run only when named; `health` alone takes minutes of wall time for a 0.05 %-of-a-core signal.
 */
const DEFAULT_GROUPS: readonly Group[] = ['startup', 'outbox', 'ota'];

function config(v: { quick?: boolean; runs?: string; messages?: string; 'ota-mib'?: string; 'ota-large-mib'?: string }): Config {
  const quick = v.quick ?? false;
  const runs = v.runs === undefined ? (quick ? 1 : 5) : Number(v.runs);
  const messages = v.messages === undefined ? (quick ? 20_000 : 100_000) : Number(v.messages);
  const otaMiB = Number(v['ota-mib'] ?? (quick ? 32 : 512));
  const otaLargeMiB = Number(v['ota-large-mib'] ?? (quick ? 0 : 2048));
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(messages) || messages < 1000) throw new Error('--messages must be an integer >= 1000');
  if (!Number.isInteger(otaMiB) || otaMiB < 1) throw new Error('--ota-mib must be a positive integer');
  if (!Number.isInteger(otaLargeMiB) || otaLargeMiB < 0) throw new Error('--ota-large-mib must be an integer >= 0');
  const otaRuns = v.runs === undefined ? (quick ? 1 : 3) : runs;
  return { quick, runs, outboxRuns: runs, messages, inflight: 256, idleMs: quick ? 1000 : 3000, warmup: !quick, otaRuns, otaMiB, otaLargeMiB };
}

function groups(only: string | undefined): Set<Group> {
  if (only === undefined) return new Set(DEFAULT_GROUPS);
  const picked = only.split(',').map((g) => g.trim());
  const bad = picked.filter((g) => !(GROUPS as readonly string[]).includes(g));
  if (bad.length > 0 || picked.length === 0) throw new Error(`--only takes a comma-separated list of ${GROUPS.join(', ')}; got ${only}`);
  return new Set(picked as Group[]);
}

const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function connectSubscriber(broker: BenchBroker): Promise<MqttClient> {
  const c = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion, reconnectPeriod: 0, clientId: `bench-sub-${process.pid}` });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

async function startupPhase(broker: BenchBroker, sub: MqttClient, cfg: Config): Promise<Record<StartupSubject, StartupSample[]>> {
  const out: Record<StartupSubject, StartupSample[]> = { agent: [], reference: [] };
  const { url, protocolVersion } = broker;
  const sample = (subject: StartupSubject, tag: string): Promise<StartupSample> => startupSample({ url, protocolVersion, sub, subject, tag, idleMs: cfg.idleMs });
  if (cfg.warmup) {
    log('start-up: warm-up (discarded)');
    await sample('reference', 'warm-ref');
    await sample('agent', 'warm-agent');
  }
  for (let i = 0; i < cfg.runs; i++) {
    // Alternate which goes first, so neither always follows the other's exit.
    const order: StartupSubject[] = i % 2 === 0 ? ['reference', 'agent'] : ['agent', 'reference'];
    for (const s of order) {
      const r = await sample(s, `${s}-${i}`);
      out[s].push(r);
      log(`start-up run ${i + 1}/${cfg.runs} ${s}: ${r.startupMs.toFixed(0)} ms, idle RSS ${(r.idleRss.total / MB).toFixed(1)} MB`);
    }
  }
  return out;
}

async function outboxPhase(broker: BenchBroker, cfg: Config, cpuProfDir: string | undefined): Promise<OutboxRun[]> {
  const { url, protocolVersion } = broker;
  const runs: OutboxRun[] = [];
  for (let i = 0; i < cfg.outboxRuns; i++) {
    const r = await outboxRun({ url, protocolVersion, messages: cfg.messages, inflight: cfg.inflight, tag: `${process.pid}-${i}`, cpuProfDir, rawFirst: i % 2 === 1 });
    runs.push(r);
    log(
      `outbox run ${i + 1}/${cfg.outboxRuns}: growth ${(r.outbox.rssGrowthBytes / MB).toFixed(1)} MB (array ${(r.array.rssGrowthBytes / MB).toFixed(1)} MB), ` +
        `enqueue ${Math.round(r.outbox.enqueueRate)}/s (sqlite ${Math.round(r.sqlite.insertRate)}/s), drain ${Math.round(r.outbox.drainRate)}/s (raw ${Math.round(r.raw.publishRate)}/s)`,
    );
  }
  return runs;
}

const mb = (xs: number[]): number[] => xs.map((x) => x / MB);

function startupMeasurements(st: Record<StartupSubject, StartupSample[]>, cfg: Config): Measurement[] {
  return [
    measurement({
      id: 'startup',
      title: 'Agent start-up (spawn -> online seen)',
      unit: 'ms',
      samples: st.agent.map((s) => s.startupMs),
      reference: { name: 'node + mqtt.js: connect, publish retained', samples: st.reference.map((s) => s.startupMs) },
      goal: { op: '<=', value: 1000 },
    }),
    measurement({
      id: 'idle-rss',
      title: `Agent idle RSS (${cfg.idleMs / 1000} s after online)`,
      unit: 'MB',
      samples: mb(st.agent.map((s) => s.idleRss.total)),
      reference: { name: 'the same mqtt.js script, idle', samples: mb(st.reference.map((s) => s.idleRss.total)) },
      goal: { op: '<=', value: 70 },
      details: {
        rssAnonMB: mb(st.agent.map((s) => s.idleRss.anon)),
        rssFileMB: mb(st.agent.map((s) => s.idleRss.file)),
        referenceRssAnonMB: mb(st.reference.map((s) => s.idleRss.anon)),
        referenceRssFileMB: mb(st.reference.map((s) => s.idleRss.file)),
      },
    }),
  ];
}

function outboxMeasurements(ob: OutboxRun[], cfg: Config): Measurement[] {
  const n = cfg.messages.toLocaleString('en-US');
  return [
    measurement({
      id: 'outbox-memory',
      title: `Outbox RSS growth, ${n} events queued`,
      unit: 'MB',
      samples: mb(ob.map((r) => r.outbox.rssGrowthBytes)),
      reference: { name: `the same ${n} messages in a JS array`, samples: mb(ob.map((r) => r.array.rssGrowthBytes)) },
      goal: { op: '<', value: 20 },
      details: {
        rssAnonGrowthMB: mb(ob.map((r) => r.outbox.rssAnonGrowthBytes)),
        v8HeapTotalGrowthMB: mb(ob.map((r) => r.outbox.heapTotalGrowthBytes)),
        v8HeapUsedGrowthMB: mb(ob.map((r) => r.outbox.heapUsedGrowthBytes)),
        referenceHeapUsedGrowthMB: mb(ob.map((r) => r.array.heapUsedGrowthBytes)),
      },
    }),
    measurement({
      id: 'enqueue-rate',
      title: `Outbox enqueue, broker down`,
      unit: 'msg/s',
      samples: ob.map((r) => r.outbox.enqueueRate),
      reference: { name: 'plain better-sqlite3 INSERT, 1000/txn', samples: ob.map((r) => r.sqlite.insertRate) },
      details: { enqueueMs: ob.map((r) => r.outbox.enqueueMs), referenceMs: ob.map((r) => r.sqlite.insertMs) },
    }),
    measurement({
      id: 'drain-rate',
      title: `Outbox drain after reconnect, to depth 0`,
      unit: 'msg/s',
      samples: ob.map((r) => r.outbox.drainRate),
      reference: { name: `plain mqtt.js QoS 1, ${cfg.inflight} in flight`, samples: ob.map((r) => r.raw.publishRate) },
      goal: { op: '>=', value: 5000 },
      details: { drainMs: ob.map((r) => r.outbox.drainMs), referenceMs: ob.map((r) => r.raw.publishMs) },
    }),
  ];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      messages: { type: 'string' },
      out: { type: 'string' },
      broker: { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      strict: { type: 'boolean' },
      only: { type: 'string' },
      'ota-mib': { type: 'string' },
      'ota-large-mib': { type: 'string' },
      'plc-minutes': { type: 'string' },
      'fleet-gateways': { type: 'string' },
      'fleet-agents': { type: 'string' },
      'fleet-commands': { type: 'string' },
      'fleet-capacity': { type: 'string' },
      'flood-commands': { type: 'string' },
    },
  });
  const cfg = config(values);
  const run = groups(values.only);
  const prefer = values.broker;
  if (prefer !== undefined && prefer !== 'mosquitto' && prefer !== 'aedes') throw new Error('--broker must be mosquitto or aedes');
  const out = values.out ?? join(ROOT, 'bench', 'results', cfg.quick ? 'quick.json' : 'latest.json');
  const cpuProfDir = values['cpu-prof'] ? join(ROOT, 'bench', 'results', 'profiles') : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  if (!existsSync(join(DIST, 'agent', 'cli', 'index.js'))) throw new Error('dist/agent/cli/index.js is missing: run `npm run build` first');

  const startedAt = new Date().toISOString();
  log(`config: ${JSON.stringify(cfg)}; groups: ${[...run].join(', ')}`);
  const ms: Measurement[] = [];
  let broker: BenchResults['broker'] = { kind: 'none', version: '-', note: 'no MQTT measurement selected' };
  if (run.has('startup') || run.has('outbox')) broker = await mqttPhases(cfg, run, prefer, cpuProfDir, ms);
  if (run.has('ota')) {
    const ota = await otaPhase({ runs: cfg.otaRuns, bundleMiB: cfg.otaMiB, largeMiB: cfg.otaLargeMiB, cpuProfDir }, log);
    ms.push(...otaMeasurements(ota));
    const act = await activationPhase({ runs: cfg.otaRuns, prefer }, log);
    ms.push(...activationMeasurements(act));
    if (broker.kind === 'none') broker = act.broker;
  }
  if (run.has('restore')) {
    const r = await restorePhase({ runs: values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs, prefer }, log);
    ms.push(...restoreMeasurements(r));
    if (broker.kind === 'none') broker = r.broker;
  }
  if (run.has('diag')) {
    const d = await diagPhase({ runs: cfg.runs, prefer }, log);
    ms.push(...diagMeasurements(d));
    if (broker.kind === 'none') broker = { ...d.broker, note: 'real broker (diag)' };
  }
  if (run.has('recovery')) {
    ms.push(...recoveryMeasurements(await recoveryPhase({ runs: values.runs === undefined ? (cfg.quick ? 2 : 7) : cfg.runs }, log)));
    const b = await bridgeRecoveryPhase({ kills: cfg.quick ? 5 : 50, prefer }, log);
    ms.push(...bridgeRecoveryMeasurements(b));
    if (broker.kind === 'none') broker = b.broker;
  }
  if (run.has('plc')) {
    const minutes = values['plc-minutes'] === undefined ? undefined : Number(values['plc-minutes']);
    const p = await plcPhase({ quick: cfg.quick, minutes, prefer }, log);
    ms.push(...plcMeasurements(p));
    if (broker.kind === 'none') broker = p.broker;
  }
  if (run.has('flood')) {
    const commands = Number(values['flood-commands'] ?? (cfg.quick ? 3000 : 20_000));
    const f = await floodPhase({ runs: values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs, commands, prefer }, log);
    ms.push(...floodMeasurements(f));
    if (broker.kind === 'none') broker = { ...f.broker, note: 'real broker (flood)' };
  }
  if (run.has('plc-flood')) {
    const f = await plcFloodPhase({ runs: values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs, sets: 5000, prefer }, log);
    ms.push(...plcFloodMeasurements(f));
    if (broker.kind === 'none') broker = f.broker;
  }
  if (run.has('audit')) {
    const runs = values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs;
    ms.push(...auditMeasurements(await auditPhase({ runs, appends: cfg.quick ? 500 : 5000, entries: cfg.quick ? 100_000 : 1_000_000 }, log)));
  }
  if (run.has('config')) {
    const c = await configPhase({ runs: values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs, prefer }, log);
    ms.push(...configMeasurements(c));
    if (broker.kind === 'none') broker = c.broker;
  }
  if (run.has('maintenance')) {
    const m = await maintenancePhase({ quick: cfg.quick, runs: values.runs === undefined ? (cfg.quick ? 3 : 7) : cfg.runs, prefer }, log);
    ms.push(...maintenanceMeasurements(m));
    if (broker.kind === 'none') broker = m.broker;
  }
  if (run.has('console')) {
    ms.push(...consoleMeasurements(await consolePhase({ windowMs: cfg.quick ? 15_000 : 60_000, changes: cfg.quick ? 30 : 200 }, log)));
  }
  if (run.has('release')) {
    ms.push(...releaseMeasurements(await releasePhase({ runs: values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs, prefer }, log)));
  }
  if (run.has('fleet')) {
    const n = Number(values['fleet-gateways'] ?? (cfg.quick ? 1000 : 5000));
    const agents = Number(values['fleet-agents'] ?? (cfg.quick ? 1 : 10));
    const commands = Number(values['fleet-commands'] ?? (cfg.quick ? 1000 : 10_000));
    // The capacity steps (`--fleet-capacity 5000,10000`, `none` to skip): the largest fleet whose every command is answered.
    const cap = values['fleet-capacity'] ?? (cfg.quick ? 'none' : '5000,10000,15000,19900,21000');
    const capacity = cap === 'none' ? [] : cap.split(',').map(Number);
    const runs = values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs;
    const f = await fleetPhase({ gateways: n, agents, rolloutGateways: cfg.quick ? 500 : 2000, runs, commands, resultExpirySec: cfg.quick ? 5 : 20, capacity }, log);
    ms.push(...fleetMeasurements(f));
  }
  if (run.has('health')) {
    const runs = values.runs === undefined ? (cfg.quick ? 1 : 3) : cfg.runs;
    const h = await healthPhase({ runs, windowMs: cfg.quick ? 15_000 : 60_000, prefer }, log);
    ms.push(...healthMeasurements(h));
    if (broker.kind === 'none') broker = h.broker;
  }
  const results: BenchResults = {
    startedAt,
    finishedAt: new Date().toISOString(),
    quick: cfg.quick,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpus().length,
    broker,
    config: { ...cfg },
    measurements: ms,
    goalsMet: ms.every((m) => m.goalMet !== false),
  };
  writeResults(out, results);
  const runs = run.has('ota') ? `medians of ${cfg.runs} runs (OTA: ${cfg.otaRuns})` : `medians of ${cfg.runs} runs`;
  process.stdout.write(`\nBroker: ${broker.version} (${broker.note}); ${runs}; ratio = value / reference\n\n`);
  process.stdout.write(`${formatTable(ms)}\n\nSamples:\n${formatSamples(ms)}\n\nJSON: ${out}\n`);
  if (cpuProfDir) process.stdout.write(`CPU profiles of the outbox and OTA install children: ${cpuProfDir}\n`);
  return values.strict && !results.goalsMet ? 2 : 0;
}

/** Measurements 1-4 (the groups asked for) against one broker, stopped before returning. */
async function mqttPhases(cfg: Config, run: Set<Group>, prefer: 'mosquitto' | 'aedes' | undefined, cpuProfDir: string | undefined, ms: Measurement[]): Promise<BenchResults['broker']> {
  const broker: BenchBroker = await startBenchBroker(prefer);
  const note = broker.kind === 'mosquitto' ? 'real broker' : prefer === 'aedes' ? 'aedes asked for (--broker aedes)' : 'mosquitto is not installed: FELL BACK to in-process aedes; numbers are not comparable with mosquitto runs';
  log(`broker: ${broker.version} at ${broker.url} (${note})`);
  let sub: MqttClient | undefined;
  try {
    if (run.has('startup')) {
      sub = await connectSubscriber(broker);
      ms.push(...startupMeasurements(await startupPhase(broker, sub, cfg), cfg));
    }
    if (run.has('outbox')) ms.push(...outboxMeasurements(await outboxPhase(broker, cfg, cpuProfDir), cfg));
    return { kind: broker.kind, version: broker.version, note };
  } catch (err) {
    const logs = broker.logs();
    if (logs) log(`--- broker log ---\n${logs}`);
    throw err;
  } finally {
    await sub?.endAsync(true);
    await broker.stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
