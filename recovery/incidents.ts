/**
 * Incidents and the watchdog's persisted state, in the agent's store (domain `recovery`).
 *
 * - `incidents`: one row per failure, escalation, restore or requested restart: component, cause,
 *   exit code or signal, the last lines of the component's log (bounded, secrets masked), what
 *   was done, and once the component is healthy again resolvedAt and recoveryMs.
 * - `recovery_state`: the policy state of each component (recovery/policy.ts), written before
 *   each action, so an agent restart does not forget a crash loop.
 *
 * Read-only use (`edge-agent incidents`, `status` with the daemon down) goes through the same
 * class on a read-only handle; `tableExists` lets it say "none yet" for a store that predates
 * this domain.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';
import { parseState, type PolicyState } from './policy.js';

export const RECOVERY_MIGRATIONS: MigrationSet = {
  domain: 'recovery',
  migrations: [
    {
      version: 1,
      up: `
        CREATE TABLE incidents (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          at INTEGER NOT NULL,
          component TEXT NOT NULL,
          cause TEXT NOT NULL,
          exitCode INTEGER,
          signal TEXT,
          lastLog TEXT NOT NULL DEFAULT '[]',
          action TEXT NOT NULL,
          level INTEGER NOT NULL DEFAULT 0,
          detail TEXT,
          recoveryMs INTEGER,
          resolvedAt INTEGER
        );
        CREATE INDEX incidents_at ON incidents(at);
        CREATE INDEX incidents_open ON incidents(component, resolvedAt);
        CREATE TABLE recovery_state (
          component TEXT PRIMARY KEY,
          state TEXT NOT NULL,
          updatedAt INTEGER NOT NULL
        );`,
    },
  ],
};

export interface IncidentInput {
  at: number;
  component: string;
  cause: string;
  exitCode?: number | undefined;
  signal?: string | undefined;
  lastLog?: string[];
  action: string;
  level?: number;
  detail?: string | undefined;
}

export interface Incident {
  id: number;
  at: string;
  component: string;
  cause: string;
  exitCode: number | null;
  signal: string | null;
  lastLog: string[];
  action: string;
  level: number;
  detail: string | null;
  recoveryMs: number | null;
  resolvedAt: string | null;
}

interface Row {
  id: number;
  at: number;
  component: string;
  cause: string;
  exitCode: number | null;
  signal: string | null;
  lastLog: string;
  action: string;
  level: number;
  detail: string | null;
  recoveryMs: number | null;
  resolvedAt: number | null;
}

function toIncident(r: Row): Incident {
  let lastLog: string[] = [];
  try {
    const v = JSON.parse(r.lastLog) as unknown;
    if (Array.isArray(v)) lastLog = v.map(String);
  } catch {
    lastLog = [];
  }
  return {
    id: r.id,
    at: new Date(r.at).toISOString(),
    component: r.component,
    cause: r.cause,
    exitCode: r.exitCode,
    signal: r.signal,
    lastLog,
    action: r.action,
    level: r.level,
    detail: r.detail,
    recoveryMs: r.recoveryMs,
    resolvedAt: r.resolvedAt === null ? null : new Date(r.resolvedAt).toISOString(),
  };
}

export function tableExists(db: Db, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

export class IncidentStore {
  constructor(private readonly db: Db) {}

  /** Whether the store has the tables (false for a read-only store the agent made before them). */
  available(): boolean {
    return tableExists(this.db, 'incidents');
  }

  record(i: IncidentInput): number {
    const r = this.db
      .prepare('INSERT INTO incidents(at, component, cause, exitCode, signal, lastLog, action, level, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(i.at, i.component, i.cause, i.exitCode ?? null, i.signal ?? null, JSON.stringify(i.lastLog ?? []), i.action, i.level ?? 0, i.detail ?? null);
    return Number(r.lastInsertRowid);
  }

  /** Appends a note to an incident's detail (a repair procedure started for it, ...). */
  note(id: number, text: string): void {
    this.db.prepare("UPDATE incidents SET detail = CASE WHEN detail IS NULL OR detail = '' THEN ? ELSE detail || '; ' || ? END WHERE id = ?").run(text, text, id);
  }

  /** The component is healthy again: its open incidents get resolvedAt and recoveryMs. Returns them. */
  resolve(component: string, at: number): Incident[] {
    return this.db.transaction(() => {
      const open = this.db.prepare('SELECT * FROM incidents WHERE component = ? AND resolvedAt IS NULL ORDER BY id').all(component) as Row[];
      const upd = this.db.prepare('UPDATE incidents SET resolvedAt = ?, recoveryMs = ? WHERE id = ?');
      for (const r of open) {
        upd.run(at, Math.max(0, at - r.at), r.id);
        r.resolvedAt = at;
        r.recoveryMs = Math.max(0, at - r.at);
      }
      return open.map(toIncident);
    })();
  }

  /** Newest first. */
  list(q: { since?: number; component?: string; limit?: number } = {}): Incident[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.since !== undefined) {
      where.push('at >= ?');
      args.push(q.since);
    }
    if (q.component !== undefined) {
      where.push('component = ?');
      args.push(q.component);
    }
    const sql = `SELECT * FROM incidents ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit ?? 100) as Row[]).map(toIncident);
  }

  /** Incidents older than `before` are deleted; returns how many. */
  prune(before: number): number {
    return this.db.prepare('DELETE FROM incidents WHERE at < ?').run(before).changes;
  }

  saveState(component: string, s: PolicyState, now: number): void {
    this.db
      .prepare('INSERT INTO recovery_state(component, state, updatedAt) VALUES (?, ?, ?) ON CONFLICT(component) DO UPDATE SET state = excluded.state, updatedAt = excluded.updatedAt')
      .run(component, JSON.stringify(s), now);
  }

  loadState(component: string): PolicyState | undefined {
    const r = this.db.prepare('SELECT state FROM recovery_state WHERE component = ?').get(component) as { state: string } | undefined;
    if (!r) return undefined;
    try {
      return parseState(JSON.parse(r.state));
    } catch {
      return undefined;
    }
  }

  allStates(): { component: string; state: PolicyState; updatedAt: number }[] {
    if (!tableExists(this.db, 'recovery_state')) return [];
    const rows = this.db.prepare('SELECT component, state, updatedAt FROM recovery_state ORDER BY component').all() as { component: string; state: string; updatedAt: number }[];
    return rows.flatMap((r) => {
      try {
        const s = parseState(JSON.parse(r.state));
        return s ? [{ component: r.component, state: s, updatedAt: r.updatedAt }] : [];
      } catch {
        return [];
      }
    });
  }
}
