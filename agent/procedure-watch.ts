/**
 * Validates the procedures when the agent starts and whenever the procedures directory
 * (`maintenance.proceduresDir`) changes, and announces each invalid or unsafe file on `~/events`
 * (`procedure-invalid`, CONTRACT.md section 6) with every problem, and in the log at warn.
 *
 * Changes are seen through fs.watch on the directory (debounced: an editor's save is several
 * events), with a periodic re-scan as a fallback since fs.watch can miss events (the directory
 * removed and created again, a network file system, an overflowing inotify queue).
 *
 * INVARIANT: each invalid file is announced once per content (maintenance/announce.ts), also
 * across restarts. The event is committed to the outbox before the announced map (agent_info
 * `proceduresAnnounced`) is written, so a power cut between the two announces it again at the
 * next start, never not at all.
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../lib/log.js';
import type { Db } from '../lib/sqlite.js';
import { readAgentInfo, writeAgentInfo } from '../core/agent-info.js';
import type { AgentEvent, Component } from '../core/ports.js';
import { loadCatalog, type Catalog, type CatalogEntry } from '../maintenance/catalog.js';
import { parseAnnounced, toAnnounce } from '../maintenance/announce.js';

export const PROCEDURE_INVALID = 'procedure-invalid';
/** Quiet time after the last change before the directory is read again. */
export const DEBOUNCE_MS = 500;
/** The re-scan that catches what fs.watch missed. */
export const RESCAN_MS = 60_000;

export interface ProcedureWatchOptions {
  dir: string;
  shippedDir: string | undefined;
  agentUid: number;
  db: Db;
  /** Queues an event on ~/events; durable: committed before it returns. */
  event(ev: AgentEvent, durable: boolean): void;
  logger: Logger;
  debounceMs?: number;
  rescanMs?: number;
  /** Told of every catalog read (at start, on a change, at each re-scan): the scheduler's procedures. */
  onCatalog?(catalog: Catalog): void;
}

/** The event for one invalid or unsafe entry; pure. */
export function procedureInvalidEvent(e: CatalogEntry): AgentEvent {
  const code = e.status === 'unsafe' ? 'unsafe-procedure' : 'invalid-procedure';
  const n = e.problems.length;
  const first = e.problems[0];
  return {
    type: PROCEDURE_INVALID,
    severity: 'warning',
    code,
    message: `${e.file} is ${e.status === 'unsafe' ? 'refused as unsafe' : 'invalid'} (${n} problem${n === 1 ? '' : 's'})${first ? `: ${first.path}: ${first.message}` : ''}; it cannot run until it is fixed`,
    file: e.file,
    procedure: e.id,
    // Not `source`: on events that names who sent a note (docs/asyncapi.yaml).
    origin: e.source,
    status: e.status,
    definitionSha256: e.definitionSha256 ?? null,
    problems: e.problems.map((p) => ({ path: p.path, message: p.message })),
  };
}

export class ProcedureWatch implements Component {
  readonly name = 'procedure-watch';
  private watcher: FSWatcher | undefined;
  /** The directory's inode when the watch began: a directory removed and made again needs a new watch. */
  private watchedIno: number | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(private readonly o: ProcedureWatchOptions) {}

  start(): Promise<void> {
    this.stopped = false;
    this.scan();
    this.rescan = setInterval(() => this.scan(), this.o.rescanMs ?? RESCAN_MS);
    this.rescan.unref();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.rescan);
    clearTimeout(this.debounce);
    this.rescan = undefined;
    this.debounce = undefined;
    this.unwatch();
    return Promise.resolve();
  }

  /** Reads the catalog and announces what is new; never throws. */
  scan(): Catalog | undefined {
    if (this.stopped) return undefined;
    // (Re)watch first: a change between the read and the watch would otherwise wait for the re-scan.
    this.ensureWatch();
    try {
      const catalog = loadCatalog({ shippedDir: this.o.shippedDir, operatorDir: this.o.dir, agentUid: this.o.agentUid });
      this.announce(catalog);
      this.o.onCatalog?.(catalog);
      return catalog;
    } catch (err) {
      this.o.logger.error({ err, dir: this.o.dir }, 'cannot check the maintenance procedures');
      return undefined;
    }
  }

  private announce(catalog: Catalog): void {
    const before = parseAnnounced(readAgentInfo(this.o.db).proceduresAnnounced);
    const { announce, next } = toAnnounce(catalog.entries, before);
    for (const e of announce) {
      this.o.event(procedureInvalidEvent(e), true);
      this.o.logger.warn({ code: e.status === 'unsafe' ? 'unsafe-procedure' : 'invalid-procedure', file: e.file, procedure: e.id, problems: e.problems.map((p) => `${p.path}: ${p.message}`) }, 'a maintenance procedure is invalid and cannot run');
    }
    if (JSON.stringify(next) !== JSON.stringify(before)) writeAgentInfo(this.o.db, { proceduresAnnounced: JSON.stringify(next) });
  }

  private ensureWatch(): void {
    let ino: number | undefined;
    try {
      ino = statSync(this.o.dir).ino;
    } catch {
      ino = undefined;
    }
    if (this.watcher && ino === this.watchedIno) return;
    this.unwatch();
    if (ino === undefined) return;
    try {
      this.watchedIno = ino;
      this.watcher = watch(this.o.dir, { persistent: false }, () => this.changed());
      this.watcher.on('error', (err) => {
        // The directory went away (or the watch broke): the re-scan watches it again once it is back.
        this.o.logger.debug({ err, dir: this.o.dir }, 'the watch on the procedures directory ended');
        this.unwatch();
        this.changed();
      });
    } catch {
      // Gone between the stat and the watch: the re-scan looks again.
      this.unwatch();
    }
  }

  private unwatch(): void {
    const w = this.watcher;
    this.watcher = undefined;
    this.watchedIno = undefined;
    w?.close();
  }

  private changed(): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.scan();
    }, this.o.debounceMs ?? DEBOUNCE_MS);
    this.debounce.unref();
  }
}
