/**
 * Codes of the `maintenance` operation's window form (`{window: {id, action, bySec?}}`,
 * CONTRACT.md section 6): the answer is `rejected` with one of these and nothing changes. Each is
 * in docs/errors.md under "maintenance-windows".
 */
import { registerCodes } from '../lib/errors.js';

export const WINDOW_CODES = registerCodes('maintenance-windows', ['unknown-window', 'window-not-announced', 'window-defer-beyond-max', 'invalid-window-answer'] as const);
export type WindowCode = (typeof WINDOW_CODES)[number];
