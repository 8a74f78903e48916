/**
 * The maintenance domain's typed errors (CONTRACT.md section 6). The code is what the WMS sees
 * in `reason.code` when a run is refused, and what `edge-agent maintenance` prints; each is in
 * docs/errors.md. Imports nothing heavy, so the composition root can register the codes early.
 */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const MAINTENANCE_CODES = registerCodes('maintenance', [
  'unknown-procedure',
  'invalid-procedure',
  'unsafe-procedure',
  'invalid-params',
  'procedures-unreadable',
  // Admission of the other operations (rejected, nothing changed).
  'outside-window',
  'unknown-window',
  'not-running',
  'not-waiting',
  'not-pausable',
  // How a run ended (a failed command's reason.code, the report's reason).
  'step-failed',
  'step-timeout',
  'timeout',
  'rolled-back',
  'rollback-failed',
  'prerequisites-failed',
  'success-criteria',
  'action-unavailable',
] as const);
export type MaintenanceCode = (typeof MAINTENANCE_CODES)[number];

/** One thing wrong with a procedure file or a run's parameters: where (dotted key path) and what. */
export interface Problem {
  /** The file, or undefined for a run's parameters. */
  file?: string | undefined;
  /** Dotted key path (`steps[2].argv[0]`), `(top level)` or `(file)` for the file itself. */
  path: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file ? `${p.file}: ` : ''}${p.path}: ${p.message}`;
}

export class MaintenanceError extends EdgeError<MaintenanceCode> {
  constructor(
    code: MaintenanceCode,
    message: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(code, message, problems.length > 0 ? { details: { problems } } : undefined);
  }
}
