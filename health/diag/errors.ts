/**
 * The diagnostics domain's codes: what the `diagnostics` operation reports about a support
 * bundle it was asked to upload (`result.upload.error.code`) or could not make (`reason.code`).
 * Imports nothing heavy: agent/ops/diagnostics.ts loads it at start so the codes are registered.
 */
import { EdgeError, registerCodes } from '../../lib/errors.js';

export const DIAG_CODES = registerCodes('diag', ['bundle-failed', 'upload-failed', 'upload-rejected', 'upload-too-large', 'upload-timeout'] as const);
export type DiagCode = (typeof DIAG_CODES)[number];

export class DiagError extends EdgeError<DiagCode> {}
