/**
 * The PLC page: every tag live with its value, quality and age. Values arrive as `plc` events
 * and update their own cells in place (no redraw of 2,000 rows per message); a tag's quality
 * shows in its row's class, so stale and bad look it. Tag names and values are field data: text only.
 *
 * Writes: an operator session gets a Write control on writable tags only; the value is confirmed
 * in the page before it goes to the agent (`POST /api/plc/write`), which hands it to the PLC
 * bridge. The page checks nothing itself (unknown tag, read-only, type, range are the bridge's
 * answers): it shows the answer, with the value read back.
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

/** The typed value a person typed: bools and numbers as JSON, anything else as typed (the bridge judges). Pure. */
export function typedValue(type: string, raw: string): unknown {
  const t = raw.trim();
  if (type === 'bool') return t === 'true' ? true : t === 'false' ? false : raw;
  if (type !== 'string' && t !== '' && Number.isFinite(Number(t))) return Number(t);
  return raw;
}

/** One answer of `POST /api/plc/write` as a line of text. Pure. */
export function writeOutcome(tag: string, a: Record<string, unknown>): { ok: boolean; line: string } {
  const status = text(a.status);
  const reason = obj(a.reason);
  const readBack = obj(obj(a.result).readBack);
  const back = Object.hasOwn(readBack, tag) ? `; read back ${text(readBack[tag])}` : '';
  if (status === 'successful') return { ok: true, line: `written${back}` };
  return { ok: false, line: `${status}${reason.code ? ` (${text(reason.code)})` : ''}${reason.message ? `: ${text(reason.message)}` : ''}${back}` };
}

/** The Write control of a writable tag: value, then a confirmation, then the bridge's answer. */
function writeControl(ctx: Ctx, device: string, tag: string, type: string): HTMLElement {
  const box = h('div', { class: 'plc-write' });
  const result = h('span', { class: 'write-result', role: 'status' });
  const idle = (): void => {
    const b = h('button', { type: 'button', class: 'secondary' }, 'Write…');
    b.addEventListener('click', edit);
    box.replaceChildren(b, result);
  };
  const edit = (): void => {
    const input =
      type === 'bool'
        ? (h('select', { 'aria-label': `new value for ${tag}` }, h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false')) as HTMLSelectElement)
        : (h('input', { 'aria-label': `new value for ${tag}`, size: '8', autocomplete: 'off' }) as HTMLInputElement);
    const next = h('button', { type: 'button' }, 'Write');
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    next.addEventListener('click', () => confirmStep(input.value));
    cancel.addEventListener('click', idle);
    box.replaceChildren(input, next, cancel, result);
    input.focus();
  };
  const confirmStep = (raw: string): void => {
    const value = typedValue(type, raw);
    const yes = h('button', { type: 'button' }, 'Confirm write') as HTMLButtonElement;
    const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    no.addEventListener('click', idle);
    yes.addEventListener('click', () => {
      yes.disabled = true;
      result.textContent = 'writing…';
      result.className = 'write-result';
      ctx
        .post('/api/plc/write', { device, tags: { [tag]: value } })
        .then((a) => {
          const o = writeOutcome(tag, a);
          result.textContent = o.line;
          result.className = `write-result ${o.ok ? 'q-good' : 'q-bad'}`;
        })
        .catch((e: unknown) => {
          result.textContent = `refused: ${e instanceof Error ? e.message : String(e)}`;
          result.className = 'write-result q-bad';
        })
        .finally(idle);
    });
    box.replaceChildren(h('span', {}, `Write ${JSON.stringify(value)} to ${device}/${tag}?`), yes, no, result);
  };
  idle();
  return box;
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
  const list: { device: string; group: string; tag: string; writable: boolean; type: string }[] = plc.tags.map((t) => ({ ...t }));
  const seen = new Set(list.map((t) => key(t.device, t.tag)));
  for (const v of values.values()) if (!seen.has(key(v.device, v.tag))) list.push({ device: v.device, group: v.group, tag: v.tag, writable: false, type: '' });
  const operator = ctx.state.role === 'operator';
  const next = new Set(list.map((t) => key(t.device, t.tag)));
  if (next.size === known.size && [...next].every((k) => known.has(k))) return;
  known = next;
  rows.clear();
  const trs = list.map((t) => {
    const value = h('td', { class: 'val mono' }, '—');
    const q = h('td', {}, 'no value yet');
    const age = h('td', {}, '—');
    const access = h('td', {}, t.writable ? 'writable' : '');
    if (t.writable && operator) access.append(writeControl(ctx, t.device, t.tag, t.type));
    const tr = h('tr', { 'data-tag': t.tag }, h('td', {}, t.device), h('td', {}, t.group), h('td', { class: 'mono' }, t.tag), value, q, age, access);
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
