/**
 * The web console's wiring (docs/console.md): its backend over the agent's own parts (status,
 * stores, log ring, router, maintenance runner), the PLC feed from the bridge's topics, the
 * server, and the admin methods behind `edge-agent console pair|sessions`.
 *
 * Commands from the page go through `Router.submit` with origin `console` and the session as
 * actor: the same parsing, lifecycle, codes, `~/res/{id}` and audit as the WMS's commands. Every
 * status the router writes goes on the stream (`operation`).
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { readRing } from '../lib/log-ring.js';
import { EdgeError, registerCodes } from '../lib/errors.js';
import { tlsConnectOptions } from '../lib/mqtt-options.js';
import { logRingDir, type AgentConfig } from '../core/config.js';
import { splitListen } from '../core/config-schema.js';
import type { AgentEvent, Component } from '../core/ports.js';
import type { AuditPort } from '../core/audit.js';
import type { AdminMethod } from '../core/admin.js';
import { ConsoleServer } from '../console/server.js';
import { SessionStore, DEFAULT_LIMITS, type Role, type Session } from '../console/sessions.js';
import { readJsonFile, writeJsonAtomic } from '../lib/atomic.js';
import { EventRing } from '../console/stream.js';
import { PlcFeed, type TagInfo } from '../console/plc-feed.js';
import type { CommandPort, CommandStatusMsg, ConsoleBackend } from '../console/ports.js';
import { queryHistory, readActiveAlerts } from '../health/history.js';
import { IncidentStore } from '../recovery/incidents.js';
import { loadSlots } from '../ota/slots.js';
import { loadBridgeConfig } from '../plc-bridge/config.js';
import type { CommandStore } from './command-store.js';
import type { Router } from './router.js';
import { slotsReport } from './cli/slots.js';
import { statusSummary } from './cli/maintenance-schedule.js';
import { scheduleSummary, type ScheduleSummary } from '../maintenance/schedule-summary.js';
import type { SchedulableProcedure } from '../maintenance/schedule-plan.js';
import { readScheduleRows, readWindowRows } from '../maintenance/schedule-store.js';
import type { AuditEntry, VerifyResult } from '../core/audit.js';
import type { DaemonDiagnostics, DaemonDiagOptions } from '../health/diag/daemon.js';
import { agentStoreReader } from './store-reader.js';
import { mergeHistory } from './cli/history.js';

export const CONSOLE_CODES = registerCodes('console', ['console-disabled', 'no-session', 'wrong-host', 'foreign-origin', 'csrf', 'forbidden', 'wrong-code', 'rate-limited'] as const);

const RANGES: Record<string, number> = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000, '90d': 90 * 86_400_000 };
const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export interface ConsoleWiring {
  component: Component | undefined;
  adminMethods: Record<string, AdminMethod>;
  /** Every event the agent sends to ~/events: alerts are kept for the alerts page's history. */
  onEvent(ev: AgentEvent): void;
  /** The bound URL once started (tests, the pairing command). */
  url(): string | undefined;
}

/** Local submissions through the router (the same intake as `~/cmd/{op}`), the session as actor. */
function commandPort(router: Router): CommandPort {
  return {
    submit: (op, params, meta) => {
      const id = router.submit(op, params, { origin: { trigger: 'console', actor: meta.actor } });
      router.flushIntake();
      return { id };
    },
    onStatus: (l) => router.onStatus((m) => l(m as unknown as CommandStatusMsg)),
  };
}

function plcTags(path: string | undefined, logger: Logger): { feed?: { url: string; root: string; tags: TagInfo[]; mqtt: Record<string, unknown> } } {
  if (!path) return {};
  try {
    const b = loadBridgeConfig(path);
    const tags: TagInfo[] = b.devices.flatMap((d) =>
      d.groups.flatMap((g) => g.tags.map((t) => ({ device: d.name, group: g.name, tag: t.name, type: t.type, writable: t.access !== 'read' }))),
    );
    const mqtt: Record<string, unknown> = {};
    if (b.mqtt.username) mqtt.username = b.mqtt.username;
    if (b.mqtt.password) mqtt.password = b.mqtt.password;
    if (b.mqtt.tls) Object.assign(mqtt, tlsConnectOptions(b.mqtt.tls));
    return { feed: { url: b.mqtt.url, root: `${b.mqtt.prefix}/${b.gatewayId}`, tags, mqtt } };
  } catch (err) {
    logger.warn({ err, path }, 'console: cannot read the PLC bridge configuration; the PLC page stays empty');
    return {};
  }
}

export function wireConsole(w: {
  config: AgentConfig;
  db: Db;
  clock: Clock;
  logger: Logger;
  router: Router;
  store: CommandStore;
  audit: AuditPort;
  status: () => Record<string, unknown>;
  /** The operation queue with the runner's view of each run; the procedures and their reports. */
  operations: () => unknown;
  maintenance: () => Record<string, unknown>;
  /** The valid procedures (their schedules), for the schedules and next runs. */
  procedures?: () => readonly SchedulableProcedure[];
  /** The audit trail: its newest entries and the check of its whole chain (read-only). */
  auditTrail?: { tail(limit: number): AuditEntry[]; verify(): VerifyResult };
  /** The diagnostics suite's inputs: the support bundle is made from them (loaded when first asked for). */
  diag?: Omit<DaemonDiagOptions, 'storeReader'>;
  /** A PLC write through the bridge's control socket, recorded in the audit trail (agent/plc-write-audit.ts). */
  plcWrite?: ConsoleBackend['plcWrite'];
}): ConsoleWiring {
  const c = w.config.console;
  const logger = w.logger.child({ component: 'console' });
  const alertHistory: AgentEvent[] = [];
  const onEvent = (ev: AgentEvent): void => {
    if (ev.type !== 'alert') return;
    alertHistory.push({ ...ev, ts: new Date(w.clock.now()).toISOString() });
    if (alertHistory.length > 500) alertHistory.shift();
  };
  const disabled = (): never => {
    throw new EdgeError('console-disabled', 'the web console is disabled (console.enabled: false)');
  };
  if (!c.enabled) return { component: undefined, onEvent, url: () => undefined, adminMethods: { 'console-pair': disabled, 'console-sessions': disabled } };

  const listen = splitListen(c.listen) ?? { host: '127.0.0.1', port: 8080 };
  // Only the SHA-256 of each session id is written (mode 0600): the file holds no usable cookie.
  const sessionsFile = join(w.config.dataDir, 'console-sessions.json');
  const sessions = new SessionStore(w.clock, { ...DEFAULT_LIMITS, idleMs: c.idleMinutes * 60_000, absoluteMs: c.absoluteHours * 3_600_000 }, {
    load: () => {
      try {
        const v = readJsonFile(sessionsFile);
        return Array.isArray(v) ? (v as Session[]) : [];
      } catch {
        return [];
      }
    },
    save: (list) => {
      try {
        writeJsonAtomic(sessionsFile, list, 0o600);
      } catch (err) {
        logger.warn({ err }, 'console: cannot write the sessions file; sessions end with this process');
      }
    },
  });
  const ring = new EventRing();
  const { feed: plc } = plcTags(w.config.plcBridge.config, logger);
  const feed = plc
    ? new PlcFeed({
        url: plc.url,
        root: plc.root,
        tags: plc.tags,
        mqtt: plc.mqtt,
        logger,
        // Nobody listening: the change is not kept (2,000 values a second would fill the ring for
        // no one); a browser that connects or comes back gets the snapshot, which holds it.
        onChange: (change) => {
          if (ring.subscribers === 0) ring.skip();
          else ring.publish('plc', change, false);
        },
      })
    : undefined;
  // The schedules with their next runs and the next windows, as `edge-agent maintenance schedule`
  // shows them, from the daemon's own catalog and store; a few queries, so kept for 10 s.
  const m = w.config.maintenance;
  let schedules: { at: number; summary: ScheduleSummary } | undefined;
  const scheduleView = (): ScheduleSummary | undefined => {
    if (!w.procedures) return undefined;
    const now = w.clock.now();
    if (schedules && now - schedules.at < 10_000) return schedules.summary;
    const summary = scheduleSummary({ procedures: w.procedures(), overrides: m.schedules, windows: m.windows, maxDeferSec: m.maxDeferSec, rows: readScheduleRows(w.db), windowRows: readWindowRows(w.db, now - 8 * 86_400_000), now });
    schedules = { at: now, summary };
    return summary;
  };
  const withSchedules = (): Record<string, unknown> => {
    const st = w.status();
    try {
      const v = scheduleView();
      return v ? { ...st, maintenance: statusSummary(v) } : st;
    } catch (err) {
      logger.warn({ err }, 'console: cannot read the maintenance schedules');
      return st;
    }
  };
  // The chain check reads every entry: one a minute at most, however often the page is opened.
  let verified: { at: number; result: VerifyResult } | undefined;
  const verifyAudit = (): { at: string; result: VerifyResult } | null => {
    if (!w.auditTrail) return null;
    const now = w.clock.now();
    if (!verified || now - verified.at > 60_000) verified = { at: now, result: w.auditTrail.verify() };
    return { at: new Date(verified.at).toISOString(), result: verified.result };
  };
  let diag: Promise<DaemonDiagnostics> | undefined;
  const diagOpts = w.diag;
  const backend: ConsoleBackend = {
    status: withSchedules,
    ...(diagOpts
      ? {
          // A bundle in the temporary directory under a random name (mode 0600); the server hands
          // it out by an opaque id and removes it when the id expires.
          supportBundle: async (): Promise<string> => {
            diag ??= import('../health/diag/daemon.js').then((mod) => new mod.DaemonDiagnostics({ ...diagOpts, storeReader: agentStoreReader }));
            const out = join(tmpdir(), `edge-agent-console-bundle-${randomBytes(8).toString('hex')}.tar.gz`);
            await (await diag).bundle(out);
            return out;
          },
        }
      : {}),
    commands: commandPort(w.router),
    audit: (e) => w.audit(e),
    ...(w.plcWrite ? { plcWrite: w.plcWrite } : {}),
    read: (page, q) => {
      switch (page) {
        case 'health': {
          const sinceMs = RANGES[q.get('range') ?? '1h'] ?? RANGES['1h']!;
          return queryHistory(w.db, { sinceMs, now: w.clock.now(), retention: w.config.health.retention, buckets: 120 });
        }
        case 'alerts':
          return { active: readActiveAlerts(w.db), history: [...alertHistory].reverse() };
        case 'incidents':
          return { incidents: new IncidentStore(w.db).list({ limit: 100 }) };
        case 'updates': {
          const root = w.config.ota.root;
          let slots: unknown;
          let slotHistory: Parameters<typeof mergeHistory>[0] = [];
          try {
            const f = loadSlots(root);
            slots = slotsReport(root, f);
            slotHistory = f.history ?? [];
          } catch (err) {
            slots = { error: err instanceof Error ? err.message : String(err) };
          }
          return { slots, history: mergeHistory(slotHistory, w.store.recent(50), 50) };
        }
        case 'logs':
          return { lines: logLines(logRingDir(w.config), q) };
        case 'operations':
          return w.operations();
        case 'maintenance':
          return { ...w.maintenance(), schedule: scheduleView() ?? null };
        case 'audit': {
          if (!w.auditTrail) return { entries: [], verify: null };
          // The whole chain is checked (streaming, a million entries in a few seconds): the page
          // says whether the entries it lists can be trusted.
          const v = verifyAudit();
          return { entries: w.auditTrail.tail(200).reverse(), verify: v?.result ?? null, verifiedAt: v?.at ?? null };
        }
        default:
          return {};
      }
    },
  };
  const server = new ConsoleServer({
    host: listen.host,
    port: listen.port,
    hostnames: c.hostnames,
    tls: c.tls.cert !== null && c.tls.key !== null ? { cert: c.tls.cert, key: c.tls.key } : null,
    idleMs: c.idleMinutes * 60_000,
    absoluteMs: c.absoluteHours * 3_600_000,
    staticDir: fileURLToPath(new URL('../console/web/', import.meta.url)),
    backend,
    plc: feed,
    sessions,
    ring,
    clock: w.clock,
    logger,
  });
  let started = false;
  const url = (): string | undefined => {
    const a = server.address();
    if (!a) return undefined;
    const host = a.host.includes(':') ? `[${a.host}]` : a.host;
    return `${c.tls.cert !== null ? 'https' : 'http'}://${host}:${a.port}/`;
  };
  const component: Component = {
    name: 'console',
    start: async () => {
      // The console is not what the gateway is for: a port already taken is an error in the
      // log, not a gateway that stops talking to its WMS.
      try {
        await server.start();
        started = true;
      } catch (err) {
        logger.error({ err, listen: c.listen }, 'the web console cannot listen; the agent runs on without it');
        return;
      }
      await feed?.start();
    },
    stop: async () => {
      await feed?.stop();
      if (started) await server.stop();
      sessions.flush();
    },
  };
  const roleOf = (v: unknown): Role => {
    if (v === undefined || v === 'viewer') return 'viewer';
    if (v === 'operator') return 'operator';
    throw new EdgeError('invalid-request', `role: viewer or operator, got ${JSON.stringify(v)}`);
  };
  return {
    component,
    onEvent,
    url,
    adminMethods: {
      'console-pair': (params) => {
        const base = url();
        if (!base) throw new EdgeError('console-disabled', `the web console is not listening (see the agent's log for ${c.listen})`);
        const p = sessions.pair(roleOf(params.role));
        w.audit({ actor: 'local', action: 'console-pair-code', target: p.role, outcome: 'successful' });
        return { url: `${base}#pair=${p.code}`, code: p.code, role: p.role, expiresAt: new Date(p.expiresAt).toISOString() };
      },
      'console-sessions': (params) => {
        if (typeof params.revoke === 'string') {
          const n = sessions.revoke(params.revoke);
          w.audit({ actor: 'local', action: 'console-revoke', target: params.revoke, outcome: n > 0 ? 'successful' : 'failed/not-found' });
          return { revoked: n, sessions: sessions.list() };
        }
        return { sessions: sessions.list() };
      },
    },
  };
}

/** The ring's last lines, newest last, filtered by level (at least), component and text. */
export function logLines(dir: string, q: URLSearchParams, max = 500): Record<string, unknown>[] {
  const minLevel = Number(Object.entries(LEVELS).find(([, n]) => n === q.get('level'))?.[0] ?? 0);
  const component = q.get('component') ?? '';
  const text = (q.get('q') ?? '').toLowerCase();
  const out: Record<string, unknown>[] = [];
  const lines = readRing(dir, undefined, 8 * 1024 * 1024);
  for (let i = lines.length - 1; i >= 0 && out.length < max; i--) {
    const raw = lines[i]!;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof o.level === 'number' && o.level < minLevel) continue;
    if (component && o.component !== component) continue;
    if (text && !raw.toLowerCase().includes(text)) continue;
    out.push({ time: o.time, level: LEVELS[o.level as number] ?? String(o.level), component: o.component ?? '', msg: o.msg ?? '', line: raw.length > 2000 ? raw.slice(0, 2000) : raw });
  }
  return out.reverse();
}
