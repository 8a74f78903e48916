/**
 * How the demo's WMS shows the PLC bridge's data (CONTRACT.md section 3): the group topics
 * `~/plc/{device}/{group}` arrive several times a second, so they are not printed one by one but
 * summed up once a second, one line per device: each group's latest seq and the last known value
 * of each tag (report by exception sends only what changed, so values are merged over messages),
 * a value's quality when it is not good, and how many of the messages were `historical`.
 */
import type { Received } from './wms-sim.js';

interface GroupView {
  seq: number;
  values: Map<string, { v: unknown; q: string }>;
}

interface DeviceView {
  groups: Map<string, GroupView>;
  messages: number;
  historical: number;
}

export interface PlcViewOptions {
  print: (line: string) => void;
  intervalMs?: number;
}

/** `plc/{device}/{group}` of a data message, or undefined (status, set, anything else). */
export function dataTopic(sub: string): { device: string; group: string } | undefined {
  const parts = sub.split('/');
  if (parts.length !== 3 || parts[0] !== 'plc' || parts[2] === 'set') return undefined;
  return { device: parts[1]!, group: parts[2]! };
}

export function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 10) / 10);
  return String(v);
}

export class PlcView {
  private readonly devices = new Map<string, DeviceView>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PlcViewOptions) {}

  start(): void {
    this.timer ??= setInterval(() => this.flush(), this.opts.intervalMs ?? 1000);
  }

  /** Prints what is pending, then stops the timer. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  /** A message on a group topic (see dataTopic). */
  add(m: Received): void {
    const t = dataTopic(m.sub);
    if (!t) return;
    let d = this.devices.get(t.device);
    if (!d) this.devices.set(t.device, (d = { groups: new Map(), messages: 0, historical: 0 }));
    let g = d.groups.get(t.group);
    if (!g) d.groups.set(t.group, (g = { seq: 0, values: new Map() }));
    d.messages++;
    if (m.payload.historical === true) d.historical++;
    if (typeof m.payload.seq === 'number') g.seq = m.payload.seq;
    const values = m.payload.values;
    if (values !== null && typeof values === 'object') {
      for (const [tag, raw] of Object.entries(values as Record<string, { v?: unknown; q?: unknown }>)) g.values.set(tag, { v: raw.v, q: typeof raw.q === 'string' ? raw.q : '?' });
    }
  }

  /** `WMS <- plc/sorter1   fast #57 speed=12.3 ramp=512 │ slow #12 counter=11 ...  (6 msgs)` per device with news. */
  private flush(): void {
    for (const [name, d] of this.devices) {
      if (d.messages === 0) continue;
      const groups = [...d.groups].map(([group, g]) => {
        const vals = [...g.values].map(([tag, { v, q }]) => `${tag}=${formatValue(v)}${q === 'good' ? '' : `(${q})`}`);
        return `${group} #${g.seq} ${vals.join(' ')}`;
      });
      const hist = d.historical > 0 ? `, ${d.historical} historical` : '';
      this.opts.print(`WMS <- ${`plc/${name}`.padEnd(12)} ${groups.join(' │ ')}  (${d.messages} msgs${hist})`);
      d.messages = 0;
      d.historical = 0;
    }
  }
}
