/**
 * The procedures on this gateway: the ones shipped in the release (dist/maintenance/procedures/)
 * and the operators' (`maintenance.proceduresDir`), one `{id}.yaml` each. An operator file with
 * the id of a shipped one replaces it, valid or not: a broken override is reported, never
 * silently swapped for the shipped one.
 *
 * INVARIANTS
 * - Nothing is skipped silently: every `*.yaml` / `*.yml` file is an entry, `valid`, `invalid`
 *   (with every problem) or `unsafe` (refused before it is parsed). Other names (README, editor
 *   backups, hidden files) are not procedures and are left alone.
 * - An entry's `definitionSha256` is the sha256 of the file's bytes as read, the same bytes
 *   that were validated.
 * - Only a `valid` entry yields a procedure to run (`runnable`); the others throw their code.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MaintenanceError, type Problem } from './errors.js';
import { safetyProblems } from './safety.js';
import { PROCEDURE_ID, type Procedure } from './schema.js';
import { sha256, validateProcedureText } from './validate.js';

export type ProcedureSource = 'shipped' | 'operator';
export type EntryStatus = 'valid' | 'invalid' | 'unsafe';

export interface CatalogEntry {
  id: string;
  file: string;
  source: ProcedureSource;
  status: EntryStatus;
  /** undefined only when the file could not be read at all. */
  definitionSha256: string | undefined;
  /** Set when status is `valid`. */
  procedure: Procedure | undefined;
  problems: Problem[];
  /** The shipped file this operator file replaces. */
  overrides?: string;
}

export interface Catalog {
  /** Sorted by id. */
  entries: CatalogEntry[];
  /** Directories that could not be read (not a missing operator directory: that holds none). */
  problems: Problem[];
}

/** A procedure file is at most this large; a larger one is invalid, unread. */
export const MAX_PROCEDURE_BYTES = 1024 * 1024;

/** The procedures that ship with this release: next to this module in dist/. */
export function shippedProceduresDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'procedures');
}

function readBounded(file: string): Buffer {
  // Non-blocking: a FIFO named like a procedure must not hang the agent's start.
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    const size = st.size;
    if (size > MAX_PROCEDURE_BYTES) throw new Error(`the file is ${size} bytes; a procedure is at most ${MAX_PROCEDURE_BYTES}`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** One file as an entry; never throws. */
export function loadEntry(file: string, source: ProcedureSource, agentUid: number): CatalogEntry {
  const base = file.slice(dirname(file).length + 1);
  const id = base.replace(/\.ya?ml$/, '');
  const entry = (status: EntryStatus, problems: Problem[], definitionSha256?: string, procedure?: Procedure): CatalogEntry => ({ id, file, source, status, definitionSha256, procedure, problems });
  let bytes: Buffer;
  try {
    bytes = readBounded(file);
  } catch (err) {
    return entry('invalid', [{ file, path: '(file)', message: `cannot read it: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  const hash = sha256(bytes);
  let unsafe: string[];
  try {
    unsafe = safetyProblems(file, agentUid);
  } catch (err) {
    unsafe = [`cannot check its permissions: ${err instanceof Error ? err.message : String(err)}`];
  }
  if (unsafe.length > 0) return entry('unsafe', unsafe.map((message) => ({ file, path: '(file)', message })), hash);
  const naming: Problem[] = [];
  if (!base.endsWith('.yaml')) naming.push({ file, path: '(file)', message: `a procedure file is named {id}.yaml, not ${base}` });
  if (!PROCEDURE_ID.test(id)) naming.push({ file, path: '(file)', message: `the file name must be {id}.yaml with an id matching [a-z0-9][a-z0-9-]{0,63}` });
  const v = validateProcedureText(bytes, file, PROCEDURE_ID.test(id) ? id : undefined);
  const problems = [...naming, ...v.problems];
  return problems.length === 0 && v.procedure ? entry('valid', [], hash, v.procedure) : entry('invalid', problems, hash);
}

/** The entries of one directory, by file name; a missing directory holds none. */
function loadDir(dir: string, source: ProcedureSource, agentUid: number, problems: Problem[]): CatalogEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') problems.push({ file: dir, path: '(directory)', message: `cannot read the procedures directory: ${err instanceof Error ? err.message : String(err)}` });
    return [];
  }
  return names
    .filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n))
    .sort()
    .map((n) => loadEntry(join(dir, n), source, agentUid));
}

/** Reads both directories; never throws. */
export function loadCatalog(opts: { shippedDir: string | undefined; operatorDir: string; agentUid: number }): Catalog {
  const problems: Problem[] = [];
  const byId = new Map<string, CatalogEntry>();
  const misnamed: CatalogEntry[] = [];
  const add = (e: CatalogEntry): void => {
    // A .yml file or a file whose name is no id cannot claim an id: listed on its own.
    if (!e.file.endsWith('.yaml') || !PROCEDURE_ID.test(e.id)) {
      misnamed.push(e);
      return;
    }
    const shipped = byId.get(e.id);
    byId.set(e.id, shipped && shipped.source === 'shipped' && e.source === 'operator' ? { ...e, overrides: shipped.file } : e);
  };
  if (opts.shippedDir !== undefined) for (const e of loadDir(opts.shippedDir, 'shipped', opts.agentUid, problems)) add(e);
  for (const e of loadDir(opts.operatorDir, 'operator', opts.agentUid, problems)) add(e);
  const entries = [...byId.values(), ...misnamed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.file < b.file ? -1 : 1));
  return { entries, problems };
}

/** The entry with this id; `unknown-procedure` when there is none. */
export function findProcedure(catalog: Catalog, id: string): CatalogEntry {
  const e = catalog.entries.find((x) => x.id === id && x.file.endsWith('.yaml'));
  if (!e) throw new MaintenanceError('unknown-procedure', `no procedure ${JSON.stringify(id)} on this gateway${catalog.entries.length > 0 ? ` (there are: ${catalog.entries.map((x) => x.id).join(', ')})` : ''}`);
  return e;
}

/** A procedure that may run, with the hash of what will run; throws `unknown-`, `invalid-` or `unsafe-procedure`. */
export function runnableProcedure(catalog: Catalog, id: string): { procedure: Procedure; definitionSha256: string; file: string } {
  const e = findProcedure(catalog, id);
  if (e.status === 'valid' && e.procedure && e.definitionSha256) return { procedure: e.procedure, definitionSha256: e.definitionSha256, file: e.file };
  const code = e.status === 'unsafe' ? 'unsafe-procedure' : 'invalid-procedure';
  const first = e.problems.slice(0, 5).map((p) => `${p.path}: ${p.message}`);
  throw new MaintenanceError(code, `${e.file} is ${e.status === 'unsafe' ? 'refused as unsafe' : 'invalid'} (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}):\n  ${first.join('\n  ')}`, e.problems);
}

/**
 * The catalog, read again only when a file or directory changed (name, size, mtime, ctime, mode
 * or owner of any of them): the `maintenance` operation's admission reads it for every command,
 * and a flood of commands must not mean a flood of YAML parsing.
 */
export class CatalogCache {
  private key = '';
  private cached: Catalog | undefined;

  constructor(private readonly opts: { shippedDir: string | undefined; operatorDir: string; agentUid: number }) {}

  get(): Catalog {
    const key = [this.opts.shippedDir, this.opts.operatorDir].map((d) => (d === undefined ? '' : signature(d))).join('|');
    if (!this.cached || key !== this.key) {
      this.cached = loadCatalog(this.opts);
      this.key = key;
    }
    return this.cached;
  }
}

function signature(dir: string): string {
  const st = (p: string): string => {
    try {
      const s = statSync(p);
      return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}:${s.mode}:${s.uid}`;
    } catch {
      return '-';
    }
  };
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch {
    // missing or unreadable: its signature says so
  }
  return `${st(dir)};${names.map((n) => `${n}=${st(join(dir, n))}`).join(';')}`;
}
