/**
 * A supervised process that exits because it handed its role to a successor (the PLC bridge
 * after an update) is followed, not restarted: the heartbeat answers from the new pid, which is
 * adopted. An exit with nobody answering is a failure as usual. Real timers, a real heartbeat
 * socket (lib/rpc.ts), a stand-in process handle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { systemClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { RpcServer } from '../../lib/rpc.js';
import { openDatabase } from '../../lib/sqlite.js';
import { IncidentStore, RECOVERY_MIGRATIONS } from '../../recovery/incidents.js';
import type { AdoptResult, ExitInfo, Handle } from '../../recovery/process.js';
import { Supervisor } from '../../recovery/supervisor.js';
import { tempDir, waitFor } from '../helpers/util.js';

class FakeProcess implements Handle {
  readonly kind = 'process' as const;
  current: number | undefined;
  starts = 0;
  exitFn: (e: ExitInfo) => void = () => undefined;
  async start(): Promise<void> {
    this.starts++;
    this.current = 1000 + this.starts;
  }
  async adopt(hint?: number): Promise<AdoptResult> {
    if (hint === undefined) return 'none';
    this.current = hint;
    return 'adopted';
  }
  async alive(): Promise<boolean> {
    return this.current !== undefined;
  }
  async kill(): Promise<void> {
    this.current = undefined;
  }
  pid(): number | undefined {
    return this.current;
  }
  onExit(fn: (e: ExitInfo) => void): void {
    this.exitFn = fn;
  }
  async lastExit(): Promise<ExitInfo | undefined> {
    return undefined;
  }
  async lastLog(): Promise<string[]> {
    return [];
  }
  maintain(): void {}
  /** The process exits: nothing is alive under its pid any more. */
  exit(code: number): void {
    this.current = undefined;
    this.exitFn({ exitCode: code });
  }
}

test('an exit after a handover is followed to the successor; an exit with nobody answering is a failure', async () => {
  const dir = tempDir('handover');
  const sock = join(dir, 'bridge.sock');
  let answeringPid = 500;
  const server = new RpcServer({ path: sock, logger: silentLogger(), methods: { ping: () => ({ pid: answeringPid }) } });
  await server.start();
  const db = openDatabase(join(dir, 'agent.db'), { migrations: [RECOVERY_MIGRATIONS] });
  const store = new IncidentStore(db);
  const proc = new FakeProcess();
  const sup = new Supervisor({
    targets: [{ name: 'plc-bridge', handle: proc, probe: { kind: 'heartbeat', socket: sock }, intervalMs: 50, deadlineMs: 2000, startTimeoutMs: 5000 }],
    policy: { backoff: { initialMs: 50, maxMs: 100, factor: 2, jitter: 0 }, healthyMs: 60_000, slowRetryMs: 1000, escalation: { windowMs: 60_000, restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 8, rollbackWithinMs: 0 } },
    stopGraceMs: 100,
    hungGraceMs: 100,
    store,
    clock: systemClock,
    logger: silentLogger(),
    event: () => undefined,
    restoreConfig: async () => ({ restored: false, note: 'no known-good configuration to restore' }),
    rollback: async () => false,
    activatedAt: () => undefined,
  });
  try {
    await sup.start();
    // At start the running bridge is found by its heartbeat and adopted.
    await waitFor(() => sup.status()[0]?.state === 'running', { timeoutMs: 5000, what: 'the bridge adopted' });
    assert.equal(proc.pid(), 500);
    assert.equal(proc.starts, 0);

    answeringPid = 600; // the successor took the socket over...
    proc.exit(0); // ...and the old one exits
    await waitFor(() => proc.pid() === 600, { timeoutMs: 5000, what: 'the successor adopted' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sup.status()[0]?.state, 'running');
    assert.equal(proc.starts, 0, 'not restarted');
    assert.deepEqual(store.list(), [], 'no incident');

    await server.stop();
    proc.exit(1);
    await waitFor(() => store.list().length === 1, { timeoutMs: 5000, what: 'the incident' });
    assert.equal(store.list()[0]?.cause, 'exited');
    await waitFor(() => proc.starts === 1, { timeoutMs: 5000, what: 'the restart' });
  } finally {
    await sup.stop();
    await server.stop();
    db.close();
  }
});
