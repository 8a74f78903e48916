/**
 * The `store-optimize` action's work on the state store (docs/maintenance.md, "Built-in
 * actions"): PRAGMA optimize, then the vacuum the step asks for. `auto` (the weekly's) never holds
 * the event loop for long on a store that already has incremental auto-vacuum: free pages go back
 * in small throttled steps. An older store (auto_vacuum NONE) is rebuilt once with a full VACUUM,
 * converting it to incremental auto-vacuum, but only when its free list is worth it (at least
 * `minFreePct` of its pages); otherwise the step says why it skipped.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parsePidStatTicks } from '../health/procfs.js';
import type { Db } from '../lib/sqlite.js';

/** CPU time (ms) of a process and all its descendants (the PLC bridge, commands), from /proc; undefined off Linux. */
export function treeCpuMs(pid: number): number | undefined {
  let ticks = 0;
  const seen = new Set<number>();
  const visit = (p: number): boolean => {
    if (seen.has(p)) return true;
    seen.add(p);
    try {
      const t = parsePidStatTicks(readFileSync(`/proc/${p}/stat`, 'utf8'));
      if (t !== undefined) ticks += t;
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        for (const k of kids ? kids.split(/\s+/) : []) visit(Number(k));
      }
      return true;
    } catch {
      return p !== pid;
    }
  };
  // Clock ticks are 1/100 s on Linux (USER_HZ).
  return visit(pid) ? ticks * 10 : undefined;
}

/**
 * Incremental vacuum in small steps that yield to the event loop. Throttled so that the agent
 * with its children (the PLC bridge's polling included) stays at most `maxCpuPct` of a core
 * averaged since the start, and the vacuum's own work at most that share; it never stops
 * altogether (at least a 5 % duty cycle), so a busy gateway still gets its space back, slowly.
 */
export async function incrementalVacuum(db: Db, signal: AbortSignal, maxCpuPct: number): Promise<{ freedPages: number; steps: number; cpuPct: number | undefined }> {
  const pages = (): number => Number(db.pragma('freelist_count', { simple: true }));
  const before = pages();
  const start = performance.now();
  const cpu0 = treeCpuMs(process.pid);
  let steps = 0;
  let cpuPct: number | undefined;
  while (pages() > 0 && !signal.aborted) {
    const t0 = performance.now();
    db.pragma('incremental_vacuum(256)');
    steps++;
    const busy = performance.now() - t0;
    // Work `busy` ms, then rest so that busy / (busy + rest) <= maxCpuPct ...
    let rest = (busy * (100 - maxCpuPct)) / Math.max(1, maxCpuPct);
    // ... and so that the whole tree's average since the start comes back under the budget.
    const cpu = treeCpuMs(process.pid);
    if (cpu !== undefined && cpu0 !== undefined) {
      const used = cpu - cpu0;
      const elapsed = performance.now() - start;
      cpuPct = (used / Math.max(1, elapsed)) * 100;
      rest = Math.max(rest, (used * 100) / maxCpuPct - elapsed);
    }
    rest = Math.min(Math.max(1, rest), Math.max(1, busy * 19));
    await new Promise((r) => setTimeout(r, rest));
  }
  return { freedPages: before - pages(), steps, cpuPct: cpuPct === undefined ? undefined : Math.round(cpuPct * 10) / 10 };
}

export interface OptimizeOptions {
  vacuum: 'none' | 'incremental' | 'full' | 'auto';
  maxCpuPct: number;
  /** `auto` on a store without incremental auto-vacuum: rebuild it only when at least this share of its pages is free. */
  minFreePct: number;
}

export interface OptimizeResult {
  message: string;
  details: Record<string, unknown>;
}

/** PRAGMA optimize and the vacuum `o.vacuum` asks for; what it did, for the step's report. */
export async function optimizeStore(db: Db, o: OptimizeOptions, signal: AbortSignal): Promise<OptimizeResult> {
  const t0 = performance.now();
  const ms = (): number => Math.round(performance.now() - t0);
  db.pragma('optimize');
  const mode = Number(db.pragma('auto_vacuum', { simple: true }));
  const freelist = Number(db.pragma('freelist_count', { simple: true }));
  const pageCount = Number(db.pragma('page_count', { simple: true }));
  const freePct = pageCount > 0 ? Math.round((freelist / pageCount) * 1000) / 10 : 0;
  const base = { vacuum: o.vacuum, autoVacuum: mode, freelist, pageCount, freePct };
  const full = (convert: boolean): OptimizeResult => {
    // auto_vacuum can change only before a VACUUM rebuilds the file: set it first, and this
    // store's later weeks are incremental (no rebuild, no long block).
    if (convert) db.pragma('auto_vacuum = INCREMENTAL');
    db.exec('VACUUM');
    const after = Number(db.pragma('auto_vacuum', { simple: true }));
    return { message: `PRAGMA optimize and a full VACUUM in ${ms()} ms${convert && after === 2 ? ' (the store now has incremental auto-vacuum: later runs give free pages back in small steps)' : ''}`, details: { ...base, ms: ms(), autoVacuumAfter: after } };
  };
  if (o.vacuum === 'full') return full(false);
  if (o.vacuum === 'incremental' || (o.vacuum === 'auto' && mode === 2)) {
    if (mode !== 2) return { message: 'PRAGMA optimize; this store was created before incremental vacuum: its free pages go back only with vacuum: full or auto (in a window)', details: base };
    const r = await incrementalVacuum(db, signal, o.maxCpuPct);
    return { message: `PRAGMA optimize; ${r.freedPages} free pages given back in ${r.steps} steps, ${ms()} ms`, details: { ...base, ...r, ms: ms() } };
  }
  if (o.vacuum === 'auto') {
    if (freePct >= o.minFreePct) return full(true);
    return { message: `PRAGMA optimize; no VACUUM: ${freelist} of ${pageCount} pages are free (${freePct} %, a rebuild pays from ${o.minFreePct} %); the store keeps auto_vacuum ${mode === 1 ? 'FULL' : 'NONE'} until then`, details: { ...base, ms: ms(), skipped: true } };
  }
  return { message: 'PRAGMA optimize', details: { ...base, ms: ms() } };
}
