/**
 * For the `config` operation's tests: a WMS client that sends commands and waits for their
 * terminal status, and the agent process that answers now (an apply restarts the agent into a
 * detached replacement, so the pid is asked for, and every pid seen is stopped at the end).
 */
import type { MqttClient } from 'mqtt';
import { adminRequest } from '../../core/admin.js';
import { collect, waitFor, type Received } from './util.js';

export const TERMINAL = ['successful', 'failed', 'rejected', 'cancelled'];

export interface Res {
  id: string;
  status: string;
  reason?: { code: string; message: string; details?: { path: string; message: string }[] };
  result?: Record<string, unknown>;
  progress?: { step: string };
}

export interface Wms {
  results: Received[];
  events: Received[];
  send(op: string, id: string, params: unknown): Promise<void>;
  /** The terminal status of `id`, waited for. */
  outcome(id: string, timeoutMs?: number): Promise<Res>;
  /** Every distinct terminal status `id` got. */
  terminals(id: string): string[];
}

export async function wmsFor(client: MqttClient, gw: string): Promise<Wms> {
  const results = await collect(client, `edge/${gw}/res/+`);
  const events = await collect(client, `edge/${gw}/events`);
  const of = (id: string): Res[] => results.filter((r) => r.topic.endsWith(`/res/${id}`)).map((r) => r.payload as Res);
  return {
    results,
    events,
    send: async (op, id, params) => {
      await client.publishAsync(`edge/${gw}/cmd/${op}`, JSON.stringify({ id, params }), { qos: 1 });
    },
    outcome: async (id, timeoutMs = 60_000) => {
      await waitFor(() => of(id).some((r) => TERMINAL.includes(r.status)), { timeoutMs, what: `a terminal status for ${id} (got ${JSON.stringify(of(id).map((r) => r.status))})` });
      return of(id).find((r) => TERMINAL.includes(r.status))!;
    },
    terminals: (id) => [...new Set(of(id).filter((r) => TERMINAL.includes(r.status)).map((r) => r.status))],
  };
}

/** The pid of the agent answering on `socket`, or undefined. */
export async function agentPid(socket: string): Promise<number | undefined> {
  const s = (await adminRequest(socket, 'status', {}, 2000).catch(() => undefined)) as { pid?: number } | undefined;
  return s?.pid;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to each pid still alive, then waits for them to be gone. */
export async function stopAll(pids: Iterable<number>): Promise<void> {
  const list = [...new Set(pids)].filter(alive);
  for (const p of list) process.kill(p, 'SIGTERM');
  await waitFor(() => list.every((p) => !alive(p)), { timeoutMs: 20_000, what: `agents ${list.join(', ')} stopped` }).catch(() => {
    for (const p of list.filter(alive)) process.kill(p, 'SIGKILL');
  });
}
