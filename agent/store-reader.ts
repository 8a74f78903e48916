/**
 * The agent's side of core/ports.ts AgentStoreReader: the diagnostics and the support bundle
 * (health/) read the outbox's depth and the command history through it, without importing the
 * agent's modules.
 */
import type { AgentStoreReader } from '../core/ports.js';
import { CommandStore } from './command-store.js';
import { readOutboxStats } from './outbox.js';

export const agentStoreReader: AgentStoreReader = {
  outboxStats: readOutboxStats,
  recentCommands: (db, limit) => new CommandStore(db).recent(limit),
};
