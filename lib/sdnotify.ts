/**
 * systemd notification protocol (sd_notify(3)): datagrams such as "READY=1" sent to the unix
 * datagram socket named by $NOTIFY_SOCKET. Node has no unix datagram sockets, hence the small
 * native `unix-dgram` addon. Without NOTIFY_SOCKET every call is a no-op.
 */
import { createRequire } from 'node:module';
import type { Logger } from './log.js';

interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  on(ev: 'error', fn: (err: Error) => void): void;
  close(): void;
}
interface UnixDgram {
  createSocket(type: 'unix_dgram', onMessage?: (msg: Buffer) => void): DgramSocket & { bind(path: string): void };
}

export function loadUnixDgram(): UnixDgram {
  const require = createRequire(import.meta.url);
  return require('unix-dgram') as UnixDgram;
}

export class SdNotify {
  private socket: DgramSocket | undefined;

  constructor(
    private readonly opts: { socketPath: string | undefined; logger: Logger },
  ) {}

  get enabled(): boolean {
    return !!this.opts.socketPath;
  }

  notify(state: string): void {
    const path = this.opts.socketPath;
    if (!path) return;
    try {
      if (!this.socket) {
        this.socket = loadUnixDgram().createSocket('unix_dgram');
        this.socket.on('error', (err) => this.opts.logger.warn({ err }, 'sd_notify socket error'));
      }
      const buf = Buffer.from(state, 'utf8');
      // A leading "@" names a socket in the abstract namespace (sd_notify(3)).
      const target = path.startsWith('@') ? '\0' + path.slice(1) : path;
      this.socket.send(buf, 0, buf.length, target, (err?: Error) => {
        if (err) this.opts.logger.warn({ err, state }, 'sd_notify send failed');
      });
    } catch (err) {
      this.opts.logger.warn({ err, state }, 'sd_notify unavailable');
    }
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}

/** Half of WATCHDOG_USEC in ms, as systemd recommends; undefined when the watchdog is off or not for us. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
