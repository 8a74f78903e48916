/**
 * Incidents that happen before the store is usable (a configuration or the store itself
 * restored at start) wait in `{dataDir}/pending-incidents.json` and are handed to the incident
 * store and `~/events` once the store and the outbox are open.
 *
 * INVARIANT: the file is only ever replaced whole (lib/atomic.ts), so a crash leaves either the
 * old or the new list. Delivery is at least once: a crash between the hand-off and the removal of
 * the file hands the same incidents over again on the next start (each carries its `id`, so a
 * reader can tell).
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../lib/atomic.js';
import type { Severity } from '../core/ports.js';

export interface PendingIncident {
  id: string;
  /** ISO-8601. */
  at: string;
  /** What failed: `config`, `store`, `agent`. */
  component: string;
  /** The event code, e.g. `config-restored`. */
  code: string;
  severity: Severity;
  /** What was wrong, as a code: `config-syntax`, `config-checksum-mismatch`, `store-corrupt`, ... */
  cause: string;
  /** What was done, as a step: `restore-known-good`, `restore-backup`, `rebuild-empty`, `restart`, ... */
  action: string;
  /** Both in words, for a person. */
  detail: string;
  /** How long the recovery took, ms. */
  recoveryMs?: number;
  details?: Record<string, unknown>;
}

export function pendingPath(dataDir: string): string {
  return join(dataDir, 'pending-incidents.json');
}

function readPending(dataDir: string): PendingIncident[] {
  try {
    const v = readJsonFile(pendingPath(dataDir));
    return Array.isArray(v) ? (v as PendingIncident[]) : [];
  } catch {
    // A torn or hand-edited file must not stop the start it is meant to document.
    return [];
  }
}

/** Appends one incident to the pending list; returns it with its id and time filled in. */
export function addPending(dataDir: string, inc: Omit<PendingIncident, 'id' | 'at'> & { at?: string }, now = Date.now()): PendingIncident {
  const full: PendingIncident = { id: randomUUID(), at: inc.at ?? new Date(now).toISOString(), ...inc };
  writeJsonAtomic(pendingPath(dataDir), [...readPending(dataDir), full]);
  return full;
}

export function listPending(dataDir: string): PendingIncident[] {
  return readPending(dataDir);
}

/**
 * Hands every pending incident to `sink` in order, then removes the file. If `sink` throws, the
 * incidents not yet handed over stay pending for the next start and the error is rethrown.
 */
export function flushPending(dataDir: string, sink: (inc: PendingIncident) => void): number {
  const all = readPending(dataDir);
  let done = 0;
  try {
    for (const inc of all) {
      sink(inc);
      done++;
    }
  } finally {
    if (done === all.length) rmSync(pendingPath(dataDir), { force: true });
    else writeJsonAtomic(pendingPath(dataDir), all.slice(done));
  }
  return done;
}
