/**
 * DOM helpers for the console's pages. Every string goes in as text (textContent, attribute
 * values through setAttribute): nothing from the agent or the field is ever parsed as HTML.
 */
export type Child = Node | string | number | null | undefined | false;

export function h(tag: string, attrs: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) add(e, c);
  return e;
}

export function add(parent: Node, c: Child): void {
  if (c === null || c === undefined || c === false) return;
  parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
}

export function text(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function card(k: string, v: unknown, cls?: string): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: `v ${cls ?? ''}` }, text(v)));
}

/** A table of rows; each cell is text or a node. */
export function table(headers: string[], rows: Child[][], empty = 'nothing to show'): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', {}, h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', {}, x)))), h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c)))))),
  );
}

export function ago(iso: unknown, now = Date.now()): string {
  if (typeof iso !== 'string' && typeof iso !== 'number') return '—';
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function duration(sec: unknown): string {
  if (typeof sec !== 'number') return '—';
  const d = Math.floor(sec / 86400);
  const hh = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  return d > 0 ? `${d} d ${hh} h` : hh > 0 ? `${hh} h ${m} min` : `${m} min ${sec % 60} s`;
}

export function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function arr(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(obj) : [];
}

/** Replaces an element's children (nulls skipped). */
export function fill(el: HTMLElement, ...children: Child[]): void {
  el.replaceChildren();
  for (const c of children) add(el, c);
}
