/**
 * One health sample: system metrics read straight from /proc and /sys (see procfs.ts for why not
 * through systeminformation's spawning calls), file systems through statfs(2) (blocks and inodes,
 * on the thread pool, so a slow mount cannot stall the event loop), and the agent's own numbers
 * through injected functions.
 *
 * Metrics are a flat map of dotted names to numbers (booleans as 0/1), so history, alerts and the
 * `~/health` snapshot share one shape. A metric the host cannot report is absent, never 0.
 *
 * Static facts (which temperature sensors exist, which interfaces are physical) are looked up
 * once and cached; everything else is read on each sample. Nothing here spawns a process.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { loadavg, uptime } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import type { Clock } from '../lib/clock.js';
import { cpuPercent, parseMeminfo, parseMilliCelsius, parseNetDev, parsePidStatTicks, parseProcStatCpu, parseVmRss, usedPercent, type CpuTimes } from './procfs.js';

export type Metrics = Record<string, number>;

export interface Sample {
  /** ms since the epoch */
  ts: number;
  metrics: Metrics;
  /** Facts for the snapshot that make no sense as history (host uptime). */
  info: Record<string, number>;
}

/** What the PLC bridge's control socket says (docs/plc-bridge.md: `ping` and `status`). */
export interface BridgeInfo {
  pid?: number | undefined;
  storeDepth?: number | undefined;
  mqttConnected?: boolean | undefined;
  devices: Record<string, { link: string; lastGoodAgeMs?: number | undefined }>;
}

export interface SamplerInputs {
  outboxDepth?: () => number;
  broker?: () => { connected: boolean; rttMs?: number | undefined };
  /** Absent: no bridge configured. Rejects: configured but not answering (`bridge.up` 0). */
  bridge?: () => Promise<BridgeInfo>;
}

export interface SamplerOptions {
  /** Named file systems to watch, e.g. {data: dataDir, slot: ota.root}; a missing path counts as its nearest existing parent. */
  filesystems: Record<string, string>;
  clock: Clock;
  inputs: SamplerInputs;
  /** For tests: where proc(5), sysfs and /run live. */
  procRoot?: string;
  sysRoot?: string;
  runRoot?: string;
  /** USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux architecture userspace sees. */
  clockTicks?: number;
}

const MB = 1024 * 1024;
/** The event-loop histogram's timer period, ms. */
const LAG_RESOLUTION_MS = 50;
const r1 = (x: number): number => Math.round(x * 10) / 10;
/** Interface names that are virtual even when sysfs does not say so (containers, VPNs). */
const VIRTUAL_IFACE = /^(lo|veth|docker|br-|virbr|vnet|tap|tun|wg|ifb|dummy)/;

export class Sampler {
  private readonly proc: string;
  private readonly sys: string;
  private readonly run: string;
  private readonly ticks: number;
  private prevCpu: CpuTimes | undefined;
  private prevAgent: { cpu: NodeJS.CpuUsage; at: number } | undefined;
  private prevBridge: { pid: number; ticks: number; at: number } | undefined;
  private prevNet = new Map<string, number>();
  private tempFiles: string[] | undefined;
  private readonly physical = new Map<string, boolean>();
  private lag: IntervalHistogram | undefined;

  constructor(private readonly opts: SamplerOptions) {
    this.proc = opts.procRoot ?? '/proc';
    this.sys = opts.sysRoot ?? '/sys';
    this.run = opts.runRoot ?? '/run';
    this.ticks = opts.clockTicks ?? 100;
  }

  /** Starts the event-loop delay histogram (a libuv timer, unref'd); stop() ends it. */
  start(): void {
    // 50 ms resolution: lag worth an alert is hundreds of ms, and a coarser timer wakes us less.
    this.lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.lag.enable();
  }

  stop(): void {
    this.lag?.disable();
    this.lag = undefined;
  }

  async sample(): Promise<Sample> {
    const t0 = performance.now();
    const ts = this.opts.clock.now();
    const m: Metrics = {};
    this.cpu(m);
    this.memory(m);
    this.temperature(m);
    this.network(m);
    this.clockSync(m);
    this.agent(m, ts);
    const [disks, bridge] = await Promise.all([this.disks(), this.bridge(ts)]);
    Object.assign(m, disks, bridge);
    m['health.sampleMs'] = r1(performance.now() - t0);
    return { ts, metrics: m, info: { uptimeSec: Math.round(uptime()) } };
  }

  private read(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  }

  private cpu(m: Metrics): void {
    m['cpu.load1'] = r1(loadavg()[0] ?? 0);
    const text = this.read(join(this.proc, 'stat'));
    const cur = text === undefined ? undefined : parseProcStatCpu(text);
    if (!cur) return;
    const pct = this.prevCpu ? cpuPercent(this.prevCpu, cur) : undefined;
    this.prevCpu = cur;
    if (pct !== undefined) m['cpu.pct'] = r1(pct);
  }

  private memory(m: Metrics): void {
    const text = this.read(join(this.proc, 'meminfo'));
    const mi = text === undefined ? undefined : parseMeminfo(text);
    if (!mi) return;
    m['mem.usedPct'] = r1(((mi.totalBytes - mi.availableBytes) / mi.totalBytes) * 100);
    m['mem.availableMB'] = r1(mi.availableBytes / MB);
    if (mi.swapTotalBytes > 0) m['swap.usedPct'] = r1(((mi.swapTotalBytes - mi.swapFreeBytes) / mi.swapTotalBytes) * 100);
  }

  private temperature(m: Metrics): void {
    this.tempFiles ??= this.findTempFiles();
    let max: number | undefined;
    for (const f of this.tempFiles) {
      const text = this.read(f);
      const c = text === undefined ? undefined : parseMilliCelsius(text);
      if (c !== undefined && (max === undefined || c > max)) max = c;
    }
    if (max !== undefined) m['temp.maxC'] = r1(max);
  }

  /** Thermal zones and hwmon temperature inputs; sensors do not come and go at run time. */
  private findTempFiles(): string[] {
    const files: string[] = [];
    const list = (dir: string): string[] => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    };
    const thermal = join(this.sys, 'class', 'thermal');
    for (const z of list(thermal).filter((n) => n.startsWith('thermal_zone'))) files.push(join(thermal, z, 'temp'));
    const hwmon = join(this.sys, 'class', 'hwmon');
    for (const h of list(hwmon)) for (const f of list(join(hwmon, h)).filter((n) => /^temp\d+_input$/.test(n))) files.push(join(hwmon, h, f));
    return files;
  }

  private isPhysical(name: string): boolean {
    let p = this.physical.get(name);
    if (p === undefined) {
      try {
        p = !VIRTUAL_IFACE.test(name) && !readlinkSync(join(this.sys, 'class', 'net', name)).includes('/virtual/');
      } catch {
        p = false;
      }
      this.physical.set(name, p);
    }
    return p;
  }

  private network(m: Metrics): void {
    const text = this.read(join(this.proc, 'net', 'dev'));
    if (text === undefined) return;
    for (const [name, c] of parseNetDev(text)) {
      if (!this.isPhysical(name)) continue;
      const state = this.read(join(this.sys, 'class', 'net', name, 'operstate'))?.trim();
      // "unknown" is what drivers without carrier reporting say: no link metric rather than a wrong one.
      if (state !== undefined && state !== 'unknown') m[`net.${name}.up`] = state === 'up' ? 1 : 0;
      const prev = this.prevNet.get(name);
      this.prevNet.set(name, c.errors);
      if (prev !== undefined) m[`net.${name}.errors`] = Math.max(0, c.errors - prev);
    }
  }

  /** systemd-timesyncd touches /run/systemd/timesync/synchronized once the clock is synchronised. */
  private clockSync(m: Metrics): void {
    const dir = join(this.run, 'systemd', 'timesync');
    if (existsSync(dir)) m['clock.synced'] = existsSync(join(dir, 'synchronized')) ? 1 : 0;
  }

  private agent(m: Metrics, now: number): void {
    m['agent.rssMB'] = r1(process.memoryUsage.rss() / MB);
    const cpu = process.cpuUsage();
    if (this.prevAgent && now > this.prevAgent.at) {
      const usedUs = cpu.user + cpu.system - this.prevAgent.cpu.user - this.prevAgent.cpu.system;
      m['agent.cpuPct'] = r1((usedUs / 1000 / (now - this.prevAgent.at)) * 100);
    }
    this.prevAgent = { cpu, at: now };
    if (this.lag) {
      // The histogram records whole timer periods; the lag is what exceeds the period.
      m['agent.loopLagMs'] = Math.max(0, Math.round(this.lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS));
      this.lag.reset();
    }
    const depth = this.opts.inputs.outboxDepth?.();
    if (depth !== undefined) m['outbox.depth'] = depth;
    const b = this.opts.inputs.broker?.();
    if (b) {
      m['broker.connected'] = b.connected ? 1 : 0;
      if (b.connected && b.rttMs !== undefined) m['broker.rttMs'] = Math.round(b.rttMs);
    }
  }

  private async disks(): Promise<Metrics> {
    const m: Metrics = {};
    await Promise.all(
      Object.entries(this.opts.filesystems).map(async ([name, path]) => {
        const s = await statfsNearest(path);
        if (!s) return;
        const pct = usedPercent(s.blocks, s.bfree, s.bavail);
        if (pct !== undefined) m[`disk.${name}.usedPct`] = r1(pct);
        m[`disk.${name}.freeMB`] = r1((s.bavail * s.bsize) / MB);
        // Some file systems (btrfs) have no inode table and report 0 files.
        if (s.files > 0) m[`disk.${name}.inodesUsedPct`] = r1(((s.files - s.ffree) / s.files) * 100);
      }),
    );
    return m;
  }

  private async bridge(now: number): Promise<Metrics> {
    const get = this.opts.inputs.bridge;
    if (!get) return {};
    let info: BridgeInfo;
    try {
      info = await get();
    } catch {
      this.prevBridge = undefined;
      return { 'bridge.up': 0 };
    }
    const m: Metrics = { 'bridge.up': 1 };
    if (info.storeDepth !== undefined) m['bridge.storeDepth'] = info.storeDepth;
    if (info.mqttConnected !== undefined) m['bridge.mqttConnected'] = info.mqttConnected ? 1 : 0;
    for (const [dev, d] of Object.entries(info.devices)) {
      m[`plc.${dev}.up`] = d.link === 'up' ? 1 : 0;
      if (d.lastGoodAgeMs !== undefined) m[`plc.${dev}.lastGoodAgeMs`] = Math.round(d.lastGoodAgeMs);
    }
    if (info.pid !== undefined) this.bridgeProcess(m, info.pid, now);
    return m;
  }

  private bridgeProcess(m: Metrics, pid: number, now: number): void {
    const rss = this.read(join(this.proc, String(pid), 'status'));
    const bytes = rss === undefined ? undefined : parseVmRss(rss);
    if (bytes !== undefined) m['bridge.rssMB'] = r1(bytes / MB);
    const stat = this.read(join(this.proc, String(pid), 'stat'));
    const ticks = stat === undefined ? undefined : parsePidStatTicks(stat);
    if (ticks === undefined) return;
    const prev = this.prevBridge;
    if (prev && prev.pid === pid && now > prev.at) m['bridge.cpuPct'] = r1((((ticks - prev.ticks) / this.ticks) * 1000 * 100) / (now - prev.at));
    this.prevBridge = { pid, ticks, at: now };
  }
}

/** statfs of the path, or of its nearest existing parent (the slot root may not exist yet). */
async function statfsNearest(path: string): Promise<{ blocks: number; bfree: number; bavail: number; bsize: number; files: number; ffree: number } | undefined> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return await statfs(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) return undefined;
    }
  }
}
