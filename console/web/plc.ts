/**
 * The PLC page: every tag live with its value, quality and age. Values arrive as `plc` events
 * and are merged into one map; only the rows in (or near) the viewport exist in the DOM and are
 * painted, and only the cells that changed are written. A bridge with 2,000 tags changing every
 * second would otherwise have the browser lay out 14,000 cells a second, and its main thread,
 * busy for up to a second at a time, would hold every event (and every value) back that long.
 * The list scrolls with the window (its height is that of every row), and a filter narrows it.
 * A tag's quality shows in its row's class, so stale and bad look it. Tag names and values are
 * field data: text only.
 *
 * Writes: an operator session gets a Write control on writable tags only; the value is confirmed
 * in the page before it goes to the agent (`POST /api/plc/write`), which hands it to the PLC
 * bridge. The page checks nothing itself (unknown tag, read-only, type, range are the bridge's
 * answers): it shows the answer, with the value read back. A control lives in its row: a row
 * scrolled out of the drawn window is made anew, with its control idle, when it comes back.
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

/** A value as the bridge publishes it: `q` is good, stale or bad; `ts` its own read time. */
export interface Val {
  v: unknown;
  q: string;
  ts: string;
  reason?: string;
}

interface GroupValues {
  device: string;
  group: string;
  values: Record<string, Val>;
}

/** The snapshot's `plc`: the bridge's state, the configured tags and the latest value of each. */
export interface PlcSnapshot {
  bridge: string;
  devices: Record<string, unknown>;
  tags: TagInfo[];
  groups: GroupValues[];
}

interface Entry {
  key: string;
  device: string;
  group: string;
  tag: string;
  writable: boolean;
  type: string;
}

interface Row {
  tr: HTMLElement;
  value: HTMLElement;
  q: HTMLElement;
  age: HTMLElement;
  /** What the cells show now: a cell is written only when this changes. */
  shown: { v: string; q: string; ts: string; age: string };
  /** What the access cell was made for: a row is made anew when the tag list says otherwise (its values may come before it). */
  made: string;
}

/** A row's height (style.css `.plc-tags tr.tag`; measured once a row is drawn): the list's geometry is arithmetic. */
let rowH = 30;
/** Rows drawn beyond each edge of the viewport, so a scroll shows drawn rows before the next frame. */
const OVERSCAN = 15;

/** The latest value of every tag this page knows of, by key; the device and group it came in. */
const values = new Map<string, { device: string; group: string; tag: string; val: Val }>();
/** The rows in the DOM, by key (at most a viewport and twice OVERSCAN). */
const rows = new Map<string, Row>();
/** The tags listed, in order, after the filter; their keys. */
let list: Entry[] = [];
let listKeys = '';
/** Set when the list may have changed (a new tag, the filter, the page opened). */
let listDirty = true;
let known = new Set<string>();
let filter = '';
let range = { from: 0, to: 0 };
let frame = 0;
let view: { tbody: HTMLElement; top: HTMLElement; bottom: HTMLElement; count: HTMLElement } | undefined;
/** The open page's context: rows made while it is open get their Write control through it. */
let pageCtx: Ctx | undefined;

const key = (device: string, tag: string): string => `${device}\u0000${tag}`;

function paint(r: Row, v: Val | undefined): void {
  if (!v) return;
  const shownV = v.q === 'bad' ? '—' : text(v.v);
  const shownQ = v.reason ? `${v.q} (${v.reason})` : v.q;
  if (r.shown.v !== shownV) r.value.textContent = r.shown.v = shownV;
  if (r.shown.q !== shownQ) {
    r.q.textContent = r.shown.q = shownQ;
    r.q.className = `q-${v.q === 'good' || v.q === 'stale' ? v.q : 'bad'}`;
    r.tr.className = `tag${v.q === 'good' ? '' : v.q === 'stale' ? ' stale' : ' bad'}`;
    r.tr.dataset.q = v.q;
  }
  r.shown.ts = v.ts;
  const age = ago(v.ts);
  if (r.shown.age !== age) r.age.textContent = r.shown.age = age;
}

/** Asks the agent for every tag and its latest value again (set while the page is open). */
let reload: (() => void) | undefined;

/**
 * The stream's snapshot (on connect, after a restart or a gap): the bridge's state. Values that
 * changed meanwhile are not in it: an open PLC page fetches every value again.
 */
export function plcSnapshot(state: AppState, brief: { bridge?: unknown; devices?: unknown } | null): void {
  state.plc = brief ? { bridge: typeof brief.bridge === 'string' ? brief.bridge : 'unknown', devices: obj(brief.devices), tags: state.plc?.tags ?? [], groups: [] } : null;
  if (view?.tbody.isConnected) reload?.();
}

function fetchAll(ctx: Ctx): void {
  ctx
    .get('/api/data/plc')
    .then((d) => {
      const snap = d as PlcSnapshot | null;
      if (!snap) {
        ctx.state.plc = null;
        return ctx.rerender();
      }
      ctx.state.plc = { bridge: snap.bridge, devices: obj(snap.devices), tags: Array.isArray(snap.tags) ? snap.tags : [], groups: [] };
      for (const g of Array.isArray(snap.groups) ? snap.groups : []) merge(g, true);
      listDirty = true;
      ctx.rerender();
    })
    .catch(() => undefined);
}

function merge(d: GroupValues, drawn: boolean): boolean {
  let fresh = false;
  for (const [tag, raw] of Object.entries(obj(d.values))) {
    const v = obj(raw) as unknown as Val;
    if (typeof v.q !== 'string') continue;
    const k = key(d.device, tag);
    const known0 = values.get(k);
    // Fetched values and stream events cross: an older value never replaces a newer one.
    if (known0 && known0.val.ts > v.ts) continue;
    if (known0) known0.val = v;
    else values.set(k, { device: d.device, group: d.group, tag, val: v });
    const r = drawn ? rows.get(k) : undefined;
    if (r) paint(r, v);
    else if (!known.has(k)) fresh = true;
  }
  return fresh;
}

/** Merges a `plc` event: one group's values, or the bridge's state; true when the page must be redrawn (a new tag, the bridge's state). */
export function plcApply(state: AppState, d: Record<string, unknown>): boolean {
  if (!state.plc) state.plc = { bridge: 'unknown', devices: {}, tags: [], groups: [] };
  if (typeof d.bridge === 'string') {
    state.plc.bridge = d.bridge;
    state.plc.devices = obj(d.devices);
    return true;
  }
  if (typeof d.device !== 'string' || typeof d.group !== 'string') return false;
  const fresh = merge(d as unknown as GroupValues, view?.tbody.isConnected === true);
  if (fresh) listDirty = true;
  return fresh;
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

/** What a row's access cell depends on: whether the tag is writable, its type, and whether this session may write. */
function madeFor(t: Entry): string {
  return `${t.writable}/${t.type}/${pageCtx?.state.role ?? ''}`;
}

function makeRow(t: Entry): Row {
  const value = h('td', { class: 'val mono' }, '—');
  const q = h('td', {}, 'no value yet');
  const age = h('td', {}, '—');
  const access = h('td', { class: 'access' }, t.writable ? 'writable' : '');
  if (t.writable && pageCtx?.state.role === 'operator') access.append(writeControl(pageCtx, t.device, t.tag, t.type));
  const tr = h(
    'tr',
    { class: 'tag', 'data-tag': t.tag },
    h('td', { title: t.device }, t.device),
    h('td', { title: t.group }, t.group),
    h('td', { class: 'mono', title: t.tag }, t.tag),
    value,
    q,
    age,
    access,
  );
  const r: Row = { tr, value, q, age, shown: { v: '—', q: 'no value yet', ts: '', age: '—' }, made: madeFor(t) };
  paint(r, values.get(t.key)?.val);
  return r;
}

/** The rows from..to of the list (the viewport, plus OVERSCAN), reusing the rows already drawn. */
function drawWindow(force = false): void {
  if (!view) return;
  const top = view.tbody.getBoundingClientRect().top;
  const first = Math.max(0, Math.floor(-top / rowH) - OVERSCAN);
  const to = Math.min(list.length, first + Math.ceil(window.innerHeight / rowH) + 2 * OVERSCAN);
  const from = Math.min(first, to);
  if (!force && from === range.from && to === range.to) return;
  range = { from, to };
  const keep = new Map<string, Row>();
  const trs: HTMLElement[] = [];
  for (let i = from; i < to; i++) {
    const t = list[i]!;
    const drawn = rows.get(t.key);
    const r = drawn && drawn.made === madeFor(t) ? drawn : makeRow(t);
    keep.set(t.key, r);
    trs.push(r.tr);
  }
  rows.clear();
  for (const [k, r] of keep) rows.set(k, r);
  view.tbody.replaceChildren(view.top, ...trs, view.bottom);
  const measured = trs[0]?.getBoundingClientRect().height;
  if (measured && measured > 0) rowH = measured;
  // CSSOM, not a style attribute: the CSP allows no inline style.
  view.top.style.height = `${from * rowH}px`;
  view.bottom.style.height = `${(list.length - to) * rowH}px`;
}

function scheduleWindow(): void {
  if (frame !== 0) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    drawWindow();
  });
}

export function plcOpen(root: HTMLElement, ctx: Ctx): void {
  pageCtx = ctx;
  reload = () => fetchAll(ctx);
  fetchAll(ctx);
  rows.clear();
  known = new Set();
  listKeys = '';
  listDirty = true;
  range = { from: 0, to: 0 };
  const input = h('input', { name: 'filter', type: 'search', placeholder: 'device, group or tag', 'aria-label': 'filter tags', autocomplete: 'off' }) as HTMLInputElement;
  const count = h('span', { class: 'muted' });
  input.addEventListener('input', () => {
    filter = input.value.trim().toLowerCase();
    listDirty = true;
    plcRender(root, ctx);
  });
  filter = '';
  const topSpacer = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: '7' }));
  const bottomSpacer = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: '7' }));
  const tbody = h('tbody', {}, topSpacer, bottomSpacer);
  view = { tbody, top: topSpacer, bottom: bottomSpacer, count };
  root.append(
    h('h1', {}, 'PLC'),
    h('div', { class: 'plc-head' }),
    h('form', { class: 'filters', role: 'search' }, input, count),
    h(
      'div',
      { class: 'plc-tags' },
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['device', 'group', 'tag', 'value', 'quality', 'age', 'access'].map((x) => h('th', {}, x)))), tbody)),
    ),
  );
  root.querySelector('form')?.addEventListener('submit', (e) => e.preventDefault());
  const onScroll = (): void => {
    if (!root.isConnected || root.dataset.page !== 'plc') {
      window.removeEventListener('scroll', onScroll);
      window.removeEventListener('resize', onScroll);
      return;
    }
    scheduleWindow();
  };
  window.addEventListener('scroll', onScroll, { passive: true });
  window.addEventListener('resize', onScroll, { passive: true });
  const timer = setInterval(() => {
    if (!root.isConnected || root.dataset.page !== 'plc') return clearInterval(timer);
    for (const r of rows.values()) {
      const age = ago(r.shown.ts);
      if (r.shown.ts !== '' && r.shown.age !== age) r.age.textContent = r.shown.age = age;
    }
  }, 1000);
}

export function plcRender(root: HTMLElement, ctx: Ctx): void {
  const plc = ctx.state.plc;
  const head = root.querySelector<HTMLElement>('.plc-head');
  if (!head || !view) return;
  if (!plc) {
    head.replaceChildren(h('p', { class: 'muted' }, 'No PLC bridge is configured (plcBridge.config).'));
    return;
  }
  const devices = Object.entries(obj(plc.devices)).map(([n, d]) => h('span', { class: `card q-${obj(d).link === 'up' ? 'good' : 'bad'}` }, `${n}: link ${text(obj(d).link)}`));
  head.replaceChildren(h('p', {}, 'Bridge: ', h('strong', { class: plc.bridge === 'online' ? 'q-good' : 'q-bad' }, plc.bridge), ' ', ...devices));
  if (!listDirty) return;
  listDirty = false;
  // The configured tags first, then anything else the bridge's topics carried.
  const all: Entry[] = plc.tags.map((t) => ({ key: key(t.device, t.tag), device: t.device, group: t.group, tag: t.tag, writable: t.writable, type: t.type }));
  const seen = new Set(all.map((t) => t.key));
  for (const [k, v] of values) if (!seen.has(k)) all.push({ key: k, device: v.device, group: v.group, tag: v.tag, writable: false, type: '' });
  known = new Set(all.map((t) => t.key));
  const shown = filter ? all.filter((t) => `${t.device}\n${t.group}\n${t.tag}`.toLowerCase().includes(filter)) : all;
  const keys = shown.map((t) => t.key).join('\n');
  if (keys === listKeys) return;
  listKeys = keys;
  list = shown;
  view.count.textContent = filter ? `${shown.length} of ${all.length} tags` : `${all.length} tags`;
  drawWindow(true);
}
