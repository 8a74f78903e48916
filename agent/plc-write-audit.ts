/**
 * PLC writes in the agent's audit trail (docs/audit.md, docs/plc-bridge.md "The write log").
 *
 * The PLC bridge executes writes in its own process (sets from the WMS on `~/plc/{device}/set`,
 * writes from the console through its control socket) and records each one with its terminal
 * status in its own store's write log. This component pulls that log over the bridge's control
 * socket (`write-log`) from a cursor and appends one audit entry per write.
 *
 * Invariants:
 * - the cursor (`{log, seq}` in agent_info) advances in the same transaction as the entries it
 *   covers: a crash or a power cut loses both or neither, and the next pull appends them again
 *   from the old cursor, so each write is recorded once;
 * - nothing is lost while the agent is down: the bridge keeps its log (bounded at
 *   WRITE_LOG_MAX rows); the oldest rows it dropped before they were pulled are recorded as one
 *   `plc-write-gap` entry with the missing range, never passed over silently;
 * - a bridge store made anew is a new log (another `log` id): the cursor starts again at 0 and a
 *   `plc-write-log-reset` entry says so;
 * - pulls never overlap (one at a time; a request during one runs once it ends, so what the
 *   bridge logged before a request is in the trail when it resolves).
 */
import { randomBytes } from 'node:crypto';
import type { AuditInput, AuditLog } from '../core/audit.js';
import { readAgentInfo, writeAgentInfo } from '../core/agent-info.js';
import type { Component } from '../core/ports.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { rpcRequest } from '../lib/rpc.js';
import type { Db } from '../lib/sqlite.js';
import type { WriteLogPage, WriteRecord } from '../plc-bridge/store.js';

const PAGE = 500;
const EVERY_MS = 2000;

export interface Cursor {
  log: string;
  seq: number;
}

/** A write's audit entry: who asked, on which device, the requested values, how it ended. Pure. */
export function writeAudit(r: WriteRecord): AuditInput {
  const code = r.reason?.code;
  const readBack = r.result?.readBack;
  return {
    actor: r.origin,
    action: 'plc-write',
    target: r.device,
    outcome: code ? `${r.status}/${code}` : r.status,
    // The values are process values (setpoints, coils), not secrets: who set what is the point.
    details: { id: r.id, tags: r.tags, ...(readBack !== undefined ? { readBack } : {}), bridgeSeq: r.seq, bridgeAt: r.at, ...(r.reason?.message ? { message: r.reason.message } : {}) },
  };
}

/**
 * The entries for one page of the bridge's log read from `cursor`, and the cursor after them. Pure.
 * `page.first` above the cursor's next seq means the bridge dropped rows before they were read.
 */
export function entriesFor(cursor: Cursor | undefined, page: WriteLogPage): { entries: AuditInput[]; next: Cursor } {
  if (cursor && cursor.log !== page.log) {
    // The page was read from the old log's seq: read the new log again from its start.
    return {
      entries: [{ actor: 'agent', action: 'plc-write-log-reset', target: 'plc-bridge', outcome: 'new-log', details: { previousLog: cursor.log, log: page.log, previousSeq: cursor.seq } }],
      next: { log: page.log, seq: 0 },
    };
  }
  const entries: AuditInput[] = [];
  const from = cursor?.seq ?? 0;
  const firstGot = page.records[0]?.seq;
  if (firstGot !== undefined && firstGot > from + 1) {
    entries.push({ actor: 'agent', action: 'plc-write-gap', target: 'plc-bridge', outcome: 'lost', details: { log: page.log, fromSeq: from + 1, toSeq: firstGot - 1 } });
  }
  let seq = from;
  for (const r of page.records) {
    entries.push(writeAudit(r));
    seq = r.seq;
  }
  return { entries, next: { log: page.log, seq } };
}

export interface PlcWriteAuditOptions {
  /** The bridge's control socket. */
  socket: string;
  /** The audit log on the command path's connection, and that connection. */
  log: AuditLog;
  db: Db;
  clock: Clock;
  logger: Logger;
  everyMs?: number;
}

export class PlcWriteAudit implements Component {
  readonly name = 'plc-write-audit';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private stopped = false;
  private failing = false;

  constructor(private readonly o: PlcWriteAuditOptions) {}

  async start(): Promise<void> {
    this.stopped = false;
    this.timer = this.o.clock.setInterval(() => void this.pull(), this.o.everyMs ?? EVERY_MS);
    void this.pull();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.o.clock.clearInterval(this.timer);
    this.timer = undefined;
    await this.next;
    await this.running;
  }

  /**
   * Pulls what the bridge logged since the cursor; resolves once a pull that started after this
   * call has ended (what the bridge logged before the call is in the trail, or the bridge did not answer).
   */
  pull(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (!this.running) {
      this.running = this.drain()
        .catch((err: unknown) => this.o.logger.warn({ err }, 'recording PLC writes in the audit trail failed; tried again at the next pull'))
        .finally(() => (this.running = undefined));
      return this.running;
    }
    // One pull runs: the next one starts when it ends, shared by every call meanwhile.
    this.next ??= this.running.then(() => {
      this.next = undefined;
      return this.pull();
    });
    return this.next;
  }

  /**
   * A write from the console: to the bridge's control socket with the session as its origin;
   * resolves with its terminal status (with the read-back), once its audit entry is in the trail.
   */
  async write(device: string, tags: Record<string, unknown>, actor: string): Promise<Record<string, unknown>> {
    const id = `console-${Date.now()}-${randomBytes(4).toString('hex')}`;
    const answer = (await rpcRequest(this.o.socket, 'write', { id, device, tags, origin: actor }, 30_000)) as Record<string, unknown>;
    await this.pull();
    return answer;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const cursor = this.cursor();
      let page: WriteLogPage;
      try {
        page = (await rpcRequest(this.o.socket, 'write-log', { after: cursor?.seq ?? 0, limit: PAGE }, 5000)) as WriteLogPage;
      } catch (err) {
        // The bridge may be stopped or handing over: its log waits for the next pull.
        if (!this.failing) this.o.logger.debug({ err }, 'the PLC bridge did not answer for its write log; asking again later');
        this.failing = true;
        return;
      }
      this.failing = false;
      if (!page || typeof page.log !== 'string' || !Array.isArray(page.records)) return;
      const { entries, next } = entriesFor(cursor, page);
      if (entries.length === 0 && cursor?.log === page.log) return;
      this.o.db.transaction(() => {
        for (const e of entries) this.o.log.append(e);
        writeAgentInfo(this.o.db, { plcWriteCursor: JSON.stringify(next) });
      })();
      // After a reset the new log is read again from its start; otherwise on while pages are full.
      const reset = cursor !== undefined && cursor.log !== page.log;
      if (!reset && page.records.length < PAGE) return;
    }
  }

  private cursor(): Cursor | undefined {
    const raw = readAgentInfo(this.o.db).plcWriteCursor;
    if (!raw) return undefined;
    try {
      const c = JSON.parse(raw) as Partial<Cursor>;
      return typeof c.log === 'string' && typeof c.seq === 'number' ? { log: c.log, seq: c.seq } : undefined;
    } catch {
      return undefined;
    }
  }
}
