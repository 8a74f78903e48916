/** The watchdog's error codes (docs/errors.md, section "recovery"). */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const RECOVERY_CODES = registerCodes('recovery', [
  'spawn-failed', // a declared command or the bridge could not be started (ENOENT, EACCES, ...)
  'systemctl-failed', // systemctl could not be run, or `systemctl restart UNIT` failed
  'unknown-component', // a restart named a component the watchdog does not supervise
] as const);
export type RecoveryCode = (typeof RECOVERY_CODES)[number];

export class RecoveryError extends EdgeError<RecoveryCode> {}
