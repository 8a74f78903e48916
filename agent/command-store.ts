/**
 * Commands the WMS sent, with their latest status, kept for de-duplication by id across restarts
 * and for resuming an operation a previous process left unfinished.
 *
 * INVARIANT: a status is written here and queued in the outbox in one transaction, before the
 * action it announces; so after a power cut the WMS either got the status or will get it.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';
import type { CommandStatus } from '../core/ports.js';

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
  };
}

export class CommandStore {
  private readonly stmts;

  constructor(db: Db) {
    this.stmts = {
      get: db.prepare<[string], RawRow>('SELECT * FROM commands WHERE id = ?'),
      insert: db.prepare(
        'INSERT INTO commands(id, op, status, params, last_message, received_at, updated_at, expires_at) VALUES (@id, @op, @status, @params, @last, @now, @now, @expires)',
      ),
      update: db.prepare('UPDATE commands SET status = @status, last_message = @last, updated_at = @now WHERE id = @id'),
      saveData: db.prepare('UPDATE commands SET data = ? WHERE id = ?'),
      unfinished: db.prepare<[], RawRow>("SELECT * FROM commands WHERE status IN ('accepted', 'executing') ORDER BY received_at"),
      recent: db.prepare<[number], RawRow>('SELECT * FROM commands ORDER BY updated_at DESC LIMIT ?'),
      prune: db.prepare("DELETE FROM commands WHERE updated_at < ? AND status NOT IN ('accepted', 'executing')"),
    };
  }

  get(id: string): CommandRecord | undefined {
    const r = this.stmts.get.get(id);
    return r ? fromRow(r) : undefined;
  }

  insert(rec: { id: string; op: string; status: CommandStatus; params: unknown; lastMessage: string; now: number; expiresAt: number | undefined }): void {
    this.stmts.insert.run({
      id: rec.id,
      op: rec.op,
      status: rec.status,
      params: rec.params === undefined ? null : JSON.stringify(rec.params),
      last: rec.lastMessage,
      now: rec.now,
      expires: rec.expiresAt ?? null,
    });
  }

  update(id: string, status: CommandStatus, lastMessage: string, now: number): void {
    this.stmts.update.run({ id, status, last: lastMessage, now });
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
}
