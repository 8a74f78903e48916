/**
 * The local admin socket: a unix stream socket (mode 0660) that the CLI talks to. One JSON
 * request per line, `{method, params?}`, one JSON answer per line, `{ok: true, result}` or
 * `{ok: false, error: {code, message}}`. Only local users in the socket's group reach it; no
 * method runs a shell or takes a path to act on.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../lib/log.js';
import { EdgeError, errorCode, errorMessage, registerCodes } from '../lib/errors.js';
import type { Component } from './ports.js';

export const ADMIN_CODES = registerCodes('admin', ['already-running', 'admin-timeout', 'unknown-method', 'invalid-request', 'internal'] as const);

export type AdminMethod = (params: Record<string, unknown>) => unknown;

const MAX_REQUEST_BYTES = 64 * 1024;

export class AdminServer implements Component {
  readonly name = 'admin';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: { path: string; logger: Logger; methods: Record<string, AdminMethod> }) {}

  async start(): Promise<void> {
    await removeStaleSocket(this.opts.path);
    const server = createServer((sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.opts.path, 0o660);
    server.on('error', (err) => this.opts.logger.error({ err }, 'admin socket error'));
    this.server = server;
    this.opts.logger.info({ path: this.opts.path }, 'admin socket listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        sock.end(JSON.stringify({ ok: false, error: { code: 'invalid-request', message: 'request too large' } }) + '\n');
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.answer(line).then((out) => {
          if (!sock.destroyed) sock.write(JSON.stringify(out) + '\n');
        });
      }
    });
  }

  private async answer(line: string): Promise<unknown> {
    let req: { method?: unknown; params?: unknown };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      return { ok: false, error: { code: 'invalid-request', message: 'request is not JSON' } };
    }
    const fn = typeof req.method === 'string' && Object.hasOwn(this.opts.methods, req.method) ? this.opts.methods[req.method] : undefined;
    if (!fn) return { ok: false, error: { code: 'unknown-method', message: `unknown method ${String(req.method)}` } };
    try {
      const params = req.params && typeof req.params === 'object' ? (req.params as Record<string, unknown>) : {};
      return { ok: true, result: await fn(params) };
    } catch (err) {
      const code = errorCode(err) ?? 'internal';
      return { ok: false, error: { code, message: errorMessage(err) } };
    }
  }
}

/** Whether a live daemon answers on this socket path. */
export function adminSocketAlive(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** A socket file left by a killed daemon is removed; one a live daemon answers on is not. */
async function removeStaleSocket(path: string): Promise<void> {
  if (await adminSocketAlive(path)) throw new EdgeError('already-running', `another agent is listening on ${path}`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The CLI side: one request, one answer; rejects when no daemon listens. */
export function adminRequest(path: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new EdgeError('admin-timeout', `the agent did not answer on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ method, params }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const res = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (res.ok) resolve(res.result);
      else reject(new EdgeError(res.error?.code ?? 'internal', res.error?.message ?? 'admin request failed'));
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
