/**
 * The console's pages. Each page has `open` (build what stays: forms, fetched data) and
 * `render` (redraw from the state, called on every stream event that concerns it). Pages only
 * render what they are given; actions are commands to the agent's router.
 */
import { ago, arr, card, duration, fill, h, obj, table, text, type Child } from './dom.js';
import { plcOpen, plcRender, type PlcSnapshot } from './plc.js';
import { drawCharts } from './charts.js';

export interface AppState {
  status: Record<string, unknown>;
  plc: PlcSnapshot | null;
  /** The latest status of each command this browser knows of, by id. */
  ops: Map<string, Record<string, unknown>>;
  /** Counts `operation` events: pages showing the queue fetch it again when it moved. */
  opsVersion: number;
  role: 'viewer' | 'operator';
  pid: number | undefined;
}

export interface Ctx {
  state: AppState;
  get(path: string): Promise<unknown>;
  command(op: string, params: Record<string, unknown>): Promise<string>;
  post(path: string, body: unknown): Promise<Record<string, unknown>>;
  rerender(): void;
}

export interface Page {
  title: string;
  open?(root: HTMLElement, ctx: Ctx): void;
  render(root: HTMLElement, ctx: Ctx): void;
}

/** Page-local data fetched on open, redrawn with the rest. */
const fetched = new Map<string, unknown>();

function load(ctx: Ctx, key: string, path: string): void {
  fetched.delete(key);
  ctx
    .get(path)
    .then((d) => {
      fetched.set(key, d);
      ctx.rerender();
    })
    .catch((e: unknown) => {
      fetched.set(key, { error: e instanceof Error ? e.message : String(e) });
      ctx.rerender();
    });
}

/** The one live region of a page: replaced on each render. */
function live(root: HTMLElement): HTMLElement {
  let el = root.querySelector<HTMLElement>(':scope > .live');
  if (!el) {
    el = h('div', { class: 'live' });
    root.appendChild(el);
  }
  return el;
}

function operatorButton(ctx: Ctx, label: string, confirmText: string, op: string, params: Record<string, unknown>, after?: (id: string) => void): Child {
  if (ctx.state.role !== 'operator') return null;
  const b = h('button', { type: 'button', class: 'secondary' }, label) as HTMLButtonElement;
  b.addEventListener('click', () => {
    if (!window.confirm(confirmText)) return;
    b.disabled = true;
    ctx
      .command(op, params)
      .then((id) => after?.(id))
      .catch((e: unknown) => window.alert(e instanceof Error ? e.message : String(e)))
      .finally(() => (b.disabled = false));
  });
  return b;
}

function opStatus(ctx: Ctx, id: string | undefined): Child {
  if (!id) return null;
  const s = ctx.state.ops.get(id);
  if (!s) return h('p', { class: 'muted' }, `command ${id}: sent`);
  const p = obj(s.progress);
  const reason = obj(s.reason);
  return h('p', { class: 'op-status' }, `command ${id}: ${text(s.status)}`, p.step ? ` (${text(p.step)})` : '', reason.code ? ` — ${text(reason.code)}: ${text(reason.message)}` : '');
}

function alertRows(list: Record<string, unknown>[]): Child[][] {
  return list.map((a) => [h('span', { class: `sev-${text(a.severity)}` }, text(a.severity)), text(a.code), text(a.message), text(a.since ?? a.ts)]);
}

const overview: Page = {
  title: 'Overview',
  open: (_root, ctx) => load(ctx, 'incidents', '/api/data/incidents'),
  render: (root, ctx) => {
    const s = ctx.state.status;
    const broker = obj(s.broker);
    const plc = ctx.state.plc;
    const links = Object.entries(obj(plc?.devices)).map(([n, d]) => `${n}: ${text(obj(d).link)}`);
    const alerts = arr(s.alerts);
    const loaded = fetched.get('incidents');
    const incidents = arr(obj(loaded).incidents);
    const maint = obj(s.maintenance);
    const win = obj(maint.nextWindow);
    fill(live(root), 
      h('h1', {}, 'Overview'),
      h(
        'div',
        { class: 'cards' },
        card('Version', s.version),
        card('Slot', s.slot),
        card('Agent pid', s.pid),
        card('Uptime', duration(s.uptimeSec)),
        card('Broker', broker.connected === true ? 'connected' : 'disconnected', broker.connected === true ? 'q-good' : 'q-bad'),
        card('PLC bridge', plc ? plc.bridge : 'not configured'),
        card('PLC links', links.length > 0 ? links.join(', ') : '—'),
        card('Active alerts', alerts.length, alerts.length > 0 ? 'sev-warning' : ''),
        card('Last incident', loaded === undefined ? 'loading…' : incidents[0] ? `${text(incidents[0].component)}: ${text(incidents[0].cause)} (${ago(incidents[0].at)})` : 'none'),
        card('Next maintenance window', win.start ? `${text(win.start)} to ${text(win.end)}${win.state && win.state !== 'planned' ? ` (${text(win.state)})` : ''}` : s.maintenance ? 'none configured' : '—'),
      ),
      h('h2', {}, 'Active alerts'),
      table(['severity', 'code', 'message', 'since'], alertRows(alerts), 'no active alerts'),
    );
  },
};

const components: Page = {
  title: 'Components',
  render: (root, ctx) => {
    const rows = arr(ctx.state.status.components).map((c) => [
      text(c.name),
      text(c.kind),
      h('span', { class: `state-${text(c.state)}` }, text(c.state)),
      text(c.restarts),
      ago(c.since),
      text(c.pid),
      c.alarm ? h('span', { class: 'sev-critical' }, text(obj(c.alarm).message)) : '—',
      c.lastFailure ? `${text(obj(c.lastFailure).cause)} ${ago(obj(c.lastFailure).at)}` : '—',
      operatorButton(ctx, 'Restart', `Restart ${text(c.name)}?`, 'restart', { component: c.name }, (id) => fetched.set('restart', id)),
    ]);
    fill(live(root), 
      h('h1', {}, 'Components'),
      table(['name', 'kind', 'state', 'restarts', 'since', 'pid', 'alarm', 'last failure', ''], rows, 'no supervised components'),
      opStatus(ctx, fetched.get('restart') as string | undefined),
    );
  },
};

const alerts: Page = {
  title: 'Alerts',
  open: (_root, ctx) => load(ctx, 'alerts', '/api/data/alerts'),
  render: (root, ctx) => {
    const hist = arr(obj(fetched.get('alerts')).history);
    fill(live(root), 
      h('h1', {}, 'Alerts'),
      h('h2', {}, 'Active'),
      table(['severity', 'code', 'message', 'since'], alertRows(arr(ctx.state.status.alerts)), 'no active alerts'),
      h('h2', {}, 'History (since the agent started)'),
      table(['severity', 'code', 'message', 'at'], hist.map((a) => [h('span', { class: `sev-${text(a.severity)}` }, text(a.severity)), text(a.code), text(a.message), text(a.ts)]), 'no alerts raised or cleared'),
    );
  },
};

const health: Page = {
  title: 'Health',
  open: (root, ctx) => {
    const sel = h('select', { name: 'range', 'aria-label': 'range' }, ...['1h', '24h', '7d', '30d', '90d'].map((r) => h('option', { value: r }, r))) as HTMLSelectElement;
    sel.addEventListener('change', () => load(ctx, 'health', `/api/data/health?range=${sel.value}`));
    root.append(h('h1', {}, 'Health'), h('form', { class: 'filters' }, h('label', {}, 'Range ', sel)));
    load(ctx, 'health', '/api/data/health?range=1h');
  },
  render: (root, ctx) => {
    const d = fetched.get('health');
    const el = live(root);
    if (el.dataset.drawn === 'yes' && el.dataset.for === JSON.stringify(obj(d).from)) return;
    el.replaceChildren();
    if (!d) return void el.append(h('p', { class: 'muted' }, 'loading…'));
    el.dataset.drawn = 'yes';
    el.dataset.for = JSON.stringify(obj(d).from);
    drawCharts(el, obj(obj(d).metrics));
    void ctx;
  },
};

const updates: Page = {
  title: 'Updates',
  open: (_root, ctx) => load(ctx, 'updates', '/api/data/updates'),
  render: (root, ctx) => {
    const d = obj(fetched.get('updates'));
    const slots = obj(d.slots);
    const slotRows = arr(slots.slots).map((s) => [text(s.name), text(s.version), text(s.state), s.active ? 'yes' : '']);
    const hist = arr(d.history).map((x) => [text(x.at ?? x.updatedAt ?? x.ts), text(x.kind ?? x.op ?? x.event), text(x.version ?? x.toVersion ?? x.status), text(x.id ?? x.slot ?? '')]);
    fill(live(root), 
      h('h1', {}, 'Updates'),
      h('h2', {}, 'Slots'),
      slots.error ? h('p', { class: 'muted' }, text(slots.error)) : table(['slot', 'version', 'state', 'active'], slotRows),
      operatorButton(ctx, 'Roll back', 'Roll back to the other committed slot? The agent restarts.', 'rollback', {}, (id) => fetched.set('rollback', id)),
      opStatus(ctx, fetched.get('rollback') as string | undefined),
      h('h2', {}, 'History'),
      table(['at', 'what', 'version / status', 'id'], hist, 'no history'),
    );
  },
};

const incidents: Page = {
  title: 'Incidents',
  open: (_root, ctx) => load(ctx, 'incidents', '/api/data/incidents'),
  render: (root) => {
    const list = arr(obj(fetched.get('incidents')).incidents);
    fill(live(root), 
      h('h1', {}, 'Incidents'),
      table(['at', 'component', 'cause', 'action', 'detail'], list.map((i) => [text(i.at), text(i.component), text(i.cause), text(i.action ?? i.step), text(i.detail ?? i.message ?? i.lastLines)]), 'no incidents'),
    );
  },
};

const diagnostics: Page = {
  title: 'Diagnostics',
  open: (root, ctx) => {
    const run = h('button', { type: 'button' }, 'Run diagnostics') as HTMLButtonElement;
    run.addEventListener('click', () => {
      run.disabled = true;
      ctx
        .command('diagnostics', {})
        .then((id) => fetched.set('diag', id))
        .catch((e: unknown) => window.alert(e instanceof Error ? e.message : String(e)))
        .finally(() => {
          run.disabled = false;
          ctx.rerender();
        });
    });
    const controls = h('p', {}, run);
    // Operators only (the server says so too): a bundle is the gateway's configuration, logs and
    // history leaving it. The file comes by an opaque id the agent hands out, never by a path.
    if (ctx.state.role === 'operator') {
      const bundle = h('button', { type: 'button', class: 'secondary' }, 'Download support bundle') as HTMLButtonElement;
      const note = h('span', { class: 'muted bundle-note' });
      bundle.addEventListener('click', () => {
        bundle.disabled = true;
        note.textContent = ' making the bundle…';
        ctx
          .post('/api/bundle', {})
          .then((j) => {
            note.textContent = ' ready';
            const a = h('a', { href: `/api/download/${encodeURIComponent(String(j.id))}`, download: 'support-bundle.tar.gz' });
            document.body.append(a);
            a.click();
            a.remove();
          })
          .catch((e: unknown) => (note.textContent = ` ${e instanceof Error ? e.message : String(e)}`))
          .finally(() => (bundle.disabled = false));
      });
      controls.append(' ', bundle, note);
    }
    root.append(h('h1', {}, 'Diagnostics'), controls);
  },
  render: (root, ctx) => {
    const id = fetched.get('diag') as string | undefined;
    const s = id ? ctx.state.ops.get(id) : undefined;
    const result = obj(s?.result);
    const checks = arr(result.checks);
    fill(live(root), 
      opStatus(ctx, id),
      checks.length > 0
        ? table(['check', 'status', 'detail'], checks.map((c) => [text(c.name ?? c.id), h('span', { class: `q-${c.status === 'ok' ? 'good' : c.status === 'warn' ? 'stale' : 'bad'}` }, text(c.status)), text(c.message ?? c.detail)]))
        : s?.result !== undefined
          ? h('pre', {}, JSON.stringify(s.result, null, 2))
          : null,
    );
  },
};

const logs: Page = {
  title: 'Logs',
  open: (root, ctx) => {
    const level = h('select', { name: 'level', 'aria-label': 'level' }, ...['info', 'warn', 'error', 'fatal'].map((l) => h('option', { value: l }, l))) as HTMLSelectElement;
    const component = h('input', { name: 'component', placeholder: 'component', 'aria-label': 'component' }) as HTMLInputElement;
    const q = h('input', { name: 'q', placeholder: 'text', 'aria-label': 'text' }) as HTMLInputElement;
    const form = h('form', { class: 'filters' }, level, component, q, h('button', { type: 'submit' }, 'Filter'));
    const go = (): void => load(ctx, 'logs', `/api/data/logs?${new URLSearchParams({ level: level.value, component: component.value, q: q.value }).toString()}`);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      go();
    });
    root.append(h('h1', {}, 'Logs'), form);
    go();
  },
  render: (root) => {
    const lines = arr(obj(fetched.get('logs')).lines);
    fill(live(root), 
      table(['time', 'level', 'component', 'message'], lines.map((l) => [typeof l.time === 'number' ? new Date(l.time).toISOString() : text(l.time), text(l.level), text(l.component), h('span', { class: 'mono' }, text(l.msg))]), 'no matching lines'),
    );
  },
};

/** Fetches again when an operation's status moved since the last fetch (one fetch at a time). */
function follow(ctx: Ctx, key: string, path: string): void {
  const seen = fetched.get(`${key}:v`);
  if (seen === ctx.state.opsVersion || fetched.get(`${key}:busy`) === true) return;
  fetched.set(`${key}:v`, ctx.state.opsVersion);
  fetched.set(`${key}:busy`, true);
  ctx
    .get(path)
    .then((d) => fetched.set(key, d))
    .catch(() => undefined)
    .finally(() => {
      fetched.set(`${key}:busy`, false);
      ctx.rerender();
    });
}

function controls(ctx: Ctx, q: Record<string, unknown>): Child {
  if (ctx.state.role !== 'operator') return null;
  const run = obj(q.run);
  const id = String(q.id);
  const box = h('span', { class: 'controls' });
  const add = (label: string, op: string, params: Record<string, unknown>, question: string): void => {
    const b = operatorButton(ctx, label, question, op, params);
    if (b) box.append(b as Node, ' ');
  };
  if (q.op === 'maintenance' && q.state === 'running') {
    if (run.state === 'paused') add('Resume', 'resume', { target: id }, `Resume ${id}?`);
    else add('Pause', 'pause', { target: id }, `Pause ${id} at its next step boundary?`);
  }
  const confirm = obj(run.confirm);
  if (typeof confirm.step === 'string') {
    add('Confirm: yes', 'confirm', { target: id, step: confirm.step, answer: 'yes' }, `${text(confirm.message)}\n\nAnswer yes?`);
    add('Confirm: no', 'confirm', { target: id, step: confirm.step, answer: 'no' }, 'Answer no?');
  }
  if (q.cancellable === true) add('Cancel', 'cancel', { target: id }, `Cancel ${id}?`);
  return box;
}

const operations: Page = {
  title: 'Operations',
  render: (root, ctx) => {
    follow(ctx, 'operations', '/api/data/operations');
    const list = arr(obj(fetched.get('operations')).operations);
    fill(
      live(root),
      h('h1', {}, 'Operations'),
      table(
        ['id', 'operation', 'state', 'step', 'progress', 'priority', 'from', 'since', ''],
        list.map((q) => {
          const run = obj(q.run);
          const confirm = obj(run.confirm);
          return [
            h('span', { class: 'mono' }, text(q.id)),
            `${text(q.op)}${run.procedure ? ` ${text(run.procedure)}` : ''}${run.dryRun === true ? ' (dry run)' : ''}`,
            `${text(q.state)}${run.state ? ` / ${text(run.state)}` : ''}${q.position !== undefined ? ` #${text(q.position)}` : ''}`,
            `${text(run.step ?? q.step)}${confirm.step ? ` — waiting: ${text(confirm.message)}` : ''}`,
            typeof run.percent === 'number' ? `${run.percent} %` : '—',
            text(q.priority),
            text(obj(q.origin).actor),
            ago(q.since),
            controls(ctx, q),
          ];
        }),
        'no operation running or waiting',
      ),
    );
  },
};

const maintenance: Page = {
  title: 'Maintenance',
  render: (root, ctx) => {
    follow(ctx, 'maintenance', '/api/data/maintenance');
    const d = obj(fetched.get('maintenance'));
    const procs = arr(d.procedures);
    const reports = arr(d.reports);
    fill(
      live(root),
      h('h1', {}, 'Maintenance'),
      h('h2', {}, 'Procedures'),
      table(
        ['procedure', 'title', 'source', 'status', ''],
        procs.map((p) => [
          h('span', { class: 'mono' }, text(p.id)),
          text(p.title),
          text(p.source),
          h('span', { class: p.status === 'valid' ? 'q-good' : 'q-bad' }, text(p.status)),
          p.status === 'valid'
            ? h(
                'span',
                {},
                operatorButton(ctx, 'Dry run', `Dry run ${text(p.id)}?`, 'maintenance', { procedure: p.id, dryRun: true }),
                ' ',
                operatorButton(ctx, 'Run', `Run ${text(p.id)} now?${p.disruptive === true ? ' It is disruptive.' : ''}`, 'maintenance', { procedure: p.id }),
              )
            : '',
        ]),
        'no procedures',
      ),
      h('h2', {}, 'Schedules'),
      table(
        ['procedure', 'cron', 'next run', 'last run', 'outcome', ''],
        arr(obj(d.schedule).schedules).map((x) => {
          const last = obj(x.lastRun);
          return [
            h('span', { class: 'mono' }, text(x.procedure)),
            `${text(x.cron)}${x.timezone ? ` (${text(x.timezone)})` : ''}${x.enabled === false ? ' — disabled' : ''}`,
            text(x.nextRun ?? '—'),
            text(last.startedAt ?? last.slot ?? '—'),
            text(last.outcome ?? '—'),
            x.overdue === true ? h('span', { class: 'sev-warning' }, `overdue since ${text(x.overdueSlot)}`) : '',
          ];
        }),
        'no schedules (no valid procedure has one, and maintenance.schedules adds none)',
      ),
      h('h2', {}, 'Next maintenance windows'),
      table(
        ['window', 'start', 'end', 'state'],
        arr(obj(d.schedule).windows).map((x) => [h('span', { class: 'mono' }, text(x.id)), text(x.start), text(x.end), `${text(x.state)}${typeof x.deferredSec === 'number' && x.deferredSec > 0 ? ` (deferred ${x.deferredSec} s)` : ''}`]),
        'no maintenance windows configured (maintenance.windows)',
      ),
      h('h2', {}, 'Reports'),
      table(
        ['run', 'procedure', 'state', 'trigger', 'started by', 'started', 'ended'],
        reports.map((r) => [h('span', { class: 'mono' }, text(r.runId)), `${text(r.procedure)}${r.dryRun === true ? ' (dry run)' : ''}`, text(r.state), text(r.trigger), text(r.startedBy), text(r.startedAt), text(r.endedAt)]),
        'no reports yet',
      ),
    );
  },
};

const audit: Page = {
  title: 'Audit',
  open: (_root, ctx) => load(ctx, 'audit', '/api/data/audit'),
  render: (root) => {
    const d = obj(fetched.get('audit'));
    const v = obj(d.verify);
    const state =
      d.verify === undefined
        ? h('p', { class: 'muted' }, 'loading…')
        : d.verify === null
          ? h('p', { class: 'muted' }, 'no audit trail in this agent')
          : v.ok === true
            ? h('p', { class: 'chain q-good', 'data-chain': 'ok' }, `The chain holds: ${text(v.entries)} entries${v.firstSeq !== null ? `, ${text(v.firstSeq)} to ${text(v.lastSeq)}` : ''}${v.startsAfterCut === true ? ' (starts after a recorded cut)' : ''}. Checked ${text(d.verifiedAt)}.`)
            : h('p', { class: 'chain q-bad', 'data-chain': 'broken' }, `The chain is broken at entry ${text(v.brokenSeq)}: ${text(v.problem)}. Checked ${text(d.verifiedAt)}.`);
    fill(
      live(root),
      h('h1', {}, 'Audit trail'),
      state,
      h('h2', {}, 'Newest entries'),
      table(
        ['seq', 'at', 'actor', 'action', 'target', 'outcome'],
        arr(d.entries).map((e) => [text(e.seq), text(e.at), h('span', { class: 'mono' }, text(e.actor)), text(e.action), text(e.target ?? '—'), text(e.outcome)]),
        'no entries',
      ),
    );
  },
};

const plc: Page = {
  title: 'PLC',
  open: (root, ctx) => plcOpen(root, ctx),
  render: (root, ctx) => plcRender(root, ctx),
};

export const PAGES: Record<string, Page> = { overview, components, alerts, health, plc, operations, maintenance, updates, incidents, diagnostics, logs, audit };
