/**
 * Liveness probes. Each answers one question, bounded by its timeout: does the component answer?
 * None of them looks past the component itself (a PLC, the broker, the cloud): function is not
 * liveness, and a component is only restarted when it is itself dead or hung.
 *
 * - heartbeat: lib/rpc.ts `ping` on a unix socket. Answered from the component's event loop, so a
 *   process that is alive but stuck (or SIGSTOPped) does not answer, where a TCP connect still
 *   would (the kernel completes the handshake for a stopped process).
 * - tcp: a connection to host:port is accepted.
 * - http: GET url answers with a status below 500.
 * - process: only whether the process is alive, which the supervisor checks for every kind.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createConnection } from 'node:net';
import { errorMessage } from '../lib/errors.js';
import { rpcRequest } from '../lib/rpc.js';

export type ProbeSpec = { kind: 'process' } | { kind: 'heartbeat'; socket: string } | { kind: 'tcp'; host: string; port: number } | { kind: 'http'; url: string };

export interface ProbeResult {
  ok: boolean;
  /** Why it failed, for the incident and the log. */
  detail?: string;
  /** The pid a heartbeat reported (`ping` -> {pid}), to find a component started by someone else. */
  pid?: number;
  /** The component says itself that it is hung (in-process parts): no deadline to wait for. */
  hung?: boolean;
}

export type Probe = (timeoutMs: number) => Promise<ProbeResult>;

/** Builds the probe for a spec; `process` checks nothing beyond the supervisor's own alive check. */
export function probeFor(spec: ProbeSpec): Probe {
  switch (spec.kind) {
    case 'process':
      return async () => ({ ok: true });
    case 'heartbeat':
      return (t) => heartbeatProbe(spec.socket, t);
    case 'tcp':
      return (t) => tcpProbe(spec.host, spec.port, t);
    case 'http':
      return (t) => httpProbe(spec.url, t);
  }
}

/** Whether the probe can tell a hung component from a healthy one (`process` cannot). */
export function detectsHangs(spec: ProbeSpec): boolean {
  return spec.kind !== 'process';
}

export async function heartbeatProbe(socket: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const r = (await rpcRequest(socket, 'ping', {}, timeoutMs)) as { pid?: unknown } | null;
    const pid = typeof r?.pid === 'number' && Number.isInteger(r.pid) && r.pid > 0 ? r.pid : undefined;
    return pid === undefined ? { ok: true } : { ok: true, pid };
  } catch (err) {
    return { ok: false, detail: `ping on ${socket}: ${errorMessage(err)}` };
  }
}

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    const done = (r: ProbeResult): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, detail: `connect to ${host}:${port}: no answer within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => done({ ok: true }));
    sock.once('error', (err) => done({ ok: false, detail: `connect to ${host}:${port}: ${err.message}` }));
  });
}

export function httpProbe(url: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const get = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = get(url, { method: 'GET', headers: { 'user-agent': 'edge-agent-watchdog' } }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      done(status > 0 && status < 500 ? { ok: true } : { ok: false, detail: `GET ${url}: status ${status}` });
    });
    const timer = setTimeout(() => done({ ok: false, detail: `GET ${url}: no answer within ${timeoutMs} ms` }), timeoutMs);
    req.once('error', (err) => done({ ok: false, detail: `GET ${url}: ${err.message}` }));
    req.end();
  });
}
