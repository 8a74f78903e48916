/**
 * Files that hold a copy of the store or of a configuration (store backups, a restored store,
 * quarantined files, known-good copies) may hold what the store holds, secrets included: they
 * are created 0640 before the first byte goes in, whatever the umask, the mode of the directory
 * or the mode of the file they copy, and the directories that hold them are kept 0750 or tighter.
 */
import type { Db } from '../lib/sqlite.js';
import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';

/** The mode of every file holding a copy of the store (or of a configuration): owner rw, group r. */
export const PRIVATE_FILE_MODE = 0o640;

/** Creates `dir` 0750 if missing, and takes group write and every bit for others off one that exists. */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o027) !== 0) chmodSync(dir, mode & ~0o027);
}

/**
 * Creates `path` empty with mode 0640 (replacing whatever is there), for SQLite to write into:
 * SQLite keeps the mode of a file that exists and gives its -journal/-wal the same one.
 */
export function createPrivateFile(path: string): void {
  rmSync(path, { force: true });
  const fd = openSync(path, 'wx', PRIVATE_FILE_MODE);
  try {
    // The umask only takes bits away; fchmod makes it exactly 0640 either way.
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    closeSync(fd);
  }
}

/** Takes group write and every bit for others off `path` (a copy keeps its source's mode). */
export function tightenFile(path: string): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & ~PRIVATE_FILE_MODE) !== 0) chmodSync(path, mode & PRIVATE_FILE_MODE);
}

/** Copies `src` to a new 0640 `dst` (copyFileSync would give `dst` the mode of `src`). */
export function copyPrivate(src: string, dst: string): void {
  createPrivateFile(dst);
  const from = openSync(src, 'r');
  const to = openSync(dst, 'r+');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; ; ) {
      const n = readSync(from, buf, 0, buf.length, pos);
      if (n === 0) break;
      for (let off = 0; off < n; ) off += writeSync(to, buf, off, n - off, pos + off);
      pos += n;
    }
  } finally {
    closeSync(from);
    closeSync(to);
  }
}

/** `VACUUM INTO` a new 0640 file: a consistent copy of the open store, read through its handle. */
export function vacuumIntoPrivate(db: Db, target: string): void {
  createPrivateFile(target);
  db.prepare('VACUUM INTO ?').run(target);
}
