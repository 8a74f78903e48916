/**
 * Durability of commits without blocking the event loop: for a WAL-mode SQLite connection opened
 * with `synchronous = NORMAL`, a commit returns once its frames are written to the -wal file (in
 * the OS's cache); `after(cb)` fsyncs that file on libuv's thread pool and runs `cb(true)` once
 * every commit made before the call is on disk. With `synchronous = FULL` the same fsync would
 * run inside every commit, on the event loop: one slow disk flush (a busy or worn eMMC takes
 * seconds) would stop everything, the watchdog ping included.
 *
 * Requests while an fsync is under way share the next one (the fsync is group-committed too).
 * fsync(2) of any descriptor of a file flushes all of that file's written data, so a descriptor
 * of our own is as good as SQLite's. SQLite still syncs the WAL before each checkpoint and the
 * database file after it (synchronous = NORMAL), so checkpointed frames are durable as well.
 *
 * INVARIANT: a callback runs only after an fsync that started after its after() call.
 * `cb(false)`: the fsync failed (EIO, ...); whether the commits are durable is not known.
 */
import { open } from 'node:fs/promises';

export class WalSync {
  private inFlight = false;
  private waiting: ((durable: boolean) => void)[] = [];
  private closed = false;

  constructor(private readonly opts: { dbPath: string; onError?(err: unknown): void }) {}

  /** Runs `cb` once every commit made before this call is durable (`true`), or the fsync failed (`false`). */
  after(cb: (durable: boolean) => void): void {
    this.waiting.push(cb);
    if (!this.inFlight) this.start();
  }

  /** Whether an fsync is under way or waited for. */
  busy(): boolean {
    return this.inFlight || this.waiting.length > 0;
  }

  /** Later after() calls get `true` at once: for the end of the process, once the store is closed (closing checkpoints and syncs). */
  close(): void {
    this.closed = true;
  }

  private start(): void {
    const batch = this.waiting;
    this.waiting = [];
    this.inFlight = true;
    void this.fsync().then((ok) => {
      this.inFlight = false;
      for (const cb of batch) {
        try {
          cb(ok);
        } catch (err) {
          this.opts.onError?.(err);
        }
      }
      if (this.waiting.length > 0) this.start();
    });
  }

  private async fsync(): Promise<boolean> {
    if (this.closed) return true;
    for (const path of [`${this.opts.dbPath}-wal`, this.opts.dbPath]) {
      try {
        const fh = await open(path, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        return true;
      } catch (err) {
        // No -wal file: nothing was written since the last checkpoint removed it; the database file it is.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && path.endsWith('-wal')) continue;
        this.opts.onError?.(err);
        return false;
      }
    }
    return true;
  }
}
