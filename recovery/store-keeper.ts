/**
 * Keeps the running store recoverable: online backups and `quick_check`s on demand (the
 * built-in procedures `store-backup` and `store-check` call them on their schedules, and
 * maintenance-daily, -weekly and -monthly as steps: docs/maintenance.md), plus what must not
 * wait for the scheduler: one backup once the agent has proven itself after a start when the
 * newest is older than `recentBackupMs` (a first start, a long stop, a restored store: the
 * schedule owes nothing from before it first saw its procedure, and a disabled or broken
 * schedule must not leave a gateway without any backup), and the file watch below.
 *
 * A damaged store cannot be repaired under a running agent (every component holds the same
 * handle), so `onCorrupt` is called once and the owner restarts; the start-time check
 * (store-check.ts) then moves the store aside and restores a backup.
 *
 * A store whose file is removed (or replaced) under the running agent goes on working on the
 * unlinked file, and everything written after that is lost at the next start. So every
 * `watchIntervalMs` (a stat, cheap; not deferred to a quiet moment) the path is compared with the
 * file the agent opened (device and inode of `agent.db` and of its `-wal`); on a difference
 * `onDetached` is called, again at each watch until it returns true (handled).
 *
 * INVARIANTS: at most one backup runs at a time (a second caller joins the running one); no
 * timer of its own but the watch; nothing runs after stop(); onCorrupt at most once; onDetached
 * until it is handled, then never again.
 */
import { statSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { quickCheck, type Db } from '../lib/sqlite.js';
import { errorCode } from '../lib/errors.js';
import { listStoreBackups, quickCheckOffThread, takeStoreBackup, type BackupResult } from './store-backup.js';
import { isCorruption } from './store-check.js';
import type { RestoreError } from './restore-errors.js';

export interface StoreKeeperOptions {
  db: Db;
  dataDir: string;
  keepBackups: number;
  /** proven() takes a backup when the newest periodic one is older than this (restore.backupIntervalMs). */
  recentBackupMs: number;
  onCorrupt(problems: string[], when: 'integrity-check' | 'backup'): void;
  /** The store's path (`{dataDir}/agent.db`), watched for the file being removed or replaced. */
  path?: string;
  watchIntervalMs?: number;
  /** The file at `path` is not the one the agent has open (`why` says how); true when handled. */
  onDetached?(why: string, foreign: boolean): boolean;
  clock: Clock;
  logger: Logger;
}

/** A file's identity; undefined when it does not exist. */
export function fileId(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * How `path` (and its -wal) differ from the identities seen at open, or undefined when they do
 * not; `foreign`: another file now stands at `path` (not ours to overwrite without keeping it).
 */
export function detachedWhy(path: string, opened: { db: string | undefined; wal: string | undefined }): { why: string; foreign: boolean } | undefined {
  const db = fileId(path);
  if (db === undefined) return { why: `${path} was removed while the agent had it open`, foreign: false };
  if (opened.db !== undefined && db !== opened.db) return { why: `${path} was replaced by another file while the agent had it open`, foreign: true };
  if (opened.wal !== undefined) {
    const wal = fileId(`${path}-wal`);
    if (wal === undefined) return { why: `${path}-wal was removed while the agent had it open`, foreign: false };
    if (wal !== opened.wal) return { why: `${path}-wal was replaced by another file while the agent had it open`, foreign: false };
  }
  return undefined;
}

/** Whether the agent, having proven itself after a start, takes a backup at once: none is at most `recentMs` old; pure. */
export function firstBackupDue(newestMs: number | undefined, now: number, recentMs: number): boolean {
  // A backup dated in the future (the clock was set back) is not recent: its age is unknown.
  return newestMs === undefined || newestMs > now || now - newestMs > recentMs;
}

export class StoreKeeper {
  readonly name = 'store-keeper';
  private running: Promise<BackupResult | undefined> | undefined;
  /** Only stop() sets it: a scheduled backup that comes before start() (the scheduler starts first) still runs. */
  private stopped = false;
  private corrupt = false;
  private provenOnce = false;
  private watchTimer: NodeJS.Timeout | undefined;
  private opened: { db: string | undefined; wal: string | undefined } | undefined;
  private detached = false;
  lastBackup: { at: string; path: string; bytes: number; ms: number } | undefined;
  lastCheck: { at: string; problems: string[]; ms: number } | undefined;

  constructor(private readonly opts: StoreKeeperOptions) {}

  async start(): Promise<void> {
    this.stopped = false;
    const { path, watchIntervalMs } = this.opts;
    if (path !== undefined && watchIntervalMs !== undefined && this.opts.onDetached) {
      // The store is open (and in WAL mode: its -wal exists) before any component starts.
      this.opened = { db: fileId(path), wal: fileId(`${path}-wal`) };
      this.watchTimer = this.opts.clock.setInterval(() => this.watchNow(), watchIntervalMs);
    }
  }

  /** One comparison of the store's path with the file the agent opened; the reason when it differs. */
  watchNow(): string | undefined {
    const { path } = this.opts;
    if (this.stopped || this.detached || !this.opened || path === undefined || !this.opts.onDetached) return undefined;
    let d: { why: string; foreign: boolean } | undefined;
    try {
      d = detachedWhy(path, this.opened);
    } catch (err) {
      this.opts.logger.warn({ err, path }, 'cannot stat the store');
      return undefined;
    }
    if (d === undefined) return undefined;
    const why = d.why;
    this.opts.logger.error({ path, why }, 'the store file is not the one the agent has open');
    if (this.opts.onDetached(why, d.foreign)) {
      this.detached = true;
      this.opts.clock.clearInterval(this.watchTimer);
      this.watchTimer = undefined;
    }
    return why;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.opts.clock.clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    // The backup reads through the store handle the owner closes next: let it finish first.
    await this.running?.catch(() => undefined);
  }

  /** The agent proved itself after a start: one backup now unless a recent one exists (once per start). */
  proven(): void {
    if (this.stopped || this.provenOnce) return;
    this.provenOnce = true;
    const newest = listStoreBackups(this.opts.dataDir).find((b) => b.kind === 'periodic');
    if (!firstBackupDue(newest?.mtimeMs, this.opts.clock.now(), this.opts.recentBackupMs)) return;
    this.opts.logger.info({ newest: newest?.path ?? null }, 'no recent backup of the store: taking one now that the agent has proven itself');
    void this.backupNow();
  }

  /** Whether a backup is being taken now. */
  get backingUp(): boolean {
    return this.running !== undefined;
  }

  /**
   * One backup now; resolves undefined when stopped, damaged or detached. A call while a backup
   * runs gets that backup's result (it is seconds old), so the start's backup and a scheduled
   * one never fail each other.
   */
  async backupNow(): Promise<BackupResult | undefined> {
    if (this.running) return this.running.catch(() => undefined);
    // A detached store: the owner has saved the open store and restarts; nothing more to take.
    if (this.stopped || this.corrupt || this.detached) return undefined;
    const { db, dataDir, keepBackups, clock, logger } = this.opts;
    this.running = takeStoreBackup({ db, dataDir, keep: keepBackups, now: () => clock.now() });
    try {
      const r = await this.running;
      if (r) {
        this.lastBackup = { at: new Date(clock.now()).toISOString(), path: r.path, bytes: r.bytes, ms: r.ms };
        logger.info({ backup: r.path, bytes: r.bytes, ms: r.ms }, 'store backed up');
      }
      return r;
    } catch (err) {
      if (errorCode(err) === 'backup-corrupt') this.flagCorrupt((err as RestoreError).details?.problems as string[], 'backup');
      else if (isCorruption(err)) this.flagCorrupt([String(err)], 'backup');
      else logger.error({ err }, 'store backup failed');
      return undefined;
    } finally {
      this.running = undefined;
    }
  }

  /** One quick_check now; returns its problems. */
  checkNow(): string[] {
    const { clock } = this.opts;
    const t0 = clock.now();
    let problems: string[];
    try {
      problems = quickCheck(this.opts.db);
    } catch (err) {
      if (!isCorruption(err)) throw err;
      problems = [String(err)];
    }
    return this.checked(t0, problems);
  }

  /**
   * checkNow() with the quick_check in a worker thread (its own read-only connection), so a large
   * store does not hold the event loop; on its own connection, as checkNow(), when the worker
   * cannot check (an in-memory store, no worker, an error that is not corruption).
   */
  async checkNowOffThread(): Promise<string[]> {
    const path = this.opts.db.name;
    if (!path || path === ':memory:' || this.opts.db.memory) return this.checkNow();
    const t0 = this.opts.clock.now();
    const problems = await quickCheckOffThread(path);
    return problems === null ? this.checkNow() : this.checked(t0, problems);
  }

  private checked(t0: number, problems: string[]): string[] {
    const { clock } = this.opts;
    this.lastCheck = { at: new Date(t0).toISOString(), problems, ms: clock.now() - t0 };
    this.opts.logger.info({ ms: this.lastCheck.ms, problems: problems.slice(0, 10) }, problems.length === 0 ? 'store integrity check passed' : 'store integrity check FAILED');
    if (problems.length > 0) this.flagCorrupt(problems, 'integrity-check');
    return problems;
  }

  private flagCorrupt(problems: string[], when: 'integrity-check' | 'backup'): void {
    if (this.corrupt) return;
    this.corrupt = true;
    this.opts.logger.error({ problems: problems.slice(0, 10), when }, 'the store is damaged');
    this.opts.onCorrupt(problems, when);
  }
}
