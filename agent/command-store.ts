/**
 * Commands the WMS sent, with their latest status, kept for de-duplication by id across restarts
 * and for resuming an operation a previous process left unfinished.
 *
 * INVARIANTS
 * - A status is written here and queued in the outbox in one transaction, before the action it
 *   announces; so after a power cut the WMS either got the status or will get it.
 * - A terminal status is final: update() refuses any status for a command that has one.
 * - Secret parameters are never written: the router stores what the operation's redactParams
 *   leaves (`redacted` = 1) and holds the rest in memory for the run. A rejected command's
 *   parameters are not stored at all.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';
import type { CommandStatus, Origin, Priority } from '../core/ports.js';

export const COMMAND_MIGRATIONS: MigrationSet = {
  domain: 'commands',
  migrations: [
    {
      version: 1,
      up: `CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        op TEXT NOT NULL,
        status TEXT NOT NULL,
        params TEXT,
        data TEXT,
        last_message TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        expires_at INTEGER
      );
      CREATE INDEX commands_status ON commands(status);
      CREATE INDEX commands_updated ON commands(updated_at);`,
    },
    {
      // 1: secret parameters were not kept in this row; a restart cannot run the command again.
      version: 2,
      up: 'ALTER TABLE commands ADD COLUMN redacted INTEGER NOT NULL DEFAULT 0',
    },
    {
      // 2: every command came from the WMS and exclusive ones were refused while one ran; now
      // they wait by priority (kept for the queue's order after a restart) and may come from
      // the CLI, the console, a schedule or the watchdog (origin: who, for reports and audit).
      version: 3,
      up: `ALTER TABLE commands ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
      ALTER TABLE commands ADD COLUMN origin TEXT;`,
    },
  ],
};

export interface CommandRecord {
  id: string;
  op: string;
  status: CommandStatus;
  params: unknown;
  data: unknown;
  lastMessage: string;
  receivedAt: number;
  updatedAt: number;
  /** Its stored params lack secrets the operation needs (held in memory by the process that accepted it). */
  redacted: boolean;
  priority: Priority;
  origin: Origin;
}

export const FINAL_STATUSES: readonly CommandStatus[] = ['successful', 'failed', 'cancelled', 'rejected'];

/** A new command's row, its params already serialized (so writing it cannot throw on their shape). */
export interface NewCommandRow {
  id: string;
  op: string;
  status: CommandStatus;
  /** JSON text, or null. */
  paramsJson: string | null;
  redacted: boolean;
  lastMessage: string;
  now: number;
  expiresAt: number | undefined;
  /** Default `normal`. */
  priority?: Priority;
  /** Default: the WMS (`wms:{id}`). */
  origin?: Origin;
}

interface RawRow {
  id: string;
  op: string;
  status: CommandStatus;
  params: string | null;
  data: string | null;
  last_message: string;
  received_at: number;
  updated_at: number;
  redacted: number | null;
  priority: string | null;
  origin: string | null;
}

function fromRow(r: RawRow): CommandRecord {
  return {
    id: r.id,
    op: r.op,
    status: r.status,
    params: r.params === null ? undefined : (JSON.parse(r.params) as unknown),
    data: r.data === null ? undefined : (JSON.parse(r.data) as unknown),
    lastMessage: r.last_message,
    receivedAt: r.received_at,
    updatedAt: r.updated_at,
    redacted: r.redacted === 1,
    priority: r.priority === 'low' || r.priority === 'high' ? r.priority : 'normal',
    origin: r.origin ? (JSON.parse(r.origin) as Origin) : { trigger: 'wms', actor: `wms:${r.id}` },
  };
}

export class CommandStore {
  private readonly stmts;

  constructor(private readonly db: Db) {
    this.stmts = {
      get: db.prepare<[string], RawRow>('SELECT * FROM commands WHERE id = ?'),
      insert: db.prepare(
        'INSERT INTO commands(id, op, status, params, redacted, last_message, received_at, updated_at, expires_at, priority, origin) VALUES (@id, @op, @status, @params, @redacted, @last, @now, @now, @expires, @priority, @origin)',
      ),
      update: db.prepare(
        "UPDATE commands SET status = @status, last_message = @last, updated_at = @now WHERE id = @id AND status NOT IN ('successful', 'failed', 'cancelled', 'rejected')",
      ),
      probe: db.prepare("INSERT INTO commands(id, op, status, last_message, received_at, updated_at) VALUES ('~store-probe', '~probe', 'rejected', '', 0, 0)"),
      unprobe: db.prepare("DELETE FROM commands WHERE id = '~store-probe'"),
      saveData: db.prepare('UPDATE commands SET data = ? WHERE id = ?'),
      unfinished: db.prepare<[], RawRow>("SELECT * FROM commands WHERE status IN ('accepted', 'executing') ORDER BY received_at"),
      recent: db.prepare<[number], RawRow>('SELECT * FROM commands ORDER BY updated_at DESC LIMIT ?'),
      prune: db.prepare("DELETE FROM commands WHERE updated_at < ? AND status NOT IN ('accepted', 'executing')"),
      prunable: db.prepare<[number], { id: string }>("SELECT id FROM commands WHERE updated_at < ? AND status NOT IN ('accepted', 'executing')"),
    };
  }

  get(id: string): CommandRecord | undefined {
    const r = this.stmts.get.get(id);
    return r ? fromRow(r) : undefined;
  }

  insert(rec: { id: string; op: string; status: CommandStatus; params: unknown; lastMessage: string; now: number; expiresAt: number | undefined }): void {
    this.insertRow({ ...rec, paramsJson: rec.params === undefined ? null : JSON.stringify(rec.params), redacted: false });
  }

  insertRow(rec: NewCommandRow): void {
    this.stmts.insert.run({
      id: rec.id,
      op: rec.op,
      status: rec.status,
      params: rec.paramsJson,
      redacted: rec.redacted ? 1 : 0,
      last: rec.lastMessage,
      now: rec.now,
      expires: rec.expiresAt ?? null,
      priority: rec.priority ?? 'normal',
      origin: rec.origin && rec.origin.trigger !== 'wms' ? JSON.stringify(rec.origin) : null,
    });
  }

  /** Sets a command's status unless it already has a terminal one; false when refused (or unknown). */
  update(id: string, status: CommandStatus, lastMessage: string, now: number): boolean {
    return this.stmts.update.run({ id, status, last: lastMessage, now }).changes === 1;
  }

  /** A real write that changes nothing, in one transaction: whether the store can commit now. Throws when it cannot. */
  probeWrite(): void {
    this.db.transaction(() => {
      this.stmts.probe.run();
      this.stmts.unprobe.run();
    })();
  }

  saveData(id: string, data: unknown): void {
    this.stmts.saveData.run(JSON.stringify(data ?? null), id);
  }

  unfinished(): CommandRecord[] {
    return this.stmts.unfinished.all().map(fromRow);
  }

  recent(limit: number): CommandRecord[] {
    return this.stmts.recent.all(limit).map(fromRow);
  }

  /** Forgets finished commands older than `before` (ms epoch); returns how many. */
  prune(before: number): number {
    return this.stmts.prune.run(before).changes;
  }

  /** The ids prune(before) would forget (call both in one transaction). */
  prunableIds(before: number): string[] {
    return this.stmts.prunable.all(before).map((r) => r.id);
  }
}
