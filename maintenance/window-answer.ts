/**
 * The `maintenance` operation's window form, `{window: {id, action: "defer" | "skip", bySec?}}`
 * (CONTRACT.md section 6): the params checked, then the answer given to the windows. The
 * operation's handler (agent/) turns the outcome into the command's status: `successful` with
 * `result`, or `rejected` with `reason: {code, message}`. Nothing changes when it is rejected.
 */
import { EdgeError } from '../lib/errors.js';
import type { MaintenanceWindows, WindowOccurrence } from './windows.js';
import type { WindowCode } from './window-errors.js';

/** A refused answer, for callers that take errors (the `maintenance` operation's WindowPort). */
export class WindowAnswerError extends EdgeError<WindowCode> {}

export interface WindowAnswerResult {
  id: string;
  action: 'defer' | 'skip';
  /** The occurrence after the answer: its (moved) start and end, ISO. */
  start: string;
  end: string;
  /** Seconds it is deferred by in total (0 for skip without a deferral). */
  deferredSec: number;
}

export type WindowAnswerOutcome = { ok: true; result: WindowAnswerResult } | { ok: false; code: WindowCode; message: string };

/** True when the `maintenance` operation's params are the window form (else the run form). */
export function isWindowForm(params: unknown): boolean {
  return typeof params === 'object' && params !== null && Object.hasOwn(params, 'window');
}

export function answerWindow(windows: Pick<MaintenanceWindows, 'answer'>, params: unknown): WindowAnswerOutcome {
  const bad = (message: string): WindowAnswerOutcome => ({ ok: false, code: 'invalid-window-answer', message });
  if (typeof params !== 'object' || params === null) return bad('params must be {window: {id, action, bySec?}}');
  const extra = Object.keys(params).filter((k) => k !== 'window');
  if (extra.length > 0) return bad(`the window form takes only "window"; unexpected ${extra.join(', ')}`);
  const w = (params as { window?: unknown }).window;
  if (typeof w !== 'object' || w === null || Array.isArray(w)) return bad('window must be an object {id, action, bySec?}');
  const { id, action, bySec, ...rest } = w as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return bad(`window: unexpected ${Object.keys(rest).join(', ')}`);
  if (typeof id !== 'string' || id.length === 0) return bad('window.id must be a window id');
  if (action !== 'defer' && action !== 'skip') return bad('window.action must be "defer" or "skip"');
  if (bySec !== undefined && (action !== 'defer' || typeof bySec !== 'number' || !Number.isInteger(bySec) || bySec < 1)) {
    return bad(action === 'defer' ? 'window.bySec must be a whole number of seconds, at least 1' : 'window.bySec goes only with action "defer"');
  }
  const r = windows.answer(id, action, bySec);
  if (!r.ok) return r;
  return { ok: true, result: resultOf(r.window, action) };
}

function resultOf(w: WindowOccurrence, action: 'defer' | 'skip'): WindowAnswerResult {
  return { id: w.id, action, start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString(), deferredSec: w.deferredSec };
}

/**
 * The windows as the `maintenance` operation's handler takes them (agent/ops/maintenance.ts
 * WindowPort): `inside` gates disruptive runs (`outside-window`), `knows` admits the window form,
 * `answer` returns the result or throws a WindowAnswerError with its code.
 */
export function windowOpsPort(windows: Pick<MaintenanceWindows, 'answer' | 'knows' | 'isInsideWindow'>): {
  inside(now: number): boolean;
  knows(id: string): boolean;
  answer(w: { id: string; action: 'defer' | 'skip'; bySec?: number | undefined }): Record<string, unknown>;
} {
  return {
    inside: (now) => windows.isInsideWindow(now),
    knows: (id) => windows.knows(id),
    answer: (w) => {
      const r = answerWindow(windows, { window: w.bySec === undefined ? { id: w.id, action: w.action } : w });
      if (!r.ok) throw new WindowAnswerError(r.code, r.message);
      return { ...r.result };
    },
  };
}
