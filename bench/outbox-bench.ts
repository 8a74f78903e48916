/**
 * Measurements 3 and 4, parent side: one run starts four isolated children (outbox-child.js,
 * each with --expose-gc and its own temp dir) against the same broker: the outbox itself
 * (enqueue while the broker is "down", then drain), and its three references (an in-memory
 * array, plain better-sqlite3 inserts, plain mqtt.js publishing). The drain and the raw publish
 * swap order from run to run so neither always gets the warmer broker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, runJsonChild } from './proc.js';

export interface OutboxResult {
  rssGrowthBytes: number;
  rssAnonGrowthBytes: number;
  heapTotalGrowthBytes: number;
  heapUsedGrowthBytes: number;
  enqueueMs: number;
  enqueueRate: number;
  drainMs: number;
  drainRate: number;
  acked: number;
}

export interface ArrayResult {
  rssGrowthBytes: number;
  heapUsedGrowthBytes: number;
}

export interface SqliteResult {
  insertMs: number;
  insertRate: number;
}

export interface RawResult {
  publishMs: number;
  publishRate: number;
}

export interface OutboxRun {
  outbox: OutboxResult;
  array: ArrayResult;
  sqlite: SqliteResult;
  raw: RawResult;
}

export interface OutboxRunOptions {
  url: string;
  protocolVersion: 4 | 5;
  messages: number;
  inflight: number;
  /** Distinguishes this run's MQTT client ids. */
  tag: string;
  /** Directory for V8 CPU profiles of the outbox child (node --cpu-prof), if wanted. */
  cpuProfDir: string | undefined;
  /** Publish raw before draining the outbox (alternated by the caller). */
  rawFirst: boolean;
}

async function child<T>(mode: string, o: OutboxRunOptions, extraFlags: string[] = []): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${mode}-`));
  try {
    const args = [mode, '--n', String(o.messages), '--url', o.url, '--dir', dir, '--inflight', String(o.inflight), '--client-id', `bench-${mode}-${o.tag}`, '--protocol', String(o.protocolVersion)];
    return await runJsonChild<T>(join(DIST, 'bench', 'outbox-child.js'), args, ['--expose-gc', ...extraFlags]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function outboxRun(o: OutboxRunOptions): Promise<OutboxRun> {
  const prof = o.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] : [];
  const array = await child<ArrayResult>('array', o);
  const sqlite = await child<SqliteResult>('sqlite', o);
  let raw: RawResult | undefined;
  if (o.rawFirst) raw = await child<RawResult>('raw', o);
  const outbox = await child<OutboxResult>('outbox', o, prof);
  raw ??= await child<RawResult>('raw', o);
  if (outbox.acked !== o.messages) throw new Error(`outbox acknowledged ${outbox.acked} of ${o.messages}`);
  return { outbox, array, sqlite, raw };
}
