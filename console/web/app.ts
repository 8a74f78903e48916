/**
 * The console's page shell: pairing, the session, the one live stream, and the page router.
 * The view is a function of the state the stream delivers (a snapshot on connect, then named
 * events); there is no business logic here, and every action is a POST to the agent's router.
 */
import { h } from './dom.js';
import { PAGES, type AppState, type Ctx } from './pages.js';
import { plcApply, plcSnapshot } from './plc.js';

const state: AppState = { status: {}, plc: null, ops: new Map(), opsVersion: 0, role: 'viewer', pid: undefined };
let csrf = '';
let source: EventSource | undefined;
let page = 'overview';
let rendering = false;
const main = document.getElementById('main')!;
const nav = document.getElementById('nav')!;
const conn = document.getElementById('conn')!;

async function api(path: string, body?: unknown): Promise<Response> {
  const init: RequestInit = body === undefined ? { credentials: 'same-origin' } : { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify(body) };
  return fetch(path, init);
}

const ctx: Ctx = {
  state,
  get: async (path) => {
    const r = await api(path);
    if (r.status === 401) {
      showPairing('Your session has ended. Pair again.');
      throw new Error('no session');
    }
    return r.json() as Promise<unknown>;
  },
  command: async (op, params) => {
    const r = await api('/api/command', { op, params });
    const j = (await r.json()) as { id?: string; message?: string };
    if (r.status === 401) showPairing('Your session has ended. Pair again.');
    if (!r.ok) throw new Error(j.message ?? `refused (${r.status})`);
    return j.id ?? '';
  },
  post: async (path, body) => {
    const r = await api(path, body);
    const j = (await r.json()) as Record<string, unknown>;
    if (!r.ok) throw new Error(typeof j.message === 'string' ? j.message : `refused (${r.status})`);
    return j;
  },
  rerender: () => scheduleRender(),
};

function scheduleRender(): void {
  if (rendering) return;
  rendering = true;
  requestAnimationFrame(() => {
    rendering = false;
    render();
  });
}

function render(): void {
  // A render scheduled before the session ended must not draw a page over the pairing form.
  if (main.dataset.page === 'pair') return;
  const p = PAGES[page] ?? PAGES.overview!;
  nav.replaceChildren(...Object.entries(PAGES).map(([k, v]) => h('a', { href: `#${k}`, class: k === page ? 'active' : undefined }, v.title)));
  nav.hidden = false;
  p.render(main, ctx);
}

function route(): void {
  const name = location.hash.replace(/^#/, '').split('?')[0] ?? '';
  const next = PAGES[name] ? name : 'overview';
  if (next !== page || main.dataset.page !== next) {
    page = next;
    main.dataset.page = next;
    main.replaceChildren();
    PAGES[next]?.open?.(main, ctx);
  }
  render();
}

function onEvent(name: string, data: string): void {
  const d = JSON.parse(data) as Record<string, unknown>;
  switch (name) {
    case 'snapshot':
      state.status = (d.status as Record<string, unknown>) ?? {};
      plcSnapshot(state, (d.plc as { bridge?: unknown; devices?: unknown } | null) ?? null);
      break;
    case 'status':
      state.status = d;
      break;
    case 'plc':
      // Values update their own cells in place (plc.ts); a new tag or a bridge state redraws.
      if (!plcApply(state, d)) return;
      break;
    case 'operation':
      state.ops.set(String(d.id), d);
      state.opsVersion++;
      break;
    default:
      return;
  }
  if (typeof state.status.pid === 'number') state.pid = state.status.pid;
  scheduleRender();
}

function connect(): void {
  source?.close();
  const es = new EventSource('/api/stream');
  source = es;
  for (const n of ['snapshot', 'status', 'component', 'alert', 'operation', 'plc', 'health']) es.addEventListener(n, (e) => onEvent(n, (e as MessageEvent<string>).data));
  es.onopen = () => {
    conn.textContent = 'live';
    conn.className = 'conn live';
  };
  es.onerror = () => {
    conn.textContent = 'reconnecting';
    conn.className = 'conn down';
    // CLOSED: the server answered with an error (no session). Otherwise the browser retries by
    // itself (keeping Last-Event-ID); if it is still not through after a while, ask whether the
    // session is gone (revoked, expired), which sends this tab back to pairing.
    if (es.readyState === EventSource.CLOSED) {
      void checkSession().then((ok) => {
        if (ok) setTimeout(connect, 1000);
      });
      return;
    }
    setTimeout(() => {
      if (source !== es || es.readyState === EventSource.OPEN) return;
      void api('/api/session')
        .then((r) => {
          if (r.status === 401 && source === es) showPairing('Your session has ended. Pair again.');
        })
        .catch(() => undefined);
    }, 2500);
  };
}

async function checkSession(): Promise<boolean> {
  let r: Response;
  try {
    r = await api('/api/session');
  } catch {
    setTimeout(() => void checkSession().then((ok) => ok && connect()), 1000);
    return false;
  }
  if (r.status === 401) {
    showPairing();
    return false;
  }
  if (!r.ok) return false;
  const s = (await r.json()) as { role: 'viewer' | 'operator'; csrf: string };
  csrf = s.csrf;
  state.role = s.role;
  document.body.dataset.role = s.role;
  return true;
}

function showPairing(message?: string): void {
  source?.close();
  source = undefined;
  nav.hidden = true;
  nav.replaceChildren();
  conn.textContent = 'not paired';
  conn.className = 'conn';
  const input = h('input', { name: 'code', autocomplete: 'off', placeholder: 'CODE', 'aria-label': 'pairing code' }) as HTMLInputElement;
  const err = h('p', { class: 'error', role: 'alert' }, message ?? '');
  const form = h(
    'form',
    { class: 'pair' },
    h('h1', {}, 'Pair this browser'),
    h('p', {}, 'On the gateway, run ', h('code', {}, 'edge-agent console pair'), ' and open the URL it prints, or type its code here.'),
    input,
    h('button', { type: 'submit' }, 'Pair'),
    err,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void pair(input.value).then((m) => (err.textContent = m));
  });
  main.dataset.page = 'pair';
  main.replaceChildren(form);
}

async function pair(code: string): Promise<string> {
  const r = await fetch('/api/pair', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) });
  const j = (await r.json()) as { message?: string };
  if (!r.ok) return j.message ?? `refused (${r.status})`;
  if (await checkSession()) {
    history.replaceState(null, '', '/#overview');
    main.dataset.page = '';
    route();
    connect();
  }
  return '';
}

/** A pairing URL (`#pair=CODE`), opened fresh or in a tab already on the console; true when it was one. */
async function pairFromUrl(): Promise<boolean> {
  const m = /^#pair=([A-Za-z0-9]+)$/.exec(location.hash);
  if (!m?.[1]) return false;
  // The code leaves the address bar (and the history) before anything else happens.
  history.replaceState(null, '', '/');
  const msg = await pair(m[1]);
  if (msg) showPairing(msg);
  return true;
}

async function boot(): Promise<void> {
  if (await pairFromUrl()) return;
  // The stream needs only the cookie: it opens while the session (role, CSRF token) is asked for.
  // Without a session it is refused, and checkSession shows the pairing form (closing it).
  connect();
  if (await checkSession()) route();
}

window.addEventListener('hashchange', () => {
  void pairFromUrl().then((paired) => {
    if (!paired && main.dataset.page !== 'pair') route();
  });
});
void boot();
