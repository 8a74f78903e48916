/**
 * pino JSON to stdout, one child logger per component ({component: "ota"}), errors under `err`,
 * secrets redacted by path. Pretty output is pino-pretty's job: `... | npx pino-pretty`.
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import { LogRing, type LogRingOptions } from './log-ring.js';

export type { Logger };

/** Keys that may hold secrets anywhere in the first three levels of a log object. */
const SECRET_KEYS = ['password', 'passphrase', 'key', 'privateKey', 'token', 'secret', 'authorization'];
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]);

export interface LoggerOptions {
  level?: string;
  name?: string;
  /** Defaults to a synchronous stdout destination, so nothing is lost on a fatal exit. */
  destination?: DestinationStream;
  /** Also keep info and above in a bounded on-disk ring (lib/log-ring.ts) for `edge-agent diag`. */
  ring?: LogRingOptions;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const out = opts.destination ?? pino.destination({ dest: 1, sync: true });
  // The first stream takes every level the logger lets through; the ring only info and above.
  const dest = opts.ring ? pino.multistream([{ level: 'trace', stream: out }, { level: 'info', stream: new LogRing(opts.ring) }]) : out;
  return pino(
    {
      name: opts.name ?? 'edge-agent',
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
      timestamp: pino.stdTimeFunctions.isoTime,
      base: { pid: process.pid },
    },
    dest,
  );
}

/** A logger that writes nowhere: for CLI commands and unit tests that need one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A URL with its password (user info) replaced, for logs, status output and the store. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)([^@/]*)@/i, (_m, scheme: string) => `${scheme}[redacted]@`);
}
