/**
 * Which invalid procedures to announce (`procedure-invalid` on `~/events`, CONTRACT.md section
 * 6): each invalid or unsafe file once per content, not again on every re-scan or restart. Pure:
 * the daemon (agent/procedure-watch.ts) keeps `announced` in the store and sends the events.
 *
 * INVARIANTS
 * - An invalid or unsafe entry is announced unless `announced` holds its file with the same key
 *   (the sha256 of its bytes, or of its problems when it could not be read at all).
 * - `next` holds only the files that are invalid or unsafe now: a file that becomes valid (or is
 *   removed) is forgotten, so when it turns invalid again it is announced again.
 */
import { createHash } from 'node:crypto';
import type { CatalogEntry } from './catalog.js';

/** file -> the key of the content announced. */
export type Announced = Record<string, string>;

/** What identifies an entry's content: its sha256, or a hash of its problems when it was not read. */
export function contentKey(e: CatalogEntry): string {
  if (e.definitionSha256 !== undefined) return e.definitionSha256;
  return `unread:${createHash('sha256').update(JSON.stringify(e.problems.map((p) => [p.path, p.message]))).digest('hex')}`;
}

/** The entries to announce now and what is announced once they are; pure. */
export function toAnnounce(entries: readonly CatalogEntry[], announced: Readonly<Announced>): { announce: CatalogEntry[]; next: Announced } {
  const announce: CatalogEntry[] = [];
  const next: Announced = {};
  for (const e of entries) {
    if (e.status === 'valid') continue;
    const key = contentKey(e);
    next[e.file] = key;
    if (announced[e.file] !== key) announce.push(e);
  }
  return { announce, next };
}

/** Reads the persisted map leniently: anything unreadable is an empty map (announces again, never less). */
export function parseAnnounced(text: string | undefined): Announced {
  if (text === undefined) return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
  } catch {
    return {};
  }
}
