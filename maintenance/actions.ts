/**
 * The built-in actions a procedure's `action` step may name (CONTRACT.md section 6): each with
 * its parameters (`with`), whether it changes anything (a dry run reports the side-effecting ones
 * `would-run`) and what it does. The declarations live here so that validation (validate.ts) and
 * the docs name the same set; the implementations are injected by the composition root
 * (agent/maintenance-wiring.ts), since they call into recovery/, health/ and the PLC bridge,
 * which maintenance/ does not import.
 *
 * INVARIANTS
 * - A procedure naming an action that is not declared here, or giving it a `with` key it does
 *   not take or a value of the wrong type, is invalid (every problem listed), never run.
 * - An action declared here but not implemented by this agent fails its step with
 *   `action-unavailable`; it never passes silently.
 */
import { z } from 'zod';
import type { Logger } from '../lib/log.js';

export interface ActionSpec {
  description: string;
  /** Changes something: a dry run does not run it. */
  sideEffects: boolean;
  /** Its `with`, strict. */
  with: z.ZodObject;
}

const none = z.object({}).strict();
const pct = z.number().min(0).max(100);

export const BUILTIN_ACTIONS = {
  'component-restart': {
    description: 'Restarts a supervised component through the watchdog (recorded as a requested restart). The PLC bridge is handed over instead: no data gap.',
    sideEffects: true,
    with: z.object({ component: z.string().min(1).max(64) }).strict(),
  },
  'plc-bridge-handover': {
    description: 'Hands the PLC bridge over to a fresh instance of itself (plc-bridge/handover.ts): polling and publishing go on, no seq gap; resets slow leaks.',
    sideEffects: true,
    with: none,
  },
  'files-cleanup': {
    description: "Brings the agent's own files to their bounds: old support bundles, partial downloads, quarantined files older than tempMaxAgeHours or beyond the kept number, and the log ring; reports what it removed.",
    sideEffects: true,
    with: z.object({ tempMaxAgeHours: z.number().min(0).max(8760).default(24), logMaxBytes: z.number().int().min(1024).optional() }).strict(),
  },
  'disk-space': {
    description: "The data directory's file system has at least this share of free space and free inodes.",
    sideEffects: false,
    with: z.object({ minFreePct: pct.default(10), minFreeInodesPct: pct.default(10) }).strict(),
  },
  'store-check': {
    description: "The state store's integrity: PRAGMA quick_check, or integrity_check with full: true (reads the whole file). With quietWaitSec it first waits, at most that long, for no other command to run (the check blocks the agent while it reads).",
    sideEffects: false,
    with: z.object({ full: z.boolean().default(false), quietWaitSec: z.number().int().min(0).max(86_400).default(0) }).strict(),
  },
  'store-optimize': {
    description: "PRAGMA optimize on the state store, then gives free pages back to the file system in small steps that yield to the agent (incremental vacuum), throttled so the agent with its children stays at most maxCpuPct of a core; vacuum: 'full' rebuilds the file (blocks writers while it runs); 'auto' is incremental on a store with incremental auto-vacuum, and on an older one a single full VACUUM that converts it, only when at least minFreePct of its pages are free (else skipped, said in the report).",
    sideEffects: true,
    with: z.object({ vacuum: z.enum(['none', 'incremental', 'full', 'auto']).default('incremental'), maxCpuPct: pct.default(25), minFreePct: pct.default(10) }).strict(),
  },
  'store-backup': {
    description: 'A backup of the state store now (online, page by page, the store stays usable), verified and rotated like the periodic ones.',
    sideEffects: true,
    with: none,
  },
  'store-verify-backup': {
    description: "The newest backup of the state store opens and passes quick_check.",
    sideEffects: false,
    with: none,
  },
  'store-rotate-backups': {
    description: 'Keeps the newest `keep` backups of the state store and removes the older ones.',
    sideEffects: true,
    with: z.object({ keep: z.number().int().min(1).max(100) }).strict(),
  },
  'slot-verify': {
    description: "The active slot's files against its signed manifest (changed, missing and unlisted files).",
    sideEffects: false,
    with: none,
  },
  'config-verify': {
    description: 'The configuration files against their .sha256 sidecars and their newest known-good copies, and their modes.',
    sideEffects: false,
    with: z.object({ failOnDifference: z.boolean().default(false) }).strict(),
  },
  'cert-expiry': {
    description: "The gateway's client certificate and its CA: fails when one expires within warnDays.",
    sideEffects: false,
    with: z.object({ warnDays: z.number().int().min(0).max(3650).default(30) }).strict(),
  },
  diagnostics: {
    description: 'The whole diagnostics suite (edge-agent diag); fails on a failure, and on a warning with failOnWarning.',
    sideEffects: false,
    with: z.object({ failOnWarning: z.boolean().default(false) }).strict(),
  },
  // The reviews of maintenance-weekly and -monthly (agent/maintenance-reviews.ts).
  'trend-report': {
    description: 'The health history of the last `days` summarised per component (memory, CPU, disk growth, restarts, incidents), each against the period before; a table per component in the report.',
    sideEffects: false,
    with: z.object({ days: z.number().int().min(1).max(366) }).strict(),
  },
  'security-review': {
    description: 'Modes and owners of the configuration, keys, procedure files and the data directory; fails when a secret is readable by others or a file writable by others; changes nothing.',
    sideEffects: false,
    with: none,
  },
  'restore-test': {
    description: 'Restores the newest backup of the state store and the newest known-good copy of each configuration file into a temporary directory, checks the store opens and passes integrity_check (row counts beside the live ones) and each copy matches its sha256, then removes the directory; the live files are never touched.',
    sideEffects: false,
    with: none,
  },
} as const satisfies Record<string, ActionSpec>;

export type ActionName = keyof typeof BUILTIN_ACTIONS;

export function isActionName(name: string): name is ActionName {
  return Object.hasOwn(BUILTIN_ACTIONS, name);
}

export interface ActionResult {
  ok: boolean;
  /** One line for the report. */
  message: string;
  /** Facts for the report (sizes, paths, counts); never a secret. */
  details?: Record<string, unknown>;
}

export interface ActionContext {
  runId: string;
  signal: AbortSignal;
  logger: Logger;
  /**
   * Sleeps while the run is over its CPU budget (maintenance.maxCpuPct), so a long loop (hashing,
   * counting, removing) can yield between items; resolves at once when under it, in a dry run,
   * or when the step is stopped. Cheap enough to call per item.
   */
  pace?: () => Promise<void>;
}

/** An implementation: `args` are the step's `with`, parsed by the action's schema. */
export type ActionImpl = (args: Record<string, unknown>, ctx: ActionContext) => Promise<ActionResult>;
export type ActionImpls = Partial<Record<ActionName, ActionImpl>>;

/** Problems of an action step's name and `with` (values that are whole parameter references are checked when the step runs). */
export function actionProblems(action: unknown, args: unknown, isRef: (s: string) => boolean): { key: (string | number)[]; message: string }[] {
  if (typeof action !== 'string') return [];
  if (!isActionName(action)) return [{ key: ['action'], message: `no built-in action ${JSON.stringify(action)}; there are: ${Object.keys(BUILTIN_ACTIONS).join(', ')}` }];
  if (args === undefined) return [];
  if (args === null || typeof args !== 'object' || Array.isArray(args)) return [{ key: ['with'], message: 'expected a mapping of the action\'s parameters' }];
  const shape = BUILTIN_ACTIONS[action].with.shape as Record<string, z.ZodType>;
  const out: { key: (string | number)[]; message: string }[] = [];
  for (const [k, v] of Object.entries(args)) {
    const s = shape[k];
    if (!s) {
      out.push({ key: ['with', k], message: `${action} takes ${Object.keys(shape).join(', ') || 'no parameters'}` });
      continue;
    }
    if (typeof v === 'string' && isRef(v)) continue;
    const r = s.safeParse(v);
    if (!r.success) out.push({ key: ['with', k], message: r.error.issues[0]?.message ?? 'invalid value' });
  }
  for (const [k, s] of Object.entries(shape)) {
    if (!Object.hasOwn(args, k) && !s.safeParse(undefined).success) out.push({ key: ['with', k], message: `${action} needs ${k}` });
  }
  return out;
}
