/**
 * Real agents for the fleet bench: each installed in its own A/B root and run by its own boot
 * guard (test/helpers/ota-root.ts, as the update tests do), all on the bench's broker. Online is
 * what each agent says on its admin socket (`status`: broker.connected). Started one after the
 * other (each connected before the next starts), so ten Node start-ups do not pile onto two
 * cores at once; health sampled every 60 s instead of 10 s and the web console off: the bench
 * measures the fleet, not each gateway's own monitoring. `ota` (trust anchors, healthReportSec,
 * health gate) goes into each agent's config, so the rollout can update them for real; `state()`
 * reads what each agent says and its slots.json afterwards.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../../core/admin.js';
import { makeOtaRoot, makeRelease, startGuard, type GuardRun, type OtaRoot } from '../../test/helpers/ota-root.js';
import { tempDir, waitFor } from '../../test/helpers/util.js';
import { loadSlots } from '../../ota/slots.js';
import type { BackoffPolicy } from '../../lib/backoff.js';

export interface RealAgents {
  ids: string[];
  /** Per agent, ms from its guard's start to the agent saying it is connected (one after the other). */
  startMs: number[];
  /** name (`realN`... as `guardN`) -> the boot guard's pid, for treeSampler. */
  guardPids(): Record<string, number>;
  /** What each agent says now (admin `status`: version, slot) and its ROOT/slots.json. */
  state(): Promise<{ id: string; version: string | undefined; slot: string | undefined; active: string; activeState: string; activeVersion: string | undefined }[]>;
  /** How many say they are connected now. */
  connected(): Promise<number>;
  /** name -> pid: `agentN` (the running agent) and `guardN`. */
  pids(): Promise<Record<string, number>>;
  /** Synchronous, for 'exit' and signals: SIGKILL every guard and agent, remove the roots. */
  killAll: () => void;
  stop(): Promise<void>;
}

const GUARD_ARGS = ['--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

type Status = { pid?: number; version?: string; slot?: string; broker?: { connected?: boolean } };

/** `ota`: merged into each agent's config (trust anchors of the rollout's bundle, healthReportSec, health gate). */
export async function startRealAgents(n: number, url: string, backoff: BackoffPolicy, o: { resultExpirySec: number; ota?: Record<string, unknown> }): Promise<RealAgents> {
  const release = tempDir('fleet-release');
  makeRelease(release, '1.0.0');
  const runs: { r: OtaRoot; g: GuardRun }[] = [];
  const status = async (r: OtaRoot): Promise<Status | undefined> => (await adminRequest(join(r.dataDir, 'agent.sock'), 'status').catch(() => undefined)) as Status | undefined;
  const killAll = (): void => {
    for (const { r, g } of runs) {
      g.proc.kill('SIGKILL');
      for (const l of g.logged('spawned')) {
        try {
          if (typeof l.childPid === 'number') process.kill(l.childPid, 'SIGKILL');
        } catch {
          // ESRCH: gone
        }
      }
      rmSync(r.root, { recursive: true, force: true });
    }
    rmSync(release, { recursive: true, force: true });
  };
  const ids = Array.from({ length: n }, (_, i) => `real${i}`);
  const startMs: number[] = [];
  try {
    for (const gatewayId of ids) {
      const r = makeOtaRoot({
        releaseDir: release,
        version: '1.0.0',
        config: { gatewayId, mqtt: { url, reconnect: backoff }, commands: { resultExpirySec: o.resultExpirySec }, health: { sampleIntervalMs: 60_000 }, console: { enabled: false }, ...(o.ota ? { ota: o.ota } : {}) },
      });
      const t0 = Date.now();
      const g = startGuard(r, GUARD_ARGS);
      runs.push({ r, g });
      await waitFor(async () => (await status(r))?.broker?.connected === true, { what: `${gatewayId} connected\n${g.tail(2000)}`, timeoutMs: 60_000, intervalMs: 100 });
      startMs.push(Date.now() - t0);
    }
  } catch (err) {
    killAll();
    throw err;
  }
  return {
    ids,
    startMs,
    guardPids: () => Object.fromEntries(runs.flatMap(({ g }, i) => (g.proc.pid === undefined ? [] : [[`real${i}`, g.proc.pid]]))),
    state: async () =>
      Promise.all(
        runs.map(async ({ r }, i) => {
          const s = await status(r);
          const slots = loadSlots(r.root);
          return { id: ids[i]!, version: s?.version, slot: s?.slot, active: slots.active, activeState: slots.slots[slots.active].state, activeVersion: slots.slots[slots.active].version };
        }),
      ),
    connected: async () => (await Promise.all(runs.map(async ({ r }) => (await status(r))?.broker?.connected === true))).filter(Boolean).length,
    pids: async () => {
      const out: Record<string, number> = {};
      for (const [i, { r, g }] of runs.entries()) {
        const pid = (await status(r))?.pid;
        if (pid !== undefined) out[`agent${i}`] = pid;
        if (g.proc.pid !== undefined) out[`guard${i}`] = g.proc.pid;
      }
      return out;
    },
    killAll,
    stop: async () => {
      for (const { g } of runs) await g.stop(5000);
      killAll();
    },
  };
}
