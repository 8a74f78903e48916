/**
 * The diagnostics suite's vocabulary: a report is groups of checks; a check says `ok`, `warning`
 * or `failure`, a message, and for anything but ok a recommendation a person can act on. A check
 * that does not apply (no bridge configured, not installed under ota.root) is `ok` with
 * `skipped: true`, so the three statuses keep their meaning for the exit code.
 *
 * Names are stable: a machine may key on `group` + `name` (docs/cli.md lists them).
 */
import type { AgentConfig } from '../../core/config.js';
import type { AgentStoreReader } from '../../core/ports.js';
import type { Db } from '../../lib/sqlite.js';

export type CheckStatus = 'ok' | 'warning' | 'failure';

export const GROUPS = ['configuration', 'identity', 'connectivity', 'time', 'storage', 'slots', 'components', 'plc', 'maintenance', 'logs'] as const;
export type GroupName = (typeof GROUPS)[number];

export interface CheckResult {
  name: string;
  status: CheckStatus;
  message: string;
  recommendation?: string;
  skipped?: boolean;
  /** Facts behind the verdict (sizes, ages, paths); never a secret. */
  details?: Record<string, unknown>;
}

export interface GroupReport {
  name: GroupName;
  status: CheckStatus;
  durationMs: number;
  checks: CheckResult[];
}

export interface DiagReport {
  format: 1;
  checkedAt: string;
  durationMs: number;
  /** Who ran the checks: the command line (also with the daemon down) or the daemon itself. */
  source: 'cli' | 'daemon';
  daemon: 'running' | 'not running' | 'not answering';
  gatewayId: string | undefined;
  version: string;
  overall: CheckStatus;
  /** 0 all ok, 1 warnings, 2 failures (`edge-agent diag` exits with it). */
  exitCode: 0 | 1 | 2;
  summary: { ok: number; warning: number; failure: number; skipped: number };
  groups: GroupReport[];
}

/** The TLS certificate the broker showed, for the clock check (learned by the connectivity check). */
export interface PeerCertTimes {
  notBefore: string;
  notAfter: string;
}

/** What the running daemon told us (admin `diagnostics`): status, loops, store integrity, components. */
export type LiveFacts = Record<string, unknown>;

export interface DiagContext {
  source: 'cli' | 'daemon';
  /** undefined when the configuration does not load; then only `configuration` is checked. */
  config: AgentConfig | undefined;
  /** The file read, or undefined when running on defaults. */
  configPath: string | undefined;
  configError: Error | undefined;
  now(): number;
  version: string;
  builtAt: string | undefined;
  /** The state store (read-only from the command line), or undefined when it does not exist. */
  db: Db | undefined;
  /** The agent's own tables in `db` (outbox, commands), read through the agent's code. */
  storeReader: AgentStoreReader;
  /** Why the store exists but did not open (then `db` is undefined). */
  storeError?: string;
  /** undefined when the daemon does not answer. */
  live: LiveFacts | undefined;
  daemon: DiagReport['daemon'];
  /** quick_check problems of the store ([] when sound); the daemon answers from its cache. */
  integrity(): string[] | undefined;
  /** Set by the connectivity check, awaited by the clock check. */
  brokerCert: Promise<PeerCertTimes | undefined>;
  learnBrokerCert(c: PeerCertTimes | undefined): void;
}

export type GroupCheck = (ctx: DiagContext & { config: AgentConfig }, signal: AbortSignal) => Promise<CheckResult[]>;

export const ok = (name: string, message: string, details?: Record<string, unknown>): CheckResult => ({ name, status: 'ok', message, ...(details ? { details } : {}) });

export const skipped = (name: string, message: string): CheckResult => ({ name, status: 'ok', message, skipped: true });

export const warning = (name: string, message: string, recommendation: string, details?: Record<string, unknown>): CheckResult => ({
  name,
  status: 'warning',
  message,
  recommendation,
  ...(details ? { details } : {}),
});

export const failure = (name: string, message: string, recommendation: string, details?: Record<string, unknown>): CheckResult => ({
  name,
  status: 'failure',
  message,
  recommendation,
  ...(details ? { details } : {}),
});

/** The worst of some statuses (ok < warning < failure). Pure. */
export function worst(statuses: Iterable<CheckStatus>): CheckStatus {
  let w: CheckStatus = 'ok';
  for (const s of statuses) {
    if (s === 'failure') return 'failure';
    if (s === 'warning') w = 'warning';
  }
  return w;
}

/** The exit status of `edge-agent diag`: 0 all ok, 1 warnings, 2 failures. Pure. */
export function exitCodeOf(status: CheckStatus): 0 | 1 | 2 {
  return status === 'failure' ? 2 : status === 'warning' ? 1 : 0;
}

/** Rejects with `signal.reason` once it aborts; for racing I/O that cannot be cancelled (dns.lookup). */
export function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason as Error);
    else signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
  });
}

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** "3 s", "5 min", "2 h", "4 d" */
export function humanAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(0)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}
