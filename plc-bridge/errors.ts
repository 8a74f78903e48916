/**
 * The PLC bridge's error codes: one domain, `plc`, documented in docs/errors.md under `## plc`.
 * A code is what the WMS sees in `reason.code` of a `set` answer and in a value's `reason`, so
 * codes never change meaning. The four config codes mean what the agent's do, for the bridge's
 * own file (the bridge imports nothing from agent/).
 */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const PLC_CODES = registerCodes('plc', [
  // A `set` rejected before the PLC is touched.
  'unknown-device',
  'unknown-tag',
  'read-only',
  'wrong-type',
  'out-of-range',
  'expired',
  'invalid-json',
  'invalid-params',
  'too-large',
  'busy',
  // A `set` that reached the PLC.
  'write-failed',
  'write-timeout',
  'readback-mismatch',
  // A `set` that a previous bridge process claimed and never finished (it stopped).
  'interrupted',
  // Reads and the link; also a value's `reason` when it is stale or bad.
  'timeout',
  'modbus-exception',
  'connection-refused',
  'connection-reset',
  'not-connected',
  'device-skipped',
  'invalid-response',
  'decode-error',
  // The process.
  'handover-failed',
  'handover-refused',
  'handover-stalled',
  'upgrade-refused',
  'not-active',
  'config-not-found',
  'config-unreadable',
  'config-syntax',
  'config-invalid',
] as const);
export type PlcCode = (typeof PLC_CODES)[number];

export class PlcError extends EdgeError<PlcCode> {
  constructor(
    code: PlcCode,
    message: string,
    readonly detail?: Record<string, unknown>,
  ) {
    super(code, message, detail === undefined ? undefined : { details: detail });
  }
}

export function isPlcCode(s: string): s is PlcCode {
  return (PLC_CODES as readonly string[]).includes(s);
}
