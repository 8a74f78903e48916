/**
 * Remote configuration edits (CONTRACT.md section 7, docs/config-apply.md): the pure part of the
 * `config` operation. A candidate is made from the current document and a whole document or a
 * JSON merge patch (RFC 7396), its secrets put back from the current one, validated whole, and
 * compared key by key. Nothing here reads or writes a file.
 *
 * INVARIANTS
 * - A secret value never leaves through `redacted()` and never appears in `changed` as a value
 *   (`changed` lists key paths only).
 * - `"[redacted]"` in a candidate means "keep the current secret"; where there is none to keep it
 *   is a problem, never written to the file as a value.
 * - Every problem of a candidate is reported at once, each with its dotted key path.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { isSecretKey, redactDoc, REDACTED } from '../lib/redact.js';
import { registerCodes } from '../lib/errors.js';

/** The codes of the `config` operation (docs/errors.md, section config-apply). */
export const CONFIG_APPLY_CODES = registerCodes('config-apply', ['invalid-config', 'conflict', 'reverted', 'config-unavailable'] as const);
export type ConfigApplyCode = (typeof CONFIG_APPLY_CODES)[number];

export interface Problem {
  path: string;
  message: string;
}

export type Doc = Record<string, unknown>;

export function isDoc(v: unknown): v is Doc {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The hash the WMS bases an apply on: sha256 of the file's bytes. */
export function configHash(bytes: string | Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** RFC 7396 section 2: objects merge key by key, `null` removes a key, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isDoc(patch)) return patch;
  const out: Doc = isDoc(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The document as `get` returns it: secret values replaced by "[redacted]". */
export function redacted(doc: unknown): unknown {
  return redactDoc(doc);
}

function dotted(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

/**
 * Puts the current secrets back where the candidate says "[redacted]" (as `get` returned it).
 * A "[redacted]" with no current secret at that path is a problem: a patch cannot ask for a
 * secret to be returned or copied, and the marker is never written as a value.
 */
export function keepSecrets(candidate: unknown, current: unknown, path: PropertyKey[] = [], problems: Problem[] = []): { doc: unknown; problems: Problem[] } {
  if (candidate === REDACTED) {
    const last = path[path.length - 1];
    if (typeof current === 'string' || typeof current === 'number') {
      if (typeof last === 'string' && isSecretKey(last)) return { doc: current, problems };
      // A URL whose user info was masked (mqtt://user:[redacted]@host) is not this case: the whole value was.
    }
    if (typeof current === 'string' && redactDoc(current) === REDACTED) return { doc: current, problems };
    problems.push({ path: dotted(path), message: 'no secret is stored here to keep: "[redacted]" only keeps a secret that is already set' });
    return { doc: candidate, problems };
  }
  if (typeof candidate === 'string' && typeof current === 'string' && candidate !== current && candidate === redactDoc(current)) {
    // mqtt://user:[redacted]@host as get returned it: the same URL, password kept.
    return { doc: current, problems };
  }
  if (isDoc(candidate)) {
    const out: Doc = {};
    for (const [k, v] of Object.entries(candidate)) out[k] = keepSecrets(v, isDoc(current) ? current[k] : undefined, [...path, k], problems).doc;
    return { doc: out, problems };
  }
  if (Array.isArray(candidate)) {
    return { doc: candidate.map((v, i) => keepSecrets(v, Array.isArray(current) ? (current as unknown[])[i] : undefined, [...path, i], problems).doc), problems };
  }
  return { doc: candidate, problems };
}

/** Every problem of `doc` against `schema`, with dotted key paths. */
export function schemaProblems(schema: z.ZodType, doc: unknown): Problem[] {
  const r = schema.safeParse(doc);
  if (r.success) return [];
  // A strict object's unknown keys come as one issue at the object: one problem per key, at the key.
  return r.error.issues.flatMap((i) =>
    i.code === 'unrecognized_keys' ? i.keys.map((k) => ({ path: dotted([...i.path, k]), message: 'unknown key' })) : [{ path: dotted(i.path), message: i.message }],
  );
}

/** The dotted key paths whose values differ (an array is one value). */
export function changedPaths(before: unknown, after: unknown, path: string[] = [], out: string[] = []): string[] {
  // A section added or removed whole: its leaves are what changed.
  if (before === undefined && isDoc(after)) before = {};
  if (after === undefined && isDoc(before)) after = {};
  if (isDoc(before) && isDoc(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const k of keys) changedPaths(before[k], after[k], [...path, k], out);
    return out;
  }
  if (JSON.stringify(before) !== JSON.stringify(after)) out.push(path.length === 0 ? '(top level)' : path.join('.'));
  return out;
}
