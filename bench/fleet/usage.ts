/**
 * CPU and memory of the fleet bench's processes by kind (broker, simulated fleet, each real agent,
 * each boot guard, the driver): CPU from /proc/PID/stat (utime + stime, proc(5)) over a window as
 * % of one core, and the largest VmRSS sampled every second in it. A process that is gone counts
 * what it used until its last sample.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

function ticks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  } catch {
    return undefined;
  }
}

function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface KindUsage {
  /** % of one core over the window. */
  cpuPct: number;
  /** Largest sampled VmRSS, MiB. */
  rssMiB: number;
}

export type Usage = Record<string, KindUsage>;

/** Starts a window over `pids` (name -> pid); the result of stop() is per name. */
export function usageWindow(pids: Record<string, number>): { stop(): Usage } {
  const t0 = performance.now();
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  const peak = new Map<string, number>();
  const sample = (): void => {
    for (const [name, pid] of Object.entries(pids)) {
      const t = ticks(pid);
      if (t !== undefined) {
        if (!first.has(name)) first.set(name, t);
        last.set(name, t);
      }
      const r = rssMiB(pid);
      if (r !== undefined) peak.set(name, Math.max(peak.get(name) ?? 0, r));
    }
  };
  sample();
  const timer = setInterval(sample, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      const ms = performance.now() - t0;
      const out: Usage = {};
      for (const name of Object.keys(pids)) {
        const used = ((last.get(name) ?? 0) - (first.get(name) ?? 0)) * TICK_MS;
        out[name] = { cpuPct: Math.round((1000 * used) / ms) / 10, rssMiB: Math.round(peak.get(name) ?? NaN) };
      }
      return out;
    },
  };
}

/** One line: kinds in order, agents summarised as the median and the largest of each. */
export function formatUsage(u: Usage): string {
  const agents = Object.entries(u).filter(([k]) => /^agent\d+$/.test(k)).map(([, v]) => v);
  const guards = Object.entries(u).filter(([k]) => /^guard\d+$/.test(k)).map(([, v]) => v);
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const parts = Object.entries(u)
    .filter(([k]) => !/^(agent|guard)\d+$/.test(k))
    .map(([k, v]) => `${k} ${v.cpuPct}% ${v.rssMiB} MiB`);
  if (agents.length) parts.push(`each agent (median/max of ${agents.length}) ${med(agents.map((a) => a.cpuPct))}/${Math.max(...agents.map((a) => a.cpuPct))}% ${med(agents.map((a) => a.rssMiB))}/${Math.max(...agents.map((a) => a.rssMiB))} MiB`);
  if (guards.length) parts.push(`each guard ${med(guards.map((a) => a.cpuPct))}% ${med(guards.map((a) => a.rssMiB))} MiB`);
  return parts.join(', ');
}

interface ProcRow {
  ppid: number;
  /** utime + stime + cutime + cstime (fields 14-17): the process and its reaped children. */
  all: number;
  /** cutime + cstime: its reaped children only. */
  reaped: number;
}

function procTable(): Map<number, ProcRow> {
  const out = new Map<number, ProcRow>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const reaped = Number(f[13]) + Number(f[14]);
      out.set(Number(n), { ppid: Number(f[1]), all: Number(f[11]) + Number(f[12]) + reaped, reaped });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export interface TreeSample {
  at: number;
  /** CPU ticks of everything a guard ever ran (its live descendants and the ones it reaped), not the guard's own. */
  ticks: number;
  /** The largest VmRSS among its live descendants now, MiB. */
  rssMiB: number;
}

/**
 * Samples, every second, what each boot guard (name -> pid) runs under it: the agent processes
 * come and go across an update (old agent, new agent in its trial), so they are followed through
 * the guard: CPU of its descendants, live (utime + stime + their reaped children) and reaped
 * (the guard's cutime + cstime, proc(5)), and the largest RSS among them. `usage(name, from, to)`
 * is % of one core and the largest RSS between two Date.now() moments.
 */
export function treeSampler(guards: Record<string, number>): { stop(): void; usage(name: string, from: number, to: number): KindUsage | undefined; samples: Map<string, TreeSample[]> } {
  const samples = new Map<string, TreeSample[]>(Object.keys(guards).map((k) => [k, []]));
  const sample = (): void => {
    const table = procTable();
    const kids = new Map<number, number[]>();
    for (const [pid, r] of table) kids.set(r.ppid, [...(kids.get(r.ppid) ?? []), pid]);
    const at = Date.now();
    for (const [name, gpid] of Object.entries(guards)) {
      const g = table.get(gpid);
      if (!g) continue;
      let ticks = g.reaped;
      let rss = 0;
      const stack = [...(kids.get(gpid) ?? [])];
      while (stack.length) {
        const pid = stack.pop()!;
        ticks += table.get(pid)?.all ?? 0;
        rss = Math.max(rss, rssMiB(pid) ?? 0);
        stack.push(...(kids.get(pid) ?? []));
      }
      samples.get(name)!.push({ at, ticks, rssMiB: rss });
    }
  };
  sample();
  const timer = setInterval(sample, 1000);
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      sample();
    },
    usage: (name, from, to) => {
      const xs = samples.get(name) ?? [];
      const a = [...xs].reverse().find((s) => s.at <= from) ?? xs[0];
      const b = xs.find((s) => s.at >= to) ?? xs.at(-1);
      if (!a || !b || b.at <= a.at) return undefined;
      const within = xs.filter((s) => s.at >= a.at && s.at <= b.at);
      return { cpuPct: Math.round((1000 * (b.ticks - a.ticks) * TICK_MS) / (b.at - a.at)) / 10, rssMiB: Math.round(Math.max(...within.map((s) => s.rssMiB))) };
    },
  };
}
