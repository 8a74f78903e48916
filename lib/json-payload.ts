/**
 * The first step of reading a JSON message from the WMS (a command on `~/cmd/{op}`, a `set` on
 * `~/plc/{device}/set`): the size bound, the nesting bound, then JSON.parse. When one fails, the
 * id is looked for in the raw text, so the sender can still be answered on `~/res/{id}`. Pure.
 *
 * Why a nesting bound: JSON.parse takes 100,000 nested arrays, but whatever walks the document
 * recursively afterwards (JSON.stringify when it is stored, a schema check) overflows the stack
 * with a RangeError. So nothing deeper than `maxDepth` is ever parsed; nothing downstream can
 * then throw on the shape of the input.
 */

/** Looks for `"id": "..."` in text that is not valid JSON (or too large to parse), to answer on. */
export function salvageId(text: string): string | undefined {
  return /"id"\s*:\s*"([A-Za-z0-9_.:-]{1,128})"/.exec(text)?.[1];
}

export type JsonPayload =
  | { ok: true; doc: unknown }
  | { ok: false; code: 'too-large' | 'invalid-json'; message: string; id: string | undefined };

/** How much of an oversized payload is searched for its id. */
const SALVAGE_BYTES = 4096;

/** The default nesting bound: far more than any message of the contract needs. */
export const MAX_JSON_DEPTH = 64;

/**
 * The deepest nesting of arrays and objects in JSON text, counted without parsing (brackets
 * inside strings do not count); it stops counting once past `limit`. Pure, linear, no recursion.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

export function parseJsonPayload(payload: Buffer, maxBytes: number, opts: { maxDepth?: number } = {}): JsonPayload {
  if (payload.length > maxBytes) {
    const id = salvageId(payload.subarray(0, SALVAGE_BYTES).toString('utf8'));
    return { ok: false, code: 'too-large', message: `payload of ${payload.length} bytes is over the limit of ${maxBytes}`, id };
  }
  const text = payload.toString('utf8');
  const maxDepth = opts.maxDepth ?? MAX_JSON_DEPTH;
  if (jsonDepth(text, maxDepth) > maxDepth) {
    return { ok: false, code: 'too-large', message: `payload is nested more than ${maxDepth} levels deep`, id: salvageId(text) };
  }
  try {
    return { ok: true, doc: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, code: 'invalid-json', message: `payload is not valid JSON: ${(err as Error).message}`, id: salvageId(text) };
  }
}
