/**
 * core/audit.ts on a real SQLite file: the chain, each kind of tampering named by verify, the
 * pruning that keeps verify green and records the cut, and the redaction of secret-looking keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { AUDIT_MIGRATIONS, AuditLog, GENESIS, entryHash } from '../../core/audit.js';
import { commandAudit } from '../../agent/audit-wiring.js';
import { fakeClock } from '../helpers/fake-clock.js';
import { tempDir } from '../helpers/util.js';

function fresh(n: number): { db: Db; log: AuditLog; clock: ReturnType<typeof fakeClock> } {
  const db = openDatabase(join(tempDir('audit'), 'agent.db'), { migrations: [AUDIT_MIGRATIONS] });
  const clock = fakeClock(Date.parse('2026-01-01T00:00:00Z'));
  const log = new AuditLog(db, clock);
  for (let i = 1; i <= n; i++) log.append({ actor: `wms:c${i}`, action: 'diagnostics', outcome: 'successful', details: { i } });
  return { db, log, clock };
}

function broken(log: AuditLog): { seq: number; problem: string } {
  const r = log.verify();
  assert.equal(r.ok, false, JSON.stringify(r));
  if (r.ok) throw new Error('unreachable');
  return { seq: r.brokenSeq, problem: r.problem };
}

test('entries chain: the first follows GENESIS, each the one before; verify holds and gives the head', () => {
  const { log } = fresh(5);
  const list = log.list();
  assert.deepEqual(list.map((e) => e.seq), [1, 2, 3, 4, 5]);
  assert.equal(list[0]!.prevHash, GENESIS);
  for (let i = 1; i < list.length; i++) assert.equal(list[i]!.prevHash, list[i - 1]!.hash);
  const e = list[2]!;
  assert.equal(e.hash, entryHash({ ...e, details: JSON.stringify(e.details) }));
  const r = log.verify();
  assert.deepEqual(r, { ok: true, entries: 5, firstSeq: 1, lastSeq: 5, head: list[4]!.hash, startsAfterCut: false });
});

test('an empty trail verifies', () => {
  const { log } = fresh(0);
  assert.equal(log.verify().ok, true);
});

test('editing one entry is named by verify', () => {
  const { db, log } = fresh(6);
  db.prepare("UPDATE audit_log SET outcome = 'failed' WHERE seq = 4").run();
  const b = broken(log);
  assert.equal(b.seq, 4);
  assert.match(b.problem, /entry 4 was changed/);
});

test('editing an entry and recomputing its hash is named at the next entry', () => {
  const { db, log } = fresh(6);
  const row = db.prepare<[], { seq: number; at: string; actor: string; action: string; target: string | null; details: string | null; prev_hash: string }>('SELECT * FROM audit_log WHERE seq = 3').get()!;
  const hash = entryHash({ ...row, outcome: 'failed', prevHash: row.prev_hash });
  db.prepare("UPDATE audit_log SET outcome = 'failed', hash = ? WHERE seq = 3").run(hash);
  assert.equal(broken(log).seq, 4);
});

test('deleting one entry is named by verify (the one after the gap)', () => {
  const { db, log } = fresh(6);
  db.prepare('DELETE FROM audit_log WHERE seq = 3').run();
  const b = broken(log);
  assert.equal(b.seq, 4);
  assert.match(b.problem, /entries 3 to 3 are missing/);
});

test('deleting the first entry is named by verify: no cut was recorded', () => {
  const { db, log } = fresh(4);
  db.prepare('DELETE FROM audit_log WHERE seq = 1').run();
  const b = broken(log);
  assert.equal(b.seq, 2);
  assert.match(b.problem, /no audit-prune entry records a cut/);
});

test('reordering two entries is named by verify', () => {
  const { db, log } = fresh(6);
  db.transaction(() => {
    db.prepare('UPDATE audit_log SET seq = -1 WHERE seq = 4').run();
    db.prepare('UPDATE audit_log SET seq = 4 WHERE seq = 5').run();
    db.prepare('UPDATE audit_log SET seq = 5 WHERE seq = -1').run();
  })();
  assert.equal(broken(log).seq, 4);
});

test('inserting an entry (renumbering the rest) is named by verify', () => {
  const { db, log } = fresh(5);
  db.transaction(() => {
    db.prepare('UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3').run();
    db.prepare('UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100').run();
    const prev = db.prepare<[], { hash: string }>('SELECT hash FROM audit_log WHERE seq = 2').get()!;
    const at = '2026-01-01T00:00:00.000Z';
    const hash = entryHash({ seq: 3, at, actor: 'wms:x', action: 'restart', target: 'agent', outcome: 'successful', details: null, prevHash: prev.hash });
    db.prepare('INSERT INTO audit_log VALUES (3, ?, ?, ?, ?, ?, NULL, ?, ?)').run(at, 'wms:x', 'restart', 'agent', 'successful', prev.hash, hash);
  })();
  assert.equal(broken(log).seq, 4);
});

test('pruning by count keeps verify green, records the cut, and the first kept entry keeps its predecessor hash', () => {
  const { log } = fresh(250);
  const before = log.list();
  const removed = log.prune({ maxAgeDays: 3650, maxEntries: 100 });
  const after = log.list();
  assert.equal(after.length, 100);
  assert.equal(removed, 151);
  const first = after[0]!;
  assert.equal(first.seq, 152);
  assert.equal(first.prevHash, before[150]!.hash, 'the first kept entry keeps its predecessor hash');
  const cut = after.at(-1)!;
  assert.equal(cut.action, 'audit-prune');
  assert.deepEqual({ removed: cut.details?.removed, keptFrom: cut.details?.keptFrom, removedHeadHash: cut.details?.removedHeadHash }, { removed: 151, keptFrom: 152, removedHeadHash: before[150]!.hash });
  const r = log.verify();
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.ok && r.startsAfterCut, true);
  assert.equal(r.ok && r.firstSeq, 152);
  // Appends go on from the cut; a second prune is recorded the same way.
  for (let i = 0; i < 30; i++) log.append({ actor: 'local', action: 'rollback', outcome: 'successful' });
  log.prune({ maxAgeDays: 3650, maxEntries: 100 });
  assert.equal(log.verify().ok, true);
  assert.equal(log.list().length, 100);
});

test('pruning by age cuts the entries older than maxAgeDays', async () => {
  const { log, clock } = fresh(10);
  await clock.advance(40 * 86_400_000);
  for (let i = 0; i < 3; i++) log.append({ actor: 'local', action: 'rollback', outcome: 'successful' });
  assert.equal(log.prune({ maxAgeDays: 30, maxEntries: 1000 }), 10);
  assert.deepEqual(log.list().map((e) => e.seq), [11, 12, 13, 14]);
  assert.equal(log.verify().ok, true);
  assert.equal(log.prune({ maxAgeDays: 30, maxEntries: 1000 }), 0, 'nothing more to cut: no new cut entry');
});

test('a cut at the front beyond the recorded one is named', () => {
  const { db, log } = fresh(250);
  log.prune({ maxAgeDays: 3650, maxEntries: 100 });
  db.prepare('DELETE FROM audit_log WHERE seq = 152').run();
  const b = broken(log);
  assert.equal(b.seq, 153);
});

test('secret-looking keys in details are redacted; the rest is kept', () => {
  const { log } = fresh(0);
  const e = log.append({ actor: 'local', action: 'config', outcome: 'successful', details: { changed: ['mqtt.password'], mqtt: { password: 'hunter2', url: 'mqtts://b' }, privateKey: 'PEM', token: 't', key: 'k', version: '1.2.3' } });
  const text = JSON.stringify(log.list());
  for (const s of ['hunter2', 'PEM', '"t"', '"k"']) assert.ok(!text.includes(s), s);
  assert.deepEqual(e.details, { changed: ['mqtt.password'], key: '[redacted]', mqtt: { password: '[redacted]', url: 'mqtts://b' }, privateKey: '[redacted]', token: '[redacted]', version: '1.2.3' });
  assert.equal(log.verify().ok, true);
});

test('append inside a caller transaction rolls back with it', () => {
  const { db, log } = fresh(2);
  assert.throws(() =>
    db.transaction(() => {
      log.append({ actor: 'local', action: 'rollback', outcome: 'successful' });
      throw new Error('the action failed');
    })(),
  );
  assert.equal(log.list().length, 2);
  assert.equal(log.verify().ok, true);
});

test('a maintenance run\'s entry names its procedure and whether it was a dry run or forced; other commands carry no such flags', () => {
  const origin = { trigger: 'schedule' as const, actor: 'schedule:maintenance-weekly' };
  const dry = commandAudit('r1', 'maintenance', 'successful', undefined, { procedure: 'maintenance-weekly', dryRun: true }, origin);
  assert.deepEqual([dry.actor, dry.action, dry.target, dry.outcome, dry.details], ['schedule:maintenance-weekly', 'maintenance', 'maintenance-weekly', 'successful', { command: 'r1', dryRun: true }]);
  const forced = commandAudit('r2', 'maintenance', 'failed', { code: 'step-failed', message: 'x' }, { procedure: 'plc-bridge-repair', force: true });
  assert.deepEqual([forced.actor, forced.outcome, forced.details], ['wms:r2', 'failed/step-failed', { command: 'r2', reason: 'step-failed', force: true }]);
  const update = commandAudit('u1', 'update', 'successful', undefined, { version: '1.2.0', dryRun: true, force: true });
  assert.deepEqual(update.details, { command: 'u1' });
});
