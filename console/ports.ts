/**
 * What the console needs of the agent, injected by the composition root (agent/main.ts through
 * agent/console-wiring.ts): console/ imports lib/ and core/ only.
 */
import type { Role } from './sessions.js';

export interface CommandMeta {
  /** The console session, e.g. `console:s-1a2b3c4d`. */
  actor: string;
  origin: 'console';
}

/** A command's status message as on `~/res/{id}`: `{id, op, status, progress?, reason?, result?}`. */
export type CommandStatusMsg = Record<string, unknown> & { id: string; status: string };

/**
 * Local submissions to the agent's command router: the same lifecycle, codes and audit as the
 * WMS's commands. Until the router offers `submit` itself, agent/console-wiring.ts adapts
 * `router.handle` to this.
 */
export interface CommandPort {
  submit(op: string, params: Record<string, unknown>, meta: CommandMeta): { id: string };
  onStatus(listener: (msg: CommandStatusMsg) => void): () => void;
}

export interface ConsoleBackend {
  /** The agent's status (`edge-agent status --json`): version, slot, uptime, broker, components, alerts. */
  status(): Record<string, unknown>;
  /** Read-only data of a page (`health`, `alerts`, `incidents`, `updates`, `logs`), from the agent's own stores. */
  read(page: string, query: URLSearchParams): unknown;
  commands: CommandPort;
  /** An entry in the audit trail (pairing, revocation, logins refused). */
  audit(entry: { actor: string; action: string; target?: string; outcome: string }): void;
  /**
   * A PLC write (operator sessions only) to the PLC bridge, whose validation decides (unknown tag,
   * read-only, wrong type, out of range): resolves with its terminal status as on `~/res/{id}`
   * (`result.readBack`), once it is in the audit trail with the session as actor. Absent without a bridge.
   */
  plcWrite?(device: string, tags: Record<string, unknown>, actor: string): Promise<Record<string, unknown>>;
  /** Writes a support bundle; resolves with the file's path (never shown to the browser). */
  supportBundle?(): Promise<string>;
}

/** Which operations each role may submit from the page. */
export const OPS_BY_ROLE: Record<Role, readonly string[]> = {
  viewer: ['diagnostics'],
  operator: ['diagnostics', 'restart', 'rollback', 'cancel', 'pause', 'resume', 'confirm', 'maintenance'],
};
