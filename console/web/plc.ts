/**
 * The PLC page: every tag live with its value, quality and age. Values arrive as `plc` events
 * and update their own cells in place (no redraw of 2,000 rows per message); a tag's quality
 * shows in its row's class, so stale and bad look it. Tag names and values are field data: text only.
 */
import { ago, h, obj, text } from './dom.js';
import type { AppState, Ctx } from './pages.js';

export interface TagInfo {
  device: string;
  group: string;
  tag: string;
  writable: boolean;
  type: string;
}

export interface TagValue {
  device: string;
  group: string;
  tag: string;
  v: unknown;
  q: string;
  ts: string;
  reason?: string;
}

export interface PlcSnapshot {
  bridge: string;
  devices: Record<string, unknown>;
  tags: TagInfo[];
  values: TagValue[];
}

interface Row {
  tr: HTMLElement;
  value: HTMLElement;
  q: HTMLElement;
  age: HTMLElement;
  ts: string;
}

const values = new Map<string, TagValue>();
const rows = new Map<string, Row>();
let known = new Set<string>();

const key = (device: string, tag: string): string => `${device}\u0000${tag}`;

function paint(r: Row, v: TagValue): void {
  r.value.textContent = v.q === 'bad' ? '—' : text(v.v);
  r.q.textContent = v.reason ? `${v.q} (${v.reason})` : v.q;
  r.q.className = `q-${v.q === 'good' || v.q === 'stale' ? v.q : 'bad'}`;
  r.tr.className = v.q === 'good' ? '' : v.q === 'stale' ? 'stale' : 'bad';
  r.tr.dataset.q = v.q;
  r.ts = v.ts;
  r.age.textContent = ago(v.ts);
}

/** Merges a `plc` event or a snapshot's values; true when the page must be redrawn (new tag, bridge state). */
export function plcApply(state: AppState, d: Record<string, unknown>): boolean {
  let redraw = false;
  if (!state.plc) state.plc = { bridge: 'unknown', devices: {}, tags: [], values: [] };
  if (typeof d.bridge === 'string') {
    state.plc.bridge = d.bridge;
    state.plc.devices = obj(d.devices);
    redraw = true;
  }
  for (const v of Array.isArray(d.values) ? (d.values as TagValue[]) : []) {
    const k = key(v.device, v.tag);
    values.set(k, v);
    const r = rows.get(k);
    if (r) paint(r, v);
    else if (!known.has(k)) redraw = true;
  }
  return redraw;
}

export function plcOpen(root: HTMLElement, ctx: Ctx): void {
  rows.clear();
  known = new Set();
  for (const v of ctx.state.plc?.values ?? []) if (!values.has(key(v.device, v.tag))) values.set(key(v.device, v.tag), v);
  root.append(h('h1', {}, 'PLC'), h('div', { class: 'plc-head' }), h('div', { class: 'plc-tags' }));
  const timer = setInterval(() => {
    if (!root.isConnected || root.dataset.page !== 'plc') return clearInterval(timer);
    for (const r of rows.values()) r.age.textContent = ago(r.ts);
  }, 1000);
}

export function plcRender(root: HTMLElement, ctx: Ctx): void {
  const plc = ctx.state.plc;
  const head = root.querySelector<HTMLElement>('.plc-head');
  const body = root.querySelector<HTMLElement>('.plc-tags');
  if (!head || !body) return;
  if (!plc) {
    head.replaceChildren(h('p', { class: 'muted' }, 'No PLC bridge is configured (plcBridge.config).'));
    return;
  }
  const devices = Object.entries(obj(plc.devices)).map(([n, d]) => h('span', { class: `card q-${obj(d).link === 'up' ? 'good' : 'bad'}` }, `${n}: link ${text(obj(d).link)}`));
  head.replaceChildren(h('p', {}, 'Bridge: ', h('strong', { class: plc.bridge === 'online' ? 'q-good' : 'q-bad' }, plc.bridge), ' ', ...devices));
  // The configured tags first, then anything else the bridge's topics carried.
  const list: { device: string; group: string; tag: string; writable: boolean }[] = plc.tags.map((t) => ({ ...t }));
  const seen = new Set(list.map((t) => key(t.device, t.tag)));
  for (const v of values.values()) if (!seen.has(key(v.device, v.tag))) list.push({ device: v.device, group: v.group, tag: v.tag, writable: false });
  const next = new Set(list.map((t) => key(t.device, t.tag)));
  if (next.size === known.size && [...next].every((k) => known.has(k))) return;
  known = next;
  rows.clear();
  const trs = list.map((t) => {
    const value = h('td', { class: 'val mono' }, '—');
    const q = h('td', {}, 'no value yet');
    const age = h('td', {}, '—');
    const tr = h('tr', { 'data-tag': t.tag }, h('td', {}, t.device), h('td', {}, t.group), h('td', { class: 'mono' }, t.tag), value, q, age, h('td', {}, t.writable ? 'writable' : ''));
    const r: Row = { tr, value, q, age, ts: '' };
    rows.set(key(t.device, t.tag), r);
    const v = values.get(key(t.device, t.tag));
    if (v) paint(r, v);
    return tr;
  });
  body.replaceChildren(
    h(
      'div',
      { class: 'table-wrap' },
      h('table', {}, h('thead', {}, h('tr', {}, ...['device', 'group', 'tag', 'value', 'quality', 'age', 'access'].map((x) => h('th', {}, x)))), h('tbody', {}, ...trs)),
    ),
  );
}
