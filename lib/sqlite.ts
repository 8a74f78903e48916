/**
 * SQLite opened the way state that must survive power loss needs it: WAL, synchronous=FULL,
 * foreign keys on, a busy timeout for the CLI reading while the daemon writes. Opened once and
 * passed in; nothing here is a module singleton.
 *
 * The store and its -wal and -shm are created with `mode` (default 0640: the agent's user and
 * its group, never everyone): the file is made with that mode before SQLite opens it, and SQLite
 * gives its -wal and -shm the database file's mode. Files an older release left more open are
 * narrowed at open.
 *
 * Migrations are versioned per domain (outbox, commands, ota, ...) so each capability owns its
 * tables. A domain's migrations run in order, each in its own transaction together with the
 * bump of its version, so a power cut leaves a domain either before or after a migration.
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

export interface Migration {
  version: number;
  /** Either SQL, or a function for data migrations. */
  up: string | ((db: Db) => void);
}

export interface MigrationSet {
  domain: string;
  migrations: readonly Migration[];
}

export interface OpenOptions {
  readonly?: boolean;
  /**
   * SQLite's page cache in KiB (default 2048). better-sqlite3 builds with a 16 MB default, which
   * on a gateway is memory better left to the system's page cache; bench/ shows the difference.
   */
  cacheKiB?: number;
  migrations?: readonly MigrationSet[];
  /** Permission bits of the store and its -wal and -shm (default 0640). */
  mode?: number;
  /**
   * FULL (default): every commit is durable when it returns (an fsync inside it, on the event
   * loop). NORMAL: for a connection whose writers wait for durability with lib/wal-sync.ts.
   */
  synchronous?: 'FULL' | 'NORMAL';
}

/** Creates `path` with `mode` when it does not exist; narrows it (and its -wal, -shm) to `mode` when it is more open. */
function ensureMode(path: string, mode: number): void {
  // 'a': create when missing, never truncate; the mode applies only when it is created.
  closeSync(openSync(path, 'a', mode));
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if ((statSync(p).mode & 0o777 & ~mode) !== 0) chmodSync(p, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  if (!opts.readonly) {
    mkdirSync(dirname(path), { recursive: true });
    if (path !== ':memory:') ensureMode(path, opts.mode ?? 0o640);
  }
  const db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  db.pragma('busy_timeout = 5000');
  db.pragma(`cache_size = -${Math.max(64, Math.floor(opts.cacheKiB ?? 2048))}`);
  if (!opts.readonly) {
    // A new file gives freed pages back in small steps (PRAGMA incremental_vacuum), so a store
    // is compacted without a VACUUM that holds the write lock for seconds; an existing file keeps
    // its mode (only a full VACUUM changes it).
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db, opts.migrations ?? []);
  }
  return db;
}

export function migrate(db: Db, sets: readonly MigrationSet[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (domain TEXT PRIMARY KEY, version INTEGER NOT NULL)');
  const get = db.prepare<[string], { version: number }>('SELECT version FROM schema_migrations WHERE domain = ?');
  const set = db.prepare('INSERT INTO schema_migrations(domain, version) VALUES (?, ?) ON CONFLICT(domain) DO UPDATE SET version = excluded.version');
  for (const s of sets) {
    const current = get.get(s.domain)?.version ?? 0;
    const pending = [...s.migrations].filter((m) => m.version > current).sort((a, b) => a.version - b.version);
    for (const m of pending) {
      db.transaction(() => {
        if (typeof m.up === 'string') db.exec(m.up);
        else m.up(db);
        set.run(s.domain, m.version);
      })();
    }
  }
}

/** `PRAGMA quick_check`: "ok" or the list of problems SQLite found. */
export function quickCheck(db: Db): string[] {
  const rows = db.pragma('quick_check') as { quick_check: string }[];
  return rows.map((r) => r.quick_check).filter((r) => r !== 'ok');
}
