/**
 * The Supervisor (recovery/supervisor.ts) with in-process targets (the interface the agent's own
 * parts implement), an in-memory store and mocked timers: a part that says it is hung is
 * restarted after the backoff and its incident resolved once it stays healthy; a requested
 * restart is an incident but not a failure; the state survives a new Supervisor on the same
 * store; an unknown name is refused with its code.
 */
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { IncidentStore, RECOVERY_MIGRATIONS } from '../../recovery/incidents.js';
import { Supervisor, type InProcessTarget } from '../../recovery/supervisor.js';
import type { AgentEvent } from '../../core/ports.js';

class Part implements InProcessTarget {
  health: 'healthy' | 'hung' | 'dead' = 'healthy';
  restarts = 0;
  constructor(readonly name: string) {}
  probe(): 'healthy' | 'hung' | 'dead' {
    return this.health;
  }
  async restart(): Promise<void> {
    this.restarts++;
    this.health = 'healthy';
  }
}

let db: Db;
beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
  db = openDatabase(':memory:', { migrations: [RECOVERY_MIGRATIONS] });
});
afterEach(() => {
  mock.timers.reset();
  db.close();
});

/** Moves the mocked clock on in small steps, letting promise chains run between them. */
async function advance(ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    mock.timers.tick(10);
    await new Promise((r) => setImmediate(r));
  }
}

function supervisor(parts: Part[], events: AgentEvent[]): Supervisor {
  return new Supervisor({
    targets: parts.map((p) => Supervisor.inProcess(p, 100)),
    policy: { backoff: { initialMs: 200, maxMs: 1000, factor: 2, jitter: 0 }, healthyMs: 1000, slowRetryMs: 5000, escalation: { windowMs: 60_000, restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 8, rollbackWithinMs: 0 } },
    stopGraceMs: 100,
    hungGraceMs: 100,
    store: new IncidentStore(db),
    clock: systemClock,
    logger: silentLogger(),
    event: (ev) => events.push(ev),
    restoreConfig: async () => ({ restored: false, note: 'no known-good configuration to restore' }),
    rollback: async () => false,
    activatedAt: () => undefined,
  });
}

test('an in-process part that reports itself hung is restarted after the backoff; recovered once healthy for healthyMs', async () => {
  const part = new Part('wms-link');
  const events: AgentEvent[] = [];
  const sup = supervisor([part], events);
  await sup.start();
  await advance(300);
  assert.equal(sup.status()[0]?.state, 'running');
  part.health = 'hung';
  await advance(150);
  const [inc] = new IncidentStore(db).list();
  assert.equal(inc?.cause, 'hung');
  assert.equal(inc.action, 'restart');
  assert.equal(part.restarts, 0, 'not before the backoff');
  await advance(300);
  assert.equal(part.restarts, 1);
  await advance(300);
  assert.equal(sup.status()[0]?.state, 'running');
  assert.equal(new IncidentStore(db).list()[0]?.resolvedAt, null, 'not resolved before healthyMs');
  await advance(1200);
  assert.notEqual(new IncidentStore(db).list()[0]?.resolvedAt, null);
  assert.deepEqual(
    events.map((e) => e.type),
    ['incident', 'recovery'],
  );
  await sup.stop();
});

test('a requested restart is recorded but is no failure; an unknown name is refused', async () => {
  const part = new Part('sampler');
  const sup = supervisor([part], []);
  await sup.start();
  await advance(300);
  await sup.restart('sampler');
  assert.equal(part.restarts, 1);
  const s = sup.status()[0]!;
  assert.equal(s.restarts, 1);
  assert.equal(s.level, 0);
  assert.equal(new IncidentStore(db).list()[0]?.cause, 'requested');
  await assert.rejects(sup.restart('nope'), { code: 'unknown-component' });
  await sup.stop();
});

test('the crash loop is persisted: a new supervisor on the same store goes on from it', async () => {
  const part = new Part('runner');
  const sup = supervisor([part], []);
  await sup.start();
  await advance(300);
  for (let i = 0; i < 3; i++) {
    part.health = 'hung';
    await advance(150);
    await advance(1000); // backoff, restart, running again
  }
  assert.equal(sup.status()[0]?.level, 1, 'restore-config reached');
  await sup.stop();
  const again = supervisor([new Part('runner')], []);
  await again.start();
  assert.equal(again.status()[0]?.level, 1);
  assert.equal(again.status()[0]?.restarts, 3);
  await again.stop();
});
