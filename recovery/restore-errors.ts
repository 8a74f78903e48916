/**
 * The `restore` domain's error codes (docs/errors.md#restore): known-good configuration copies,
 * store backups and their restore.
 */
import { EdgeError, registerCodes } from '../lib/errors.js';

export const RESTORE_CODES = registerCodes('restore', ['config-checksum-mismatch', 'backup-corrupt', 'store-corrupt', 'store-missing'] as const);
export type RestoreCode = (typeof RESTORE_CODES)[number];

export class RestoreError extends EdgeError<RestoreCode> {}
