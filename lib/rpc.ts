/**
 * A local JSON-lines RPC over a unix stream socket: one JSON request per line, `{method,
 * params?}`, one JSON answer per line, `{ok: true, result}` or `{ok: false, error: {code,
 * message}}`. The agent's admin socket and the PLC bridge's control socket both speak it. Access
 * is the socket file's mode (0660): only local users in its group reach it.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from './log.js';
import { EdgeError, errorCode, errorMessage, registerCodes } from './errors.js';

export const RPC_CODES = registerCodes('rpc', ['already-running', 'rpc-timeout', 'unknown-method', 'invalid-request', 'internal'] as const);

export type RpcMethod = (params: Record<string, unknown>) => unknown;

const MAX_REQUEST_BYTES = 64 * 1024;

export class RpcServer {
  readonly name: string;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: { name?: string; path: string; logger: Logger; methods: Record<string, RpcMethod> }) {
    this.name = opts.name ?? 'rpc';
  }

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
    server.on('error', (err) => this.opts.logger.error({ err }, 'socket error'));
    this.server = server;
    this.opts.logger.info({ path: this.opts.path }, 'socket listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Stops accepting connections and removes the socket file, but keeps the open connections
   * (a handover answers its last request after giving the path up to its successor).
   */
  async unlisten(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    // close()'s callback waits for the open connections, which is exactly what must go on here.
    server?.close();
    try {
      unlinkSync(this.opts.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await Promise.resolve();
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
export function socketAlive(path: string): Promise<boolean> {
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
  if (await socketAlive(path)) throw new EdgeError('already-running', `another process is listening on ${path}`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The CLI side: one request, one answer; rejects when no daemon listens. */
export function rpcRequest(path: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 5000, timeoutCode = 'rpc-timeout'): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new EdgeError(timeoutCode, `no answer on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ method, params }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      let res: { ok?: unknown; result?: unknown; error?: { code?: string; message?: string } };
      try {
        res = JSON.parse(buf.slice(0, nl)) as typeof res;
      } catch {
        // A peer that answers garbage must not throw in our data handler (it would crash us).
        reject(new EdgeError('invalid-request', `the answer on ${path} is not JSON`));
        return;
      }
      if (res.ok === true) resolve(res.result);
      else reject(new EdgeError(res.error?.code ?? 'internal', res.error?.message ?? 'request failed'));
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // The peer went away without answering (it exited): no need to wait for the timeout. A
    // promise settles once, so this is a no-op after an answer.
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new EdgeError('internal', `the connection on ${path} closed before an answer to ${method}`));
    });
  });
}
