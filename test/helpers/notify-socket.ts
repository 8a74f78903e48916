/**
 * Plays systemd's side of sd_notify(3) in tests: a unix datagram socket bound to a temp path,
 * collecting every datagram as a string. Point a child's NOTIFY_SOCKET at `path` (see `env`)
 * and assert on `messages`, e.g. that READY=1 came and WATCHDOG=1 keeps coming.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadUnixDgram } from '../../lib/sdnotify.js';
import { tempDir, waitFor } from './util.js';

export interface NotifySocket {
  /** Filesystem path of the bound socket: the value for NOTIFY_SOCKET. */
  readonly path: string;
  /** `{NOTIFY_SOCKET: path}`, to spread into a child's environment. */
  readonly env: { NOTIFY_SOCKET: string };
  /** Every datagram received so far, in order; one datagram may hold several "K=V" lines. */
  readonly messages: string[];
  /** True when some datagram contains `assignment` (e.g. "READY=1") as one of its lines. */
  has(assignment: string): boolean;
  /** Polls until has(assignment); throws naming it after `timeoutMs`. */
  waitFor(assignment: string, timeoutMs?: number): Promise<void>;
  close(): void;
}

/** Binds in `dir`, or in a fresh temp dir that close() removes. */
export function notifySocket(dir?: string): NotifySocket {
  const base = dir ?? tempDir('notify');
  const ownDir = dir === undefined ? base : undefined;
  const path = join(base, 'notify.sock');
  const messages: string[] = [];
  const sock = loadUnixDgram().createSocket('unix_dgram', (msg) => messages.push(msg.toString('utf8')));
  let bindError: Error | undefined;
  sock.on('error', (err) => {
    bindError = err;
  });
  sock.bind(path); // synchronous in unix-dgram: an error is emitted before bind() returns
  if (bindError) {
    sock.close();
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    throw new Error(`cannot bind notify socket at ${path}: ${bindError.message}`, { cause: bindError });
  }
  const has = (assignment: string): boolean => messages.some((m) => m.split('\n').includes(assignment));
  let closed = false;
  return {
    path,
    env: { NOTIFY_SOCKET: path },
    messages,
    has,
    waitFor: async (assignment, timeoutMs = 5000) => {
      try {
        await waitFor(() => has(assignment), { what: `${assignment} on ${path}`, timeoutMs });
      } catch (err) {
        throw new Error(`${(err as Error).message}; received ${JSON.stringify(messages)}`, { cause: err });
      }
    },
    close: () => {
      if (closed) return;
      closed = true;
      sock.close();
      rmSync(ownDir ?? path, { recursive: true, force: true });
    },
  };
}
