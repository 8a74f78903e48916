/**
 * The local web console's HTTP(S) server (docs/console.md): the static pages from a fixed list,
 * the JSON API, and one Server-Sent Events stream per tab.
 *
 * Invariants:
 * - Every request's Host is one of ours or it gets 421 (DNS rebinding); every answer carries the
 *   security headers of guard.ts (a CSP without inline script).
 * - Everything under /api/ but pairing needs a live session (401); every POST needs the exact
 *   Origin and the session's CSRF token (403), and an operator session for operator actions (403).
 * - Nothing from a request names a file: static files come from STATIC, downloads by opaque id.
 * - Commands go to the agent's router through the injected CommandPort; PLC writes (operator
 *   only) to the PLC bridge through the backend's plcWrite, whose validation decides; the page
 *   has no other way to change anything.
 */
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { errorCode, errorMessage, registerCodes } from '../lib/errors.js';
import { allowedHosts, clearCookie, COOKIE, hostAllowed, originAllowed, readCookie, SECURITY_HEADERS, sessionCookie, streamOriginAllowed } from './guard.js';
import { SessionStore, sameSecret, type Role, type Session } from './sessions.js';
import { EventRing, eventHead, type StreamEvent } from './stream.js';
import { OPS_BY_ROLE, type ConsoleBackend } from './ports.js';
import type { PlcFeed } from './plc-feed.js';

/** `POST /api/plc/write`'s own code when the PLC bridge cannot be reached (docs/errors.md). */
export const CONSOLE_PLC_CODES = registerCodes('console-plc', ['bridge-unreachable'] as const);

/** URL path -> file under the static directory, with its type. Nothing else is ever read. */
export const STATIC: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/dom.js': ['dom.js', 'text/javascript; charset=utf-8'],
  '/pages.js': ['pages.js', 'text/javascript; charset=utf-8'],
  '/plc.js': ['plc.js', 'text/javascript; charset=utf-8'],
  '/charts.js': ['charts.js', 'text/javascript; charset=utf-8'],
  '/vendor/uPlot.esm.js': ['vendor/uPlot.esm.js', 'text/javascript; charset=utf-8'],
  '/vendor/uPlot.min.css': ['vendor/uPlot.min.css', 'text/css; charset=utf-8'],
};

export const READ_PAGES = ['health', 'alerts', 'incidents', 'updates', 'logs', 'operations', 'maintenance', 'audit', 'plc'] as const;

export interface ConsoleServerOptions {
  host: string;
  port: number;
  hostnames: readonly string[];
  tls: { cert: string; key: string } | null;
  idleMs: number;
  absoluteMs: number;
  staticDir: string;
  backend: ConsoleBackend;
  plc?: PlcFeed | undefined;
  sessions: SessionStore;
  ring: EventRing;
  clock: Clock;
  logger: Logger;
  /** How often the status is sampled for the stream while a browser listens. */
  statusEveryMs?: number;
}

const MAX_BODY = 64 * 1024;
/** How long a download id (and its file) lasts. */
const DOWNLOAD_MS = 10 * 60_000;
/** Bytes a stream may hold unsent before the browser is cut off (it resumes or gets a snapshot). */
const MAX_UNREAD = 1024 * 1024;

/** One event, its (possibly 100 kB) data written as is rather than copied into one more string. */
function writeEvent(res: ServerResponse, e: StreamEvent): void {
  res.cork();
  res.write(eventHead(e));
  res.write(e.data);
  res.write('\n\n');
  process.nextTick(() => res.uncork());
}

export class ConsoleServer {
  readonly name = 'console';
  private server: Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastComponents = '';
  private lastAlerts = '';
  private readonly hosts: Set<string>;
  /** Opaque id -> a file this process wrote, the session it is for, and when it is removed. */
  private readonly downloads = new Map<string, { path: string; label: string; expiresAt: number }>();
  private bundling: Promise<string> | undefined;
  private readonly streams = new Set<{ res: ServerResponse; session: Session; end: () => void }>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly o: ConsoleServerOptions) {
    this.hosts = allowedHosts(o.host.includes(':') ? `[${o.host}]` : o.host, o.hostnames);
  }

  /** The bound address (port 0 resolved), once started. */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: this.o.host, port: a.port } : undefined;
  }

  async start(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        this.o.logger.error({ err, url: req.url }, 'console request failed');
        if (!res.headersSent) this.json(res, 500, { error: 'internal', message: 'internal error' });
        else res.destroy();
      });
    };
    const server = this.o.tls ? createHttps({ cert: readFileSync(this.o.tls.cert), key: readFileSync(this.o.tls.key) }, handler) : createHttp(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.unsubscribe = this.o.backend.commands.onStatus((msg) => this.o.ring.publish('operation', msg));
    this.timer = setInterval(() => this.tick(), this.o.statusEveryMs ?? 2000);
    this.timer.unref();
    this.o.logger.info({ url: `${this.o.tls ? 'https' : 'http'}://${this.o.host}:${this.address()?.port ?? this.o.port}/` }, 'console listening');
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.expire(true);
    this.unsubscribe?.();
    for (const s of [...this.streams]) s.end();
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** What the stream carries on its own: status every tick, component and alert changes. */
  private tick(): void {
    this.expire();
    for (const s of [...this.streams]) if (!this.o.sessions.has(s.session)) s.end();
    this.o.sessions.flush();
    if (this.o.ring.subscribers === 0) return;
    const status = this.o.backend.status();
    this.o.ring.publish('status', status);
    const components = JSON.stringify(status.components ?? null);
    if (components !== this.lastComponents) this.o.ring.publish('component', status.components ?? null);
    this.lastComponents = components;
    const alerts = JSON.stringify(status.alerts ?? null);
    if (alerts !== this.lastAlerts) this.o.ring.publish('alert', status.alerts ?? null);
    this.lastAlerts = alerts;
    if (status.health !== undefined) this.o.ring.publish('health', status.health);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (!hostAllowed(req.headers.host, this.hosts)) return this.json(res, 421, { error: 'wrong-host', message: 'this console answers only to its configured host names' });
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && STATIC[path]) return this.file(res, STATIC[path]);
    if (!path.startsWith('/api/')) return this.json(res, 404, { error: 'not-found', message: 'no such page' });

    const tls = this.o.tls !== null;
    const post = method === 'POST';
    if (post && !originAllowed(req.headers.origin, req.headers.host, tls)) return this.json(res, 403, { error: 'foreign-origin', message: 'requests from other origins are refused' });
    if (path === '/api/pair' && post) return this.pair(req, res);

    const session = this.o.sessions.get(readCookie(req.headers.cookie, COOKIE), path !== '/api/stream');
    if (!session) return this.json(res, 401, { error: 'no-session', message: 'pair this browser first: edge-agent console pair' });
    if (post) {
      const token = req.headers['x-csrf-token'];
      if (typeof token !== 'string' || !sameSecret(token, session.csrf)) return this.json(res, 403, { error: 'csrf', message: 'missing or wrong CSRF token' });
    }

    if (method === 'GET' && path === '/api/session') return this.json(res, 200, { role: session.role, csrf: session.csrf, label: session.label });
    if (method === 'GET' && path === '/api/stream') return this.stream(req, res, session);
    if (method === 'GET' && path.startsWith('/api/data/')) {
      const page = path.slice('/api/data/'.length);
      if (!(READ_PAGES as readonly string[]).includes(page)) return this.json(res, 404, { error: 'not-found', message: 'no such data' });
      if (page === 'plc') return this.json(res, 200, this.o.plc?.snapshot() ?? null);
      return this.json(res, 200, this.o.backend.read(page, url.searchParams));
    }
    if (method === 'GET' && path.startsWith('/api/download/')) return this.download(res, session, path.slice('/api/download/'.length));
    if (post && path === '/api/logout') {
      this.o.sessions.revoke(session.label);
      res.setHeader('Set-Cookie', clearCookie(tls));
      return this.json(res, 200, { ok: true });
    }
    if (post && path === '/api/command') return this.command(req, res, session);
    if (post && path === '/api/bundle') return this.bundle(res, session);
    if (post && path === '/api/plc/write') return this.plcWrite(req, res, session);
    return this.json(res, 404, { error: 'not-found', message: 'no such endpoint' });
  }

  private async pair(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.body(req);
    const code = typeof body?.code === 'string' ? body.code : '';
    const client = req.socket.remoteAddress ?? 'unknown';
    const r = this.o.sessions.redeem(code, client);
    if (!r.ok) {
      this.o.logger.warn({ client, reason: r.reason }, 'console pairing refused');
      if (r.reason === 'rate-limited') res.setHeader('Retry-After', '60');
      return this.json(res, r.reason === 'rate-limited' ? 429 : 401, {
        error: r.reason,
        message: r.reason === 'rate-limited' ? 'too many attempts: wait a minute' : 'wrong or expired pairing code',
      });
    }
    const s = r.session;
    this.o.backend.audit({ actor: `console:${s.label}`, action: 'console-pair', target: s.role, outcome: 'successful' });
    res.setHeader('Set-Cookie', sessionCookie(r.id, this.o.tls !== null, Math.floor(this.o.absoluteMs / 1000)));
    this.json(res, 200, { role: s.role, csrf: s.csrf, label: s.label });
  }

  private stream(req: IncomingMessage, res: ServerResponse, session: Session): void {
    const site = req.headers['sec-fetch-site'];
    if (!streamOriginAllowed(req.headers.origin, typeof site === 'string' ? site : undefined, req.headers.host, this.o.tls !== null)) {
      return this.json(res, 403, { error: 'foreign-origin', message: 'the stream is for this origin only' });
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write('retry: 1000\n\n');
    const last = req.headers['last-event-id'];
    const missed = this.o.ring.since(typeof last === 'string' ? last : undefined);
    if (missed) for (const e of missed) writeEvent(res, e);
    else {
      // The bridge's state, not its 2,000 values: the PLC page fetches those when it opens (and
      // again after a snapshot), so the other pages do not load them.
      const snap = { status: this.o.backend.status(), plc: this.o.plc?.brief() ?? null, role: session.role };
      writeEvent(res, { id: this.o.ring.lastId(), name: 'snapshot', data: JSON.stringify(snap) });
    }
    // Everything the stream holds is released at once when it ends, by either side: a write
    // after end would be an unhandled 'error' on the response.
    const end = (): void => {
      off();
      clearInterval(ping);
      this.streams.delete(entry);
      if (!res.writableEnded) res.end();
    };
    const entry = { res, session, end };
    this.streams.add(entry);
    const off = this.o.ring.subscribe((e) => {
      // A browser that does not read is cut off rather than buffered without end; it resumes.
      if (res.writableLength > MAX_UNREAD) res.destroy();
      else if (!res.writableEnded) writeEvent(res, e);
    });
    const ping = setInterval(() => {
      if (!res.writableEnded) res.write(': ping\n\n');
    }, 15_000);
    res.on('close', end);
    res.on('error', (err) => this.o.logger.debug({ err }, 'console stream error'));
  }

  private async command(req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
    const body = await this.body(req);
    const op = typeof body?.op === 'string' ? body.op : '';
    const params = body?.params !== null && typeof body?.params === 'object' && !Array.isArray(body.params) ? (body.params as Record<string, unknown>) : {};
    if (!OPS_BY_ROLE[session.role].includes(op)) {
      const known = OPS_BY_ROLE.operator.includes(op);
      return this.json(res, known ? 403 : 400, { error: known ? 'forbidden' : 'unknown-op', message: known ? `${op} needs an operator session` : `no operation ${JSON.stringify(op)} from the console` });
    }
    const { id } = this.o.backend.commands.submit(op, params, { actor: `console:${session.label}`, origin: 'console' });
    this.json(res, 202, { id });
  }

  /** A PLC write: operator only; its checks are the bridge's, its answer the terminal status with the read-back. */
  private async plcWrite(req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
    if (session.role !== 'operator') return this.json(res, 403, { error: 'forbidden', message: 'PLC writes need an operator session' });
    if (!this.o.backend.plcWrite) return this.json(res, 404, { error: 'not-found', message: 'no PLC bridge is configured' });
    const body = await this.body(req);
    const device = body?.device;
    const tags = body?.tags;
    if (typeof device !== 'string' || tags === null || typeof tags !== 'object' || Array.isArray(tags)) {
      return this.json(res, 400, { error: 'invalid-params', message: 'expected {device, tags: {TAG: value}}' });
    }
    let answer: Record<string, unknown>;
    try {
      answer = await this.o.backend.plcWrite(device, tags as Record<string, unknown>, `console:${session.label}`);
    } catch (err) {
      this.o.logger.warn({ err, device }, 'console: PLC write not delivered to the bridge');
      return this.json(res, 503, { error: errorCode(err) ?? 'bridge-unreachable', message: `the PLC bridge did not take the write: ${errorMessage(err)}` });
    }
    this.json(res, 200, answer);
  }

  /**
   * A support bundle for an operator session: made by the agent (its diagnostics suite, secrets
   * redacted), kept under a name of the agent's choosing, and handed out by a random id that only
   * this session can use, for 10 minutes; then the file is removed. Operator only: a bundle is a
   * copy of the gateway's configuration, logs, audit trail and history that leaves the gateway,
   * and redaction is by key and known secret values, not a guarantee about every log line.
   * Bundles requested while one is being made share it.
   */
  private async bundle(res: ServerResponse, session: Session): Promise<void> {
    if (session.role !== 'operator') return this.json(res, 403, { error: 'forbidden', message: 'a support bundle needs an operator session' });
    const backend = this.o.backend;
    if (!backend.supportBundle) return this.json(res, 404, { error: 'not-found', message: 'support bundles are not available' });
    this.bundling ??= backend.supportBundle().finally(() => (this.bundling = undefined));
    let path: string;
    try {
      path = await this.bundling;
    } catch (err) {
      this.o.backend.audit({ actor: `console:${session.label}`, action: 'support-bundle', outcome: 'failed' });
      return this.json(res, 500, { error: 'bundle-failed', message: `cannot make the support bundle: ${errorMessage(err)}` });
    }
    this.expire();
    const id = randomBytes(16).toString('base64url');
    this.downloads.set(id, { path, label: session.label, expiresAt: this.o.clock.now() + DOWNLOAD_MS });
    this.o.backend.audit({ actor: `console:${session.label}`, action: 'support-bundle', outcome: 'successful' });
    this.json(res, 200, { id });
  }

  /** Forgets expired downloads and removes their files (a file two ids share goes with the last). */
  private expire(all = false): void {
    const now = this.o.clock.now();
    for (const [k, d] of this.downloads) {
      if (!all && d.expiresAt > now) continue;
      this.downloads.delete(k);
      if (![...this.downloads.values()].some((x) => x.path === d.path)) rmSync(d.path, { force: true });
    }
  }

  private download(res: ServerResponse, session: Session, id: string): void {
    this.expire();
    const d = this.downloads.get(id);
    if (!d || d.label !== session.label) return this.json(res, 404, { error: 'not-found', message: 'no such download (they last 10 minutes)' });
    let size: number;
    try {
      size = statSync(d.path).size;
    } catch {
      return this.json(res, 404, { error: 'not-found', message: 'the file of this download is gone' });
    }
    res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': size, 'Content-Disposition': 'attachment; filename="support-bundle.tar.gz"' });
    createReadStream(d.path).pipe(res);
  }

  private file(res: ServerResponse, [name, type]: [string, string]): void {
    let data: Buffer;
    try {
      data = readFileSync(join(this.o.staticDir, name));
    } catch (err) {
      this.o.logger.error({ err: errorMessage(err), code: errorCode(err) }, 'console static file missing');
      return this.json(res, 404, { error: 'not-found', message: 'file missing from this release' });
    }
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': data.length });
    res.end(data);
  }

  private async body(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > MAX_BODY) return undefined;
      chunks.push(c);
    }
    try {
      const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}

export type { Role };
