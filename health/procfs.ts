/**
 * Pure parsers for the Linux files the sampler reads (proc(5), sysfs). Kept apart from the I/O so
 * they can be tested with captured file contents.
 *
 * Why not systeminformation for these: on Linux its `currentLoad()` runs `execSync('cat /proc/stat
 * | grep cpu')` (a shell, synchronously, on every call), `cpuTemperature()` and `networkStats()`
 * spawn shells that `cat` sysfs files, and `fsSize()` spawns `df`. Reading the same files here
 * costs microseconds and never blocks the event loop on a child process.
 */

/** The first `cpu` line of /proc/stat, in clock ticks: busy and total (idle + iowait counted idle). */
export interface CpuTimes {
  busy: number;
  total: number;
}

export function parseProcStatCpu(text: string): CpuTimes | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  // user nice system idle iowait irq softirq steal guest guest_nice (proc(5)); guest time is
  // already counted in user, so it is left out of the sum.
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const idleAll = idle + iowait;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idleAll };
}

/** Percent of CPU time busy between two readings; undefined when no time passed. */
export function cpuPercent(prev: CpuTimes, cur: CpuTimes): number | undefined {
  const dt = cur.total - prev.total;
  if (dt <= 0) return undefined;
  return Math.min(100, Math.max(0, ((cur.busy - prev.busy) / dt) * 100));
}

export interface MemInfo {
  totalBytes: number;
  availableBytes: number;
  swapTotalBytes: number;
  swapFreeBytes: number;
}

/** /proc/meminfo (values in kB). MemAvailable exists since Linux 3.14; older kernels estimate it. */
export function parseMeminfo(text: string): MemInfo | undefined {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)/.exec(line);
    if (m?.[1] && m[2]) kb.set(m[1], Number(m[2]) * 1024);
  }
  const total = kb.get('MemTotal');
  if (total === undefined || total === 0) return undefined;
  const available = kb.get('MemAvailable') ?? (kb.get('MemFree') ?? 0) + (kb.get('Buffers') ?? 0) + (kb.get('Cached') ?? 0);
  return { totalBytes: total, availableBytes: available, swapTotalBytes: kb.get('SwapTotal') ?? 0, swapFreeBytes: kb.get('SwapFree') ?? 0 };
}

export interface IfaceCounters {
  /** rx + tx errors and drops, cumulative since boot. */
  errors: number;
}

/** /proc/net/dev: per interface, errors and drops in both directions. */
export function parseNetDev(text: string): Map<string, IfaceCounters> {
  const out = new Map<string, IfaceCounters>();
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    // Receive: bytes packets errs drop fifo frame compressed multicast; Transmit: bytes packets errs drop ...
    const errors = (f[2] ?? 0) + (f[3] ?? 0) + (f[10] ?? 0) + (f[11] ?? 0);
    if (name && Number.isFinite(errors)) out.set(name, { errors });
  }
  return out;
}

/** /proc/PID/stat: user + system CPU time in clock ticks. The command name may contain spaces and parentheses. */
export function parsePidStatTicks(text: string): number | undefined {
  const end = text.lastIndexOf(')');
  if (end < 0) return undefined;
  // After "pid (comm) " the fields start at field 3 (state); utime and stime are fields 14 and 15.
  const f = text.slice(end + 2).split(' ');
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
}

/** /proc/PID/status: VmRSS in bytes. */
export function parseVmRss(text: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(text);
  return m?.[1] ? Number(m[1]) * 1024 : undefined;
}

/** Used percent of a file system the way df(1) counts it: reserved blocks are neither used nor available. */
export function usedPercent(total: number, free: number, available: number): number | undefined {
  const used = total - free;
  const denom = used + available;
  if (denom <= 0) return undefined;
  return (used / denom) * 100;
}

/** A sysfs temperature (millidegrees Celsius) in degrees, or undefined for junk and absurd values. */
export function parseMilliCelsius(text: string): number | undefined {
  const v = Number(text.trim());
  if (!Number.isFinite(v)) return undefined;
  const c = v / 1000;
  // Disconnected sensors report things like -273 or 255000; neither is a real reading.
  return c > -60 && c < 200 ? c : undefined;
}
