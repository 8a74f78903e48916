/**
 * The first step of reading a JSON message from the WMS (a command on `~/cmd/{op}`, a `set` on
 * `~/plc/{device}/set`): the size bound, then JSON.parse. When either fails, the id is looked for
 * in the raw text, so the sender can still be answered on `~/res/{id}`. Pure.
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

export function parseJsonPayload(payload: Buffer, maxBytes: number): JsonPayload {
  if (payload.length > maxBytes) {
    const id = salvageId(payload.subarray(0, SALVAGE_BYTES).toString('utf8'));
    return { ok: false, code: 'too-large', message: `payload of ${payload.length} bytes is over the limit of ${maxBytes}`, id };
  }
  const text = payload.toString('utf8');
  try {
    return { ok: true, doc: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, code: 'invalid-json', message: `payload is not valid JSON: ${(err as Error).message}`, id: salvageId(text) };
  }
}
