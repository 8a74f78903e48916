/**
 * Measurement 9, `hang-restart-overhead`: the time from a hang to the component running again,
 * beyond the heartbeat deadline (the issue: "deadline + overhead, overhead at most 1 s").
 *
 * The real Supervisor (recovery/supervisor.ts) in this process, with the agent's default recovery
 * settings except a 2 s deadline (the overhead does not depend on it) and healthyMs 1 s (so every
 * run starts from the first backoff step), supervises one detached test/fixtures/service.js
 * (`serve`, heartbeat probe on its socket). Per run the service is told to SIGSTOP itself right
 * after answering its next ping: the worst case, a hang just after the last heartbeat the
 * watchdog saw. The hang instant is when /proc/PID/stat says `T` (polled every 2 ms); "running
 * again" is the first `ping` answered by a new pid (polled every 10 ms). The reference is a bare
 * restart without any watchdog: SIGKILL the same service, spawn it again, until its first ping.
 * Details: `detectMs` (hang -> the incident, minus the deadline: detection lateness) and
 * `restartMs` (incident -> new pid answering: kill, backoff, spawn, start-up).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../lib/clock.js';
import { silentLogger } from '../lib/log.js';
import { rpcRequest } from '../lib/rpc.js';
import { openDatabase } from '../lib/sqlite.js';
import { validateConfig } from '../core/config.js';
import { IncidentStore, RECOVERY_MIGRATIONS } from '../recovery/incidents.js';
import { ManagedProcess, procStat } from '../recovery/process.js';
import { Supervisor } from '../recovery/supervisor.js';
import { DIST } from './proc.js';
import { measurement, type Measurement } from './report.js';

const SERVICE = join(DIST, 'test', 'fixtures', 'service.js');
const DEADLINE_MS = 2000;

type Log = (s: string) => void;

export interface RecoveryResults {
  overheadMs: number[];
  detectMs: number[];
  restartMs: number[];
  referenceMs: number[];
  intervalMs: number;
}

async function until<T>(what: string, timeoutMs: number, everyMs: number, fn: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`recovery bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const pingPid = async (sock: string): Promise<number | undefined> => {
  try {
    return ((await rpcRequest(sock, 'ping', {}, 500)) as { pid: number }).pid;
  } catch {
    return undefined;
  }
};

const stopped = (pid: number): boolean => procStat(pid)?.state === 'T';

/** The reference: kill -9 and spawn again by hand, until the first ping. */
async function bareRestart(dir: string, i: number): Promise<number> {
  const sock = join(dir, `ref-${i}.sock`);
  const first = spawn(process.execPath, [SERVICE, 'serve', sock], { stdio: 'ignore' });
  await until('the reference service', 10_000, 10, () => pingPid(sock));
  const t0 = performance.now();
  first.kill('SIGKILL');
  const second = spawn(process.execPath, [SERVICE, 'serve', sock], { stdio: 'ignore' });
  await until('the restarted reference service', 10_000, 10, async () => ((await pingPid(sock)) === second.pid ? true : undefined));
  const ms = performance.now() - t0;
  second.kill('SIGKILL');
  return ms;
}

export async function recoveryPhase(cfg: { runs: number }, log: Log): Promise<RecoveryResults> {
  const dir = mkdtempSync(join(tmpdir(), 'recovery-bench-'));
  const defaults = validateConfig({ gatewayId: 'bench' }).recovery;
  const db = openDatabase(join(dir, 'agent.db'), { migrations: [RECOVERY_MIGRATIONS] });
  const store = new IncidentStore(db);
  const sock = join(dir, 'svc.sock');
  const handle = new ManagedProcess({ name: 'svc', argv: [process.execPath, SERVICE, 'serve', sock], dir, logMaxBytes: defaults.logMaxBytes, logger: silentLogger() });
  const sup = new Supervisor({
    targets: [{ name: 'svc', handle, probe: { kind: 'heartbeat', socket: sock }, intervalMs: defaults.intervalMs, deadlineMs: DEADLINE_MS, startTimeoutMs: defaults.startTimeoutMs }],
    policy: { backoff: defaults.backoff, healthyMs: 1000, slowRetryMs: defaults.slowRetryMs, escalation: defaults.escalation },
    stopGraceMs: defaults.stopGraceMs,
    hungGraceMs: defaults.hungGraceMs,
    store,
    clock: systemClock,
    logger: silentLogger(),
    event: () => undefined,
    restoreConfig: async () => ({ restored: false, note: 'no known-good configuration to restore' }),
    rollback: async () => false,
    activatedAt: () => undefined,
  });
  const out: RecoveryResults = { overheadMs: [], detectMs: [], restartMs: [], referenceMs: [], intervalMs: defaults.intervalMs };
  const stopAll = (): void => {
    const pid = handle.pid();
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.once('exit', stopAll);
  try {
    await sup.start();
    for (let i = 0; i < cfg.runs; i++) {
      // Healthy again, and past healthyMs, so each run starts from a clean loop.
      await until('the service running and healthy', 20_000, 50, () => {
        const c = sup.status()[0];
        return c?.state === 'running' && c.level === 0 && store.list({ component: 'svc', limit: 1 }).every((x) => x.resolvedAt !== null) ? true : undefined;
      });
      const old = await until('the first ping', 10_000, 10, () => pingPid(sock));
      const lastId = store.list({ component: 'svc', limit: 1 })[0]?.id ?? 0;
      await rpcRequest(sock, 'freeze-after-ping', {}, 1000);
      const hungAt = await until('the hang', 10_000, 2, () => (stopped(old) ? Date.now() : undefined));
      const backAt = await until('a new process answering', 30_000, 10, async () => {
        const p = await pingPid(sock);
        return p !== undefined && p !== old ? Date.now() : undefined;
      });
      const inc = await until('the incident', 10_000, 10, () => store.list({ component: 'svc', limit: 1 }).find((x) => x.id > lastId));
      const detectedAt = Date.parse(inc.at);
      out.overheadMs.push(backAt - hungAt - DEADLINE_MS);
      out.detectMs.push(detectedAt - hungAt - DEADLINE_MS);
      out.restartMs.push(backAt - detectedAt);
      out.referenceMs.push(await bareRestart(dir, i));
      log(`recovery run ${i + 1}/${cfg.runs}: hang -> running ${backAt - hungAt} ms (deadline ${DEADLINE_MS} + ${backAt - hungAt - DEADLINE_MS}), bare restart ${Math.round(out.referenceMs.at(-1)!)} ms`);
    }
  } finally {
    await sup.stop();
    stopAll();
    process.off('exit', stopAll);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

export function recoveryMeasurements(r: RecoveryResults): Measurement[] {
  return [
    measurement({
      id: 'hang-restart-overhead',
      title: `Hang -> running again, beyond the ${DEADLINE_MS / 1000} s heartbeat deadline`,
      unit: 'ms',
      samples: r.overheadMs,
      reference: { name: 'bare restart: kill -9, spawn, first ping', samples: r.referenceMs },
      goal: { op: '<=', value: 1000 },
      details: { detectMs: r.detectMs, restartMs: r.restartMs, intervalMs: r.overheadMs.map(() => r.intervalMs) },
    }),
  ];
}
