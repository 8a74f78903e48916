/**
 * Parsing of `~/cmd/{op}` messages (CONTRACT.md section 2). Pure: bytes in, a verdict out.
 * A message whose id can be read gets a `rejected` status with a code; one whose id cannot be
 * read is dropped with a logged reason (there is no `~/res/{id}` to answer on).
 */
import { registerCodes } from '../lib/errors.js';
import { parseJsonPayload } from '../lib/json-payload.js';
import { PRIORITIES, type Priority } from '../core/ports.js';

export { salvageId } from '../lib/json-payload.js';

export const COMMAND_CODES = registerCodes('commands', [
  'invalid-json',
  'invalid-params',
  'unknown-op',
  'too-large',
  'busy',
  'expired',
  'interrupted',
  'not-cancellable',
  'cancelled',
  'unknown-target',
  'shutting-down',
  'stalled',
  'internal',
] as const);
export type CommandCode = (typeof COMMAND_CODES)[number];

/** Reasons a message is dropped without an answer (logged, never sent). */
export type DropReason = 'no-id' | 'invalid-id' | 'not-an-object';

export const COMMAND_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
export const OP_NAME = /^[a-z][a-z0-9-]{0,63}$/;

export interface ParsedCommand {
  id: string;
  op: string;
  params: unknown;
  expiresAt: number | undefined;
  /** The envelope's `priority` (CONTRACT.md section 2); `normal` when absent. */
  priority: Priority;
}

export type ParseVerdict =
  | { kind: 'command'; cmd: ParsedCommand }
  | { kind: 'reject'; id: string; op: string; code: CommandCode; message: string }
  | { kind: 'drop'; reason: DropReason; message: string };

export function parseCommand(op: string, payload: Buffer, maxBytes: number, now: number): ParseVerdict {
  const parsed = parseJsonPayload(payload, maxBytes);
  if (!parsed.ok) {
    const { id, code, message } = parsed;
    return id ? { kind: 'reject', id, op, code, message } : { kind: 'drop', reason: 'no-id', message };
  }
  const doc = parsed.doc;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { kind: 'drop', reason: 'not-an-object', message: 'payload is JSON but not an object' };
  }
  const obj = doc as Record<string, unknown>;
  if (obj.id === undefined) return { kind: 'drop', reason: 'no-id', message: 'command has no id' };
  if (typeof obj.id !== 'string' || !COMMAND_ID.test(obj.id)) {
    return { kind: 'drop', reason: 'invalid-id', message: 'id must be a string matching [A-Za-z0-9_.:-]{1,128}' };
  }
  const id = obj.id;
  if (!OP_NAME.test(op)) return { kind: 'reject', id, op, code: 'unknown-op', message: `"${op}" is not an operation name` };
  let expiresAt: number | undefined;
  if (obj.expiresAt !== undefined) {
    const t = typeof obj.expiresAt === 'string' ? Date.parse(obj.expiresAt) : NaN;
    if (!Number.isFinite(t)) return { kind: 'reject', id, op, code: 'invalid-params', message: 'expiresAt must be an ISO-8601 timestamp' };
    if (t <= now) return { kind: 'reject', id, op, code: 'expired', message: `command expired at ${new Date(t).toISOString()}` };
    expiresAt = t;
  }
  if (obj.params !== undefined && (obj.params === null || typeof obj.params !== 'object' || Array.isArray(obj.params))) {
    return { kind: 'reject', id, op, code: 'invalid-params', message: 'params must be an object' };
  }
  if (obj.priority !== undefined && !(PRIORITIES as readonly unknown[]).includes(obj.priority)) {
    return { kind: 'reject', id, op, code: 'invalid-params', message: `priority must be one of ${PRIORITIES.join(', ')}` };
  }
  const priority = (obj.priority as Priority | undefined) ?? 'normal';
  return { kind: 'command', cmd: { id, op, params: obj.params ?? {}, expiresAt, priority } };
}
