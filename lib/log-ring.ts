/**
 * The recent-log ring: the agent's own log lines (info and above) in `{dir}/agent.log`, rotated
 * at `maxBytes` into agent.log.1 ... agent.log.{files-1}, so `edge-agent diag` and the support
 * bundle can read what happened lately when the daemon is down and journald is not at hand.
 *
 * INVARIANTS
 * - The ring never holds more than `files * maxBytes` bytes (plus one line), whatever is logged.
 * - Writes are synchronous (like the stdout destination), so the last lines before a fatal exit
 *   are on disk; a write that fails (disk full, a removed directory) is dropped and counted:
 *   logging never takes the agent down.
 * - Lines arrive already redacted (pino redacts before any destination sees a line).
 * - Nothing happens before the first write: constructing a LogRing opens no file.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const LOG_RING_FILE = 'agent.log';
export const DEFAULT_RING_BYTES = 4 * 1024 * 1024;
export const DEFAULT_RING_FILES = 2;

export interface LogRingOptions {
  dir: string;
  /** Bytes of one file before it is rotated; default 4 MiB. */
  maxBytes?: number;
  /** Files kept, the current one included (at least 1); default 2. */
  files?: number;
}

/** The ring's files, newest first: agent.log, agent.log.1, ... */
export function ringPaths(dir: string, files = DEFAULT_RING_FILES): string[] {
  return Array.from({ length: Math.max(1, files) }, (_, i) => join(dir, i === 0 ? LOG_RING_FILE : `${LOG_RING_FILE}.${i}`));
}

/** A pino destination (anything with write(string)) that keeps a bounded ring of files. */
export class LogRing {
  private fd: number | undefined;
  private size = 0;
  /** Lines that could not be written (disk full, directory removed). */
  dropped = 0;
  private readonly maxBytes: number;
  private readonly files: number;

  constructor(private readonly opts: LogRingOptions) {
    this.maxBytes = Math.max(1024, opts.maxBytes ?? DEFAULT_RING_BYTES);
    this.files = Math.max(1, opts.files ?? DEFAULT_RING_FILES);
  }

  write(chunk: string): boolean {
    try {
      const buf = Buffer.from(chunk, 'utf8');
      if (this.fd !== undefined && this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
      const fd = this.open();
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      this.size += buf.length;
    } catch {
      this.dropped++;
      this.closeFd();
    }
    return true;
  }

  close(): void {
    this.closeFd();
  }

  private open(): number {
    if (this.fd !== undefined) return this.fd;
    mkdirSync(this.opts.dir, { recursive: true, mode: 0o750 });
    const fd = openSync(join(this.opts.dir, LOG_RING_FILE), 'a', 0o640);
    this.fd = fd;
    this.size = fstatSync(fd).size;
    // A file left over a larger bound (the bound was lowered) rotates at once.
    if (this.size >= this.maxBytes) {
      this.rotate();
      return this.open();
    }
    return fd;
  }

  /** agent.log.{n-2} -> .{n-1}, ..., agent.log -> agent.log.1; the oldest is overwritten. */
  private rotate(): void {
    this.closeFd();
    const paths = ringPaths(this.opts.dir, this.files);
    for (let i = paths.length - 1; i > 0; i--) {
      try {
        renameSync(paths[i - 1]!, paths[i]!);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    if (paths.length === 1) {
      // One file only: start it again empty.
      closeSync(openSync(paths[0]!, 'w', 0o640));
    }
    this.size = 0;
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = undefined;
  }
}

/**
 * The ring's lines, oldest first, reading at most `maxBytes` from the newest files backwards.
 * Missing files are skipped; a partial first line (cut by the byte bound) is dropped.
 */
export function readRing(dir: string, files = DEFAULT_RING_FILES, maxBytes = 64 * 1024 * 1024): string[] {
  const texts: string[] = [];
  let budget = maxBytes;
  for (const path of ringPaths(dir, files)) {
    if (budget <= 0) break;
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch {
      continue;
    }
    let text = buf.length > budget ? buf.subarray(buf.length - budget).toString('utf8') : buf.toString('utf8');
    if (buf.length > budget) text = text.slice(text.indexOf('\n') + 1);
    budget -= buf.length;
    texts.unshift(text);
  }
  return texts.flatMap((t) => t.split('\n')).filter((l) => l.length > 0);
}
