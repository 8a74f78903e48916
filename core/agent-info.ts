/**
 * A few facts about the agent's last run, kept in the store so `edge-agent status` can say what
 * it knows when the daemon is down: version, slot, pid, when it started and stopped.
 */
import type { Db, MigrationSet } from '../lib/sqlite.js';

export const AGENT_INFO_MIGRATIONS: MigrationSet = {
  domain: 'agent',
  migrations: [{ version: 1, up: 'CREATE TABLE agent_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)' }],
};

export interface AgentInfo {
  version?: string;
  slot?: string;
  pid?: string;
  startedAt?: string;
  stoppedAt?: string;
  gatewayId?: string;
  brokerUrl?: string;
  /** The `at` of the newest boot guard fallback reported (agent/guard-report.ts). */
  guardFallbacksReported?: string;
  /** The invalid procedure files announced on ~/events, `{file: sha256}` as JSON (agent/procedure-watch.ts). */
  proceduresAnnounced?: string;
  /** How far the audit trail has read the PLC bridge's write log, `{log, seq}` as JSON (agent/plc-write-audit.ts). */
  plcWriteCursor?: string;
}

export function writeAgentInfo(db: Db, info: AgentInfo): void {
  const put = db.prepare('INSERT INTO agent_info(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
  const del = db.prepare('DELETE FROM agent_info WHERE key = ?');
  db.transaction(() => {
    for (const [k, v] of Object.entries(info)) {
      if (v === undefined) del.run(k);
      else put.run(k, String(v));
    }
  })();
}

export function readAgentInfo(db: Db): AgentInfo {
  const rows = db.prepare('SELECT key, value FROM agent_info').all() as { key: string; value: string }[];
  const info: Record<string, string> = Object.fromEntries(rows.map((r) => [r.key, r.value]));
  return info;
}
