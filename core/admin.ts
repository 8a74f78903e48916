/**
 * The local admin socket between the CLI and the daemon (mode 0660): lib/rpc.ts's JSON-lines
 * protocol. Only local users in the socket's group reach it; no method runs a shell or takes a
 * path to act on.
 */
import type { Logger } from '../lib/log.js';
import { registerCodes } from '../lib/errors.js';
import { RpcServer, rpcRequest, socketAlive, type RpcMethod } from '../lib/rpc.js';

export const ADMIN_CODES = registerCodes('admin', ['already-running', 'admin-timeout', 'unknown-method', 'invalid-request', 'internal'] as const);

export type AdminMethod = RpcMethod;

export class AdminServer extends RpcServer {
  constructor(opts: { path: string; logger: Logger; methods: Record<string, AdminMethod> }) {
    super({ ...opts, name: 'admin' });
  }
}

/** Whether a live daemon answers on this socket path. */
export const adminSocketAlive = socketAlive;

/** The CLI side: one request, one answer; rejects when no daemon listens (`admin-timeout` when it does not answer). */
export function adminRequest(path: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  return rpcRequest(path, method, params, timeoutMs, 'admin-timeout');
}
