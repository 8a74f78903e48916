/**
 * The store's check, quarantine and restore (recovery/store-check.ts, store-backup.ts,
 * store-keeper.ts) on real SQLite files in a temp directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';
import { checkStore, isCorruption } from '../../recovery/store-check.js';
import { listStoreBackups, pruneStoreBackups, restoreNewestBackup, saveOpenStore, takeStoreBackup } from '../../recovery/store-backup.js';
import { detachedWhy, fileId, firstBackupDue, StoreKeeper } from '../../recovery/store-keeper.js';
import { fakeClock } from '../helpers/fake-clock.js';
import { loopTurnsDuring, prng } from '../helpers/util.js';

const MIGRATIONS = [{ domain: 't', migrations: [{ version: 1, up: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t(v)' }] }];

function setup(): { dataDir: string; path: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'store-check-'));
  return { dataDir, path: join(dataDir, 'agent.db') };
}

/** A store big enough (~2 MB) that a page in its middle holds rows. */
function fill(path: string, rows = 10_000, tag = 'row'): void {
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(`${tag}-${i}-${'x'.repeat(150)}`);
  })();
  db.close();
}

function count(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS c FROM t').get() as { c: number }).c;
  } finally {
    db.close();
  }
}

/** Overwrites one whole page in the middle of the file with random bytes. */
function garbleMiddle(path: string, seed = 7): void {
  const size = statSync(path).size;
  const rnd = prng(seed);
  const buf = Buffer.alloc(4096, 0).map(() => Math.floor(rnd() * 256));
  const fd = openSync(path, 'r+');
  writeSync(fd, buf, 0, buf.length, Math.floor(size / 2 / 4096) * 4096);
  closeSync(fd);
}

async function backupOf(path: string, dataDir: string): Promise<string> {
  const db = openDatabase(path, { migrations: MIGRATIONS });
  try {
    return (await takeStoreBackup({ db, dataDir, keep: 3, now: () => Date.now() })).path;
  } finally {
    db.close();
  }
}

test('no store yet: new; a sound store: ok, and nothing is touched', () => {
  const { dataDir, path } = setup();
  assert.deepEqual(checkStore({ path, dataDir, now: Date.now }), { state: 'new' });
  fill(path, 100);
  assert.deepEqual(checkStore({ path, dataDir, now: Date.now }), { state: 'ok' });
  assert.equal(existsSync(join(dataDir, 'quarantine')), false);
  assert.equal(count(path), 100);
});

test('random bytes over a page in the middle: quarantined, restored from the newest good backup', async () => {
  const { dataDir, path } = setup();
  fill(path, 5000, 'old');
  const oldBackup = await backupOf(path, dataDir);
  utimesSync(oldBackup, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  fill(path, 5000, 'new');
  const newBackup = await backupOf(path, dataDir);
  fill(path, 10_000, 'after');
  garbleMiddle(path);
  // The newest backup is damaged too: the older good one must be used.
  garbleMiddle(newBackup, 11);
  const r = checkStore({ path, dataDir, now: () => Date.parse('2024-05-01T10:00:00Z') });
  assert.equal(r.state, 'restored');
  assert.ok(r.state === 'restored');
  assert.ok(r.problems.length > 0);
  assert.equal(r.from.path, oldBackup);
  assert.equal(r.skipped[0]?.path, newBackup);
  assert.equal(count(path), 5000);
  assert.deepEqual(readdirSync(join(dataDir, 'quarantine')), ['2024-05-01T10-00-00-000Z-agent.db']);
  assert.equal(readdirSync(dataDir).filter((n) => n.includes('.restore.tmp')).length, 0);
  // The restored store opens with the normal settings and migrations and takes writes.
  const db = openDatabase(path, { migrations: MIGRATIONS });
  db.prepare('INSERT INTO t(v) VALUES (?)').run('later');
  db.close();
  assert.equal(checkStore({ path, dataDir, now: Date.now }).state, 'ok');
});

test('a truncated store without any backup: rebuilt empty, the damage quarantined', () => {
  const { dataDir, path } = setup();
  fill(path);
  truncateSync(path, Math.floor(statSync(path).size / 3));
  const r = checkStore({ path, dataDir, now: Date.now });
  assert.equal(r.state, 'rebuilt');
  assert.ok(r.state === 'rebuilt' && /SQLITE_CORRUPT|malformed/i.test(r.problems.join()));
  assert.equal(existsSync(path), false, 'openDatabase creates a fresh store next');
  assert.equal(readdirSync(join(dataDir, 'quarantine')).length, 1);
});

test('garbage over the header (SQLITE_NOTADB) restores from an update backup too', async () => {
  const { dataDir, path } = setup();
  fill(path, 300);
  // The OTA update's layout: backups/{stamp}-{id}/agent.db (VACUUM INTO).
  const ota = join(dataDir, 'backups', '2024-01-01T00-00-00-000Z-u1');
  mkdirSync(ota, { recursive: true });
  const db = new Database(path);
  db.prepare('VACUUM INTO ?').run(join(ota, 'agent.db'));
  db.close();
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(100, 0x41), 0, 100, 0);
  closeSync(fd);
  const r = checkStore({ path, dataDir, now: Date.now });
  assert.ok(r.state === 'restored');
  assert.equal(r.from.kind, 'update');
  assert.equal(count(path), 300);
});

test('a WAL lost after an unclean stop: the checkpointed store is kept when integrity_check passes', () => {
  const { dataDir, path } = setup();
  fill(path, 200);
  // A live writer with its last changes only in the WAL; copy its files as kill -9 leaves them.
  const live = openDatabase(path, { migrations: MIGRATIONS });
  live.pragma('wal_autocheckpoint = 0');
  live.prepare('INSERT INTO t(v) VALUES (?)').run('only-in-the-wal');
  const crashed = join(dataDir, 'crashed');
  mkdirSync(crashed);
  for (const s of ['', '-wal', '-shm']) copyFileSync(`${path}${s}`, join(crashed, `agent.db${s}`));
  live.close();
  const p2 = join(crashed, 'agent.db');
  rmSync(`${p2}-wal`);
  const r = checkStore({ path: p2, dataDir: crashed, now: Date.now });
  assert.deepEqual(r, { state: 'wal-lost' });
  assert.equal(count(p2), 200, 'the store as of its last checkpoint');
  // A clean stop removes both files: no false alarm then.
  assert.equal(existsSync(`${path}-wal`), false);
  assert.deepEqual(checkStore({ path, dataDir, now: Date.now }), { state: 'ok' });
});

test('a store that cannot be opened for other reasons is not touched', () => {
  const { dataDir, path } = setup();
  mkdirSync(path);
  assert.throws(() => checkStore({ path, dataDir, now: Date.now }), (err: unknown) => !isCorruption(err));
  assert.equal(existsSync(join(dataDir, 'quarantine')), false);
});

test('online backups: checked, no -wal/-shm left beside them, rotation keeps N of its own kind', async () => {
  const { dataDir, path } = setup();
  fill(path, 500);
  const ota = join(dataDir, 'backups', 'x-u1');
  mkdirSync(ota, { recursive: true });
  copyFileSync(path, join(ota, 'agent.db'));
  const db = openDatabase(path, { migrations: MIGRATIONS });
  let t = Date.parse('2024-05-01T00:00:00Z');
  for (let i = 0; i < 4; i++) {
    t += 1000;
    await takeStoreBackup({ db, dataDir, keep: 2, now: () => t });
  }
  db.close();
  const names = readdirSync(join(dataDir, 'backups')).sort();
  assert.deepEqual(names, ['store-2024-05-01T00-00-03-000Z.db', 'store-2024-05-01T00-00-04-000Z.db', 'x-u1']);
  assert.equal(count(join(dataDir, 'backups', names[1]!)), 500);
  pruneStoreBackups(dataDir, 1);
  assert.deepEqual(listStoreBackups(dataDir).map((b) => b.kind).sort(), ['periodic', 'update']);
});

test('restoreNewestBackup with nothing to restore', () => {
  const { dataDir, path } = setup();
  assert.deepEqual(restoreNewestBackup(dataDir, path), { from: undefined, skipped: [] });
});

test('firstBackupDue: at once without a backup or with one older than the bound (or dated in the future), else not', () => {
  assert.equal(firstBackupDue(undefined, 1000, 100), true);
  assert.equal(firstBackupDue(950, 1000, 100), false);
  assert.equal(firstBackupDue(900, 1000, 100), false);
  assert.equal(firstBackupDue(899, 1000, 100), true);
  assert.equal(firstBackupDue(5000, 1000, 100), true, 'a backup from the future (clock set back): its age is unknown');
});

function keeper(db: Db, dataDir: string, onCorrupt: (p: string[]) => void): StoreKeeper {
  return new StoreKeeper({ db, dataDir, keepBackups: 2, recentBackupMs: 3_600_000, onCorrupt, clock: systemClock, logger: silentLogger() });
}

test('StoreKeeper: proven() takes the first backup at once; stop() releases its timers', async () => {
  const { dataDir, path } = setup();
  fill(path, 100);
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const k = keeper(db, dataDir, () => assert.fail('not corrupt'));
  await k.start();
  k.proven();
  const deadline = Date.now() + 10_000;
  while (!k.lastBackup && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(k.lastBackup, 'a backup was taken');
  assert.equal(listStoreBackups(dataDir).length, 1);
  assert.deepEqual(k.checkNow(), []);
  await k.stop();
  db.close();
});

test('StoreKeeper: no periodic timer of its own (the schedules of store-check and store-backup do that); proven() backs up once per start, only without a recent backup; a second backupNow joins the running one', async () => {
  const { dataDir, path } = setup();
  fill(path, 100);
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const clock = fakeClock(Date.now());
  const k = new StoreKeeper({ db, dataDir, keepBackups: 5, recentBackupMs: 3_600_000, onCorrupt: () => assert.fail('not corrupt'), clock, logger: silentLogger() });
  await k.start();
  assert.equal(clock.pending(), 0, 'no timer without the file watch');
  // Joined: two calls at once take one backup, and both get it.
  const [a, b] = await Promise.all([k.backupNow(), k.backupNow()]);
  assert.ok(a && b);
  assert.equal(a.path, b.path);
  assert.equal(listStoreBackups(dataDir).length, 1);
  // A recent backup exists: proven() takes none.
  k.proven();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(listStoreBackups(dataDir).length, 1);
  // Days later nothing ran by itself: no quick_check, no backup.
  await clock.advance(3 * 86_400_000);
  assert.equal(k.lastCheck, undefined, 'no periodic quick_check');
  assert.equal(listStoreBackups(dataDir).length, 1, 'no periodic backup');
  assert.equal(clock.pending(), 0);
  await k.stop();
  // A new start with the newest backup now days old: proven() takes one, once.
  const k2 = new StoreKeeper({ db, dataDir, keepBackups: 5, recentBackupMs: 3_600_000, onCorrupt: () => assert.fail('not corrupt'), clock, logger: silentLogger() });
  await k2.start();
  k2.proven();
  k2.proven();
  const deadline = Date.now() + 10_000;
  while (!k2.lastBackup && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  while (k2.backingUp && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(listStoreBackups(dataDir).length, 2, 'one backup for the start');
  await k2.stop();
  db.close();
});

test('StoreKeeper: a damaged running store is reported once', async () => {
  const { dataDir, path } = setup();
  fill(path, 10_000);
  garbleMiddle(path);
  const db = new Database(path);
  const seen: string[][] = [];
  const k = keeper(db, dataDir, (p) => seen.push(p));
  await k.start();
  assert.ok(k.checkNow().length > 0);
  k.checkNow();
  assert.equal(seen.length, 1);
  assert.equal(await k.backupNow(), undefined, 'no backup of a store known to be damaged');
  await k.stop();
  db.close();
});

test('StoreKeeper: the store file removed or replaced under the open handle is noticed; the open store is saved back, 0640', async () => {
  const { dataDir, path } = setup();
  fill(path, 200);
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const seen: { why: string; foreign: boolean }[] = [];
  let handled = false;
  const k = new StoreKeeper({
    db, dataDir, keepBackups: 2, recentBackupMs: 3_600_000, onCorrupt: () => assert.fail('not corrupt'),
    clock: systemClock, logger: silentLogger(), path, watchIntervalMs: 3_600_000,
    onDetached: (why, foreign) => {
      seen.push({ why, foreign });
      return handled;
    },
  });
  await k.start();
  assert.equal(k.watchNow(), undefined, 'the file the agent opened: nothing to do');
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  // The handle still works on the unlinked file; what it writes now is only there.
  db.prepare('INSERT INTO t(v) VALUES (?)').run('after-rm');
  assert.match(k.watchNow() ?? '', /agent\.db was removed/);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]?.foreign, false);
  // Not handled: asked again at the next watch; handled: never again.
  k.watchNow();
  assert.equal(seen.length, 2);
  saveOpenStore(db, path);
  handled = true;
  // The saved file is not the one the handle has open: still "replaced", reported once more, then done.
  k.watchNow();
  k.watchNow();
  assert.equal(seen.length, 3);
  assert.equal(seen[2]?.foreign, true);
  await k.stop();
  db.close();
  assert.equal(count(path), 201, 'the saved store holds every row, the one written after the rm too');
  assert.equal(statSync(path).mode & 0o777 & ~0o640, 0, 'saved 0640 or tighter');
  assert.deepEqual(readdirSync(dataDir).filter((n) => n.startsWith('.')), [], 'no temporary file left');
});

test('detachedWhy: removed, replaced, its WAL removed', () => {
  const { dataDir, path } = setup();
  fill(path, 10);
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const opened = { db: fileId(path), wal: fileId(`${path}-wal`) };
  assert.ok(opened.wal, 'an open WAL-mode store has its -wal');
  assert.equal(detachedWhy(path, opened), undefined);
  rmSync(`${path}-wal`);
  assert.deepEqual(detachedWhy(path, opened), { why: `${path}-wal was removed while the agent had it open`, foreign: false });
  copyFileSync(path, `${path}.x`);
  rmSync(path);
  copyFileSync(`${path}.x`, path);
  assert.equal(detachedWhy(path, opened)?.foreign, true);
  db.close();
  void dataDir;
});

test('StoreKeeper: checkNowOffThread runs quick_check in a worker (the loop turns meanwhile): a sound store passes, a damaged one is reported once, like checkNow', async () => {
  const sound = setup();
  fill(sound.path, 10_000);
  const db = new Database(sound.path);
  const k = keeper(db, sound.dataDir, () => assert.fail('not corrupt'));
  await k.start();
  const { value, turns } = await loopTurnsDuring(() => k.checkNowOffThread());
  assert.deepEqual(value, []);
  assert.ok(turns > 1, `the event loop turned ${turns} times during the check`);
  assert.deepEqual(k.lastCheck?.problems, []);
  await k.stop();
  db.close();

  const bad = setup();
  fill(bad.path, 10_000);
  garbleMiddle(bad.path);
  const db2 = new Database(bad.path);
  const seen: string[][] = [];
  const k2 = keeper(db2, bad.dataDir, (p) => seen.push(p));
  await k2.start();
  assert.ok((await k2.checkNowOffThread()).length > 0);
  await k2.checkNowOffThread();
  assert.equal(seen.length, 1);
  await k2.stop();
  db2.close();
});
