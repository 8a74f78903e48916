/**
 * The state store's check at start, before migrations: is `agent.db` readable and sound, and if
 * not, put it aside and restore the newest good backup (or start empty and say what was lost).
 *
 * What counts as corrupt: opening or `PRAGMA quick_check` fails with SQLITE_CORRUPT or
 * SQLITE_NOTADB (a truncated file, garbage over the header), or quick_check lists problems
 * (garbage over pages in the middle). Any other error (permissions, a full disk, a lock) is NOT
 * corruption: it is rethrown and nothing is moved, because restoring would throw good data away.
 *
 * A lost WAL: after an unclean stop SQLite leaves both `agent.db-wal` and `agent.db-shm`; a clean
 * close removes both, and a reader recreates both. So `-shm` without `-wal` means the WAL of an
 * unclean stop went missing. The main file then holds the store as of its last checkpoint, which
 * is newer than any backup; it is kept if the full `PRAGMA integrity_check` passes (a checkpoint
 * cut short leaves pages of two versions, which integrity_check rather than quick_check finds),
 * and the transactions since that checkpoint are recorded as lost. Otherwise it is restored like
 * any corrupt store.
 *
 * A missing store: no `agent.db` at all is a first start only while there is no backup either.
 * With backups present the store was deleted (by hand, by a cleanup gone wrong): starting empty
 * would forget every command id and execute again the ones the WMS sends again, so the newest
 * good backup is restored exactly as for a corrupt store (cause `store-missing`).
 *
 * The check opens the store read-only, so a corrupt file reaches quarantine as it was found.
 */
import { existsSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Db } from '../lib/sqlite.js';
import { quickCheck } from '../lib/sqlite.js';
import { quarantineFile } from './quarantine.js';
import { listStoreBackups, restoreNewestBackup, type StoreBackup } from './store-backup.js';

/** Why the store was replaced: damaged, or not there (while backups are). */
export type StoreCause = 'store-corrupt' | 'store-missing';

export type StoreCheck =
  | { state: 'ok' }
  /** No store and no backup: a first start (or a deliberate wipe of the store and its backups). */
  | { state: 'new' }
  /** The WAL of an unclean stop is gone; the rest passed integrity_check and was kept. */
  | { state: 'wal-lost' }
  | { state: 'restored'; cause: StoreCause; problems: string[]; quarantined: string[]; from: StoreBackup; skipped: { path: string; why: string }[] }
  | { state: 'rebuilt'; cause: StoreCause; problems: string[]; quarantined: string[]; skipped: { path: string; why: string }[] };

/** SQLite's own words for "this file is damaged", as opposed to "I cannot get at it". */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB');
}

/** The problems SQLite finds in the store file, [] when sound; throws on non-corruption errors. */
export function inspectStore(path: string, full: boolean): string[] {
  let db: Db | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    if (!full) return quickCheck(db);
    const rows = db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
  } catch (err) {
    if (isCorruption(err)) return [`${(err as { code: string }).code}: ${(err as Error).message}`];
    throw err;
  } finally {
    try {
      db?.close();
    } catch {
      // A connection to a damaged file may fail to close; it is about to be moved aside.
    }
  }
}

export interface CheckStoreOptions {
  /** `{dataDir}/agent.db`. */
  path: string;
  dataDir: string;
  now: () => number;
}

export function checkStore(opts: CheckStoreOptions): StoreCheck {
  const { path, dataDir } = opts;
  const wal = `${path}-wal`;
  const shm = `${path}-shm`;
  const hasDb = existsSync(path);
  const hasWal = existsSync(wal);
  const hasShm = existsSync(shm);
  if (!hasDb && !hasWal && !hasShm && listStoreBackups(dataDir).length === 0) return { state: 'new' };
  let problems: string[];
  if (!hasDb) problems = [hasWal || hasShm ? 'agent.db is missing while its -wal/-shm files are there' : 'agent.db is missing while backups of it are there'];
  else {
    const walLost = hasShm && !hasWal;
    problems = inspectStore(path, walLost);
    if (problems.length === 0 && walLost) {
      // SQLite rebuilds the index from the (absent) WAL; the stale one is only misleading.
      rmSync(shm, { force: true });
      return { state: 'wal-lost' };
    }
    if (problems.length === 0) return { state: 'ok' };
  }
  const now = opts.now();
  // Only what was there before the check: a read-only open creates an empty -wal and -shm.
  const found = [hasDb && path, hasWal && wal, hasShm && shm].filter((f): f is string => f !== false);
  const quarantined = found.map((f) => quarantineFile(dataDir, f, now));
  for (const f of [wal, shm]) rmSync(f, { force: true });
  const r = restoreNewestBackup(dataDir, path);
  const cause: StoreCause = hasDb ? 'store-corrupt' : 'store-missing';
  if (r.from) return { state: 'restored', cause, problems, quarantined, from: r.from, skipped: r.skipped };
  return { state: 'rebuilt', cause, problems, quarantined, skipped: r.skipped };
}
