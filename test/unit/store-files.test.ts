/**
 * The files recovery/ writes, on real files in a temp directory (issue #12 items 5, 10, 11):
 * every copy of the store or of a configuration is 0640 or tighter whatever the umask, the
 * directory's mode or the source's mode; a missing store with backups present is restored at
 * start (not started empty); a configuration identical to its known-good copy is left alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from '../../lib/sqlite.js';
import { checkStore } from '../../recovery/store-check.js';
import { restoreNewestBackup, takeStoreBackup } from '../../recovery/store-backup.js';
import { quarantineFile } from '../../recovery/quarantine.js';
import { listKnownGood, restoreConfig, takeKnownGood } from '../../recovery/known-good.js';
import { copyPrivate, vacuumIntoPrivate } from '../../recovery/private-files.js';
import { tempDir } from '../helpers/util.js';

const MIGRATIONS = [{ domain: 't', migrations: [{ version: 1, up: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)' }] }];

const modeOf = (p: string): number => statSync(p).mode & 0o777;
const private640 = (p: string): void => assert.equal(modeOf(p) & ~0o640, 0, `${p} is ${modeOf(p).toString(8)}, not 0640 or tighter`);

/** A data directory as the issue found it: already there, 0755, under the usual umask 022. */
function dataDir022(): { dataDir: string; path: string; restoreUmask: () => void } {
  const old = process.umask(0o022);
  const dataDir = tempDir('store-files');
  chmodSync(dataDir, 0o755);
  return { dataDir, path: join(dataDir, 'agent.db'), restoreUmask: () => process.umask(old) };
}

async function storeWithBackup(dataDir: string, path: string, rows: number): Promise<string> {
  const db = openDatabase(path, { migrations: MIGRATIONS });
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  for (let i = 0; i < rows; i++) ins.run(`secret-${i}`);
  try {
    return (await takeStoreBackup({ db, dataDir, keep: 3, now: () => Date.now() })).path;
  } finally {
    db.close();
  }
}

test('store backups, a restored store and quarantined files are 0640; an existing backups/ 0755 is tightened', async () => {
  const { dataDir, path, restoreUmask } = dataDir022();
  try {
    mkdirSync(join(dataDir, 'backups'), { mode: 0o755 });
    chmodSync(join(dataDir, 'backups'), 0o755);
    const backup = await storeWithBackup(dataDir, path, 10);
    private640(backup);
    assert.equal(modeOf(join(dataDir, 'backups')) & 0o027, 0, 'backups/ holds copies of the store: 0750 or tighter');
    // A backup an older release left 0644: the store restored from it is 0640 all the same.
    chmodSync(backup, 0o644);
    const target = join(dataDir, 'restored.db');
    assert.ok(restoreNewestBackup(dataDir, target).from);
    private640(target);
    // Quarantine: a moved store and a copied configuration, both 0644 where they were.
    writeFileSync(join(dataDir, 'x.db'), 'store bytes', { mode: 0o644 });
    private640(quarantineFile(dataDir, join(dataDir, 'x.db'), 1));
    writeFileSync(join(dataDir, 'config.yaml'), 'password: x', { mode: 0o644 });
    private640(quarantineFile(dataDir, join(dataDir, 'config.yaml'), 2, { copy: true }));
    // Known-good copies of a configuration (it may hold secrets too).
    takeKnownGood({ dataDir, source: join(dataDir, 'config.yaml'), content: Buffer.from('password: x'), keep: 2 });
    for (const c of listKnownGood(dataDir, join(dataDir, 'config.yaml'))) private640(c.path);
  } finally {
    restoreUmask();
  }
});

test('a missing store with backups present is restored from the newest, not started empty', async () => {
  const { dataDir, path, restoreUmask } = dataDir022();
  try {
    await storeWithBackup(dataDir, path, 25);
    for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
    const r = checkStore({ path, dataDir, now: Date.now });
    assert.equal(r.state, 'restored', JSON.stringify(r));
    assert.ok(r.state === 'restored');
    assert.equal((r as { cause?: string }).cause, 'store-missing');
    assert.deepEqual(r.quarantined, []);
    const db = openDatabase(path, { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS c FROM t').get() as { c: number }).c, 25);
    } finally {
      db.close();
    }
    private640(path);
    // Without any backup, no store is a first start.
    const fresh = tempDir('store-files-new');
    assert.deepEqual(checkStore({ path: join(fresh, 'agent.db'), dataDir: fresh, now: Date.now }), { state: 'new' });
  } finally {
    restoreUmask();
  }
});

test('restoreConfig: a file identical to its newest known-good copy is neither quarantined nor rewritten', () => {
  const d = tempDir('kg-identical');
  const src = join(d, 'plc-bridge.yaml');
  writeFileSync(src, 'good');
  takeKnownGood({ dataDir: d, source: src, content: Buffer.from('good'), keep: 5 });
  const before = statSync(src);
  const r = restoreConfig({ dataDir: d, source: src, now: 0 });
  assert.equal(r.restored, false);
  assert.equal((r as { identical?: string }).identical, listKnownGood(d, src)[0]?.path, 'the result names the copy the file matches');
  assert.equal(existsSync(join(d, 'quarantine')) ? readdirSync(join(d, 'quarantine')).length : 0, 0, 'nothing quarantined');
  const after = statSync(src);
  assert.equal(after.ino, before.ino, 'not rewritten');
  assert.equal(after.mtimeMs, before.mtimeMs);
  // A changed file is restored as before.
  writeFileSync(src, 'changed');
  const r2 = restoreConfig({ dataDir: d, source: src, now: 0 });
  assert.ok(r2.restored);
  assert.equal(readFileSync(src, 'utf8'), 'good');
});

test('the update backup helpers (agent/ota-wiring.ts): VACUUM INTO and the configuration copy are 0640', () => {
  const { dataDir, path, restoreUmask } = dataDir022();
  try {
    const db = openDatabase(path, { migrations: MIGRATIONS });
    db.prepare('INSERT INTO t(v) VALUES (?)').run('secret');
    const dir = join(dataDir, 'backups', 'x-u1');
    mkdirSync(dir, { recursive: true });
    vacuumIntoPrivate(db, join(dir, 'agent.db'));
    db.close();
    private640(join(dir, 'agent.db'));
    writeFileSync(join(dataDir, 'config.yaml'), 'password: x', { mode: 0o644 });
    copyPrivate(join(dataDir, 'config.yaml'), join(dir, 'config.yaml'));
    private640(join(dir, 'config.yaml'));
    assert.equal(readFileSync(join(dir, 'config.yaml'), 'utf8'), 'password: x');
  } finally {
    restoreUmask();
  }
});
