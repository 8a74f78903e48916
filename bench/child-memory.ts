/**
 * Helpers for the outbox-child processes: the benchmark's event payload and memory readings
 * taken after full garbage collections (the child runs with --expose-gc), so RSS growth shows
 * what is retained, not garbage not yet collected.
 */
import { readFileSync } from 'node:fs';
import { setImmediate as turn } from 'node:timers/promises';

/** A ~250-byte JSON event, different for every i (so nothing is shared or interned). */
export function payload(i: number): string {
  const s = JSON.stringify({
    type: 'scan',
    severity: 'info',
    code: 'barcode-read',
    source: 'plc-bridge',
    station: `dock-${i % 40}`,
    seq: i,
    ts: new Date(1_700_000_000_000 + i * 37).toISOString(),
    barcode: String(4_000_000_000_000 + ((i * 7919) % 1_000_000_007)),
    note: '',
  });
  return s.replace('"note":""', `"note":"${'x'.repeat(Math.max(0, 250 - s.length))}"`);
}

function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
}

export interface Mem {
  rss: number;
  /** Anonymous resident memory (proc(5)): heap, malloc arenas, SQLite's page cache; no mapped files. */
  rssAnon: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

/** Memory after two full collections, once the event loop has settled. */
export async function settledMem(): Promise<Mem> {
  await turn();
  fullGc();
  await turn();
  fullGc();
  const anon = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  const m = process.memoryUsage();
  return { rss: m.rss, rssAnon: Number(anon ?? 0) * 1024, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external };
}

export function growth(before: Mem, after: Mem): Record<string, number> {
  return {
    rssBeforeBytes: before.rss,
    rssAfterBytes: after.rss,
    rssGrowthBytes: after.rss - before.rss,
    rssAnonGrowthBytes: after.rssAnon - before.rssAnon,
    heapTotalGrowthBytes: after.heapTotal - before.heapTotal,
    heapUsedGrowthBytes: after.heapUsed - before.heapUsed,
    externalGrowthBytes: after.external - before.external,
  };
}
