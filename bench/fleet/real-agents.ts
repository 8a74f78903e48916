/**
 * Real agents for the fleet bench: each installed in its own A/B root and run by its own boot
 * guard (test/helpers/ota-root.ts, as the update tests do), all on the bench's broker. Online is
 * what each agent says on its admin socket (`status`: broker.connected).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../../core/admin.js';
import { makeOtaRoot, makeRelease, startGuard, type GuardRun, type OtaRoot } from '../../test/helpers/ota-root.js';
import { tempDir } from '../../test/helpers/util.js';
import type { BackoffPolicy } from '../../lib/backoff.js';

export interface RealAgents {
  /** How many say they are connected now. */
  connected(): Promise<number>;
  /** Resident memory of each agent process (MiB). */
  rssMiB(): Promise<number[]>;
  stop(): Promise<void>;
}

const GUARD_ARGS = ['--backoff-min-ms', '200', '--backoff-max-ms', '1000', '--poll-ms', '100'];

export async function startRealAgents(n: number, url: string, backoff: BackoffPolicy): Promise<RealAgents> {
  const release = tempDir('fleet-release');
  makeRelease(release, '1.0.0');
  const runs: { r: OtaRoot; g: GuardRun }[] = [];
  for (let i = 0; i < n; i++) {
    const r = makeOtaRoot({ releaseDir: release, version: '1.0.0', config: { gatewayId: `real${i}`, mqtt: { url, reconnect: backoff } } });
    runs.push({ r, g: startGuard(r, GUARD_ARGS) });
  }
  const status = async (r: OtaRoot): Promise<{ pid?: number; broker?: { connected?: boolean } } | undefined> =>
    (await adminRequest(join(r.dataDir, 'agent.sock'), 'status').catch(() => undefined)) as { pid?: number; broker?: { connected?: boolean } } | undefined;
  return {
    connected: async () => (await Promise.all(runs.map(async ({ r }) => (await status(r))?.broker?.connected === true))).filter(Boolean).length,
    rssMiB: async () =>
      Promise.all(
        runs.map(async ({ r }) => {
          try {
            const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${(await status(r))?.pid ?? 0}/status`, 'utf8'));
            return m ? Number(m[1]) / 1024 : NaN;
          } catch {
            return NaN;
          }
        }),
      ),
    stop: async () => {
      for (const { r, g } of runs) {
        await g.stop(5000);
        rmSync(r.root, { recursive: true, force: true });
      }
      rmSync(release, { recursive: true, force: true });
    },
  };
}
