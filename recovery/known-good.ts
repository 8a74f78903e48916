/**
 * Known-good copies of configuration files, and their restore.
 *
 * Layout: `{dataDir}/known-good/{basename}-{sha8 of the absolute path}/` holds, per source file,
 * `{seq}-{basename}` copies, each with a `{copy}.sha256` sidecar in `sha256sum` format (so
 * `sha256sum -c *.sha256` in that directory checks them), and `source` naming the file they
 * copy. `seq` grows by one per copy: ordering does not depend on the clock.
 *
 * Checksum semantics: a configuration file MAY have a sidecar `FILE.sha256` written by whoever
 * deploys it (`sha256sum config.yaml > config.yaml.sha256`). When the sidecar exists and does not
 * match the file, the file is corrupt, whatever its content. The agent never creates that sidecar
 * (a hand edit must not turn into a "corruption" the agent reverts); it only rewrites one that
 * existed when it puts a known-good copy back, so the pair agrees again.
 *
 * INVARIANTS: a copy is taken only of bytes that loaded and validated (the caller passes them);
 * an identical copy is not taken twice; a copy whose own sidecar does not match is never
 * restored; the bad file is kept in quarantine before it is replaced; a file that already holds
 * the copy's bytes (and agrees with its sidecar, if it has one) is neither quarantined nor
 * rewritten; every write is atomic; copies are 0640.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../lib/atomic.js';
import { errorMessage } from '../lib/errors.js';
import { quarantineFile } from './quarantine.js';
import { privateDir } from './private-files.js';

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The digest a sidecar states: its first 64-hex-digit word, or undefined. */
export function parseSidecar(text: string): string | undefined {
  return /^\s*([0-9a-fA-F]{64})(\s|$)/.exec(text)?.[1]?.toLowerCase();
}

export type SidecarCheck = { state: 'none' } | { state: 'match'; sha256: string } | { state: 'mismatch'; expected: string | undefined; actual: string };

/** Compares `content` (the file's bytes) with `FILE.sha256` next to it, if there is one. */
export function checkSidecar(file: string, content: Uint8Array): SidecarCheck {
  let text: string;
  try {
    text = readFileSync(`${file}.sha256`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'none' };
    throw err;
  }
  const expected = parseSidecar(text);
  const actual = sha256Hex(content);
  return expected === actual ? { state: 'match', sha256: actual } : { state: 'mismatch', expected, actual };
}

export interface KnownGoodCopy {
  seq: number;
  path: string;
  /** From the copy's sidecar; undefined when the sidecar is missing or unreadable. */
  sha256: string | undefined;
}

export function knownGoodDir(dataDir: string, source: string): string {
  const abs = resolve(source);
  return join(dataDir, 'known-good', `${basename(abs)}-${sha256Hex(abs).slice(0, 8)}`);
}

/** The copies of `source`, newest first. */
export function listKnownGood(dataDir: string, source: string): KnownGoodCopy[] {
  const dir = knownGoodDir(dataDir, source);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .flatMap((n) => {
      const m = /^(\d+)-/.exec(n);
      if (!m?.[1] || n.endsWith('.sha256') || n.startsWith('.')) return [];
      let sha: string | undefined;
      try {
        sha = parseSidecar(readFileSync(join(dir, `${n}.sha256`), 'utf8'));
      } catch {
        sha = undefined;
      }
      return [{ seq: Number(m[1]), path: join(dir, n), sha256: sha }];
    })
    .sort((a, b) => b.seq - a.seq);
}

export interface TakeResult {
  taken: boolean;
  /** The copy holding these bytes (new, or the newest one when unchanged). */
  copy: string;
}

/**
 * Keeps `content` (the bytes of `source` that loaded and proved themselves) as the newest
 * known-good copy, unless the newest copy already holds them; keeps the newest `keep` copies.
 */
export function takeKnownGood(opts: { dataDir: string; source: string; content: Uint8Array; keep: number }): TakeResult {
  const { dataDir, source, content } = opts;
  const sha = sha256Hex(content);
  const copies = listKnownGood(dataDir, source);
  const newest = copies[0];
  if (newest && newest.sha256 === sha && existsSync(newest.path)) return { taken: false, copy: newest.path };
  const dir = knownGoodDir(dataDir, source);
  privateDir(dir);
  if (!existsSync(join(dir, 'source'))) writeFileAtomic(join(dir, 'source'), `${resolve(source)}\n`);
  const name = `${String((newest?.seq ?? 0) + 1).padStart(6, '0')}-${basename(source)}`;
  const copy = join(dir, name);
  // Copy first, sidecar second: a copy without its sidecar is never restored (see restoreConfig).
  writeFileAtomic(copy, content, 0o640);
  writeFileAtomic(`${copy}.sha256`, `${sha}  ${name}\n`, 0o640);
  for (const old of copies.slice(Math.max(0, opts.keep - 1))) {
    rmSync(old.path, { force: true });
    rmSync(`${old.path}.sha256`, { force: true });
  }
  fsyncDir(dir);
  return { taken: true, copy };
}

export interface RestoreOptions {
  dataDir: string;
  /** The configuration file to restore. */
  source: string;
  /** Throws when a copy's text would not load (e.g. a newer schema refuses an old copy). */
  validate?: (text: string, copyPath: string) => void;
  now: number;
}

export type ConfigRestore =
  | {
      restored: true;
      /** The known-good copy used. */
      from: string;
      /** Where the bad file (and its sidecar) went. */
      quarantined: string[];
      /** Whether `source` now holds the copy; false when it cannot be written (read-only /etc). */
      replaced: boolean;
      /** The file to load: `source`, or the copy itself when it could not be replaced. */
      loadPath: string;
      replaceError?: string;
      skipped: { copy: string; why: string }[];
    }
  /** `source` already holds the bytes of the newest usable copy `identical`: nothing was done. */
  | { restored: false; identical: string; skipped: { copy: string; why: string }[] }
  | { restored: false; skipped: { copy: string; why: string }[] };

/**
 * Puts the newest usable known-good copy of `source` back: the copy must match its own sidecar
 * and pass `validate`. The bad file is copied to quarantine first. When `source` already holds
 * that copy's bytes (and its own sidecar, if any, agrees) restoring would change nothing: it is
 * left alone and the result says which copy it matches. When `source` cannot be
 * written (ProtectSystem=strict makes /etc read-only for the service), the copy is loaded from
 * where it is and the bad file stays in place, so the next start restores again.
 */
export function restoreConfig(opts: RestoreOptions): ConfigRestore {
  const { dataDir, source, now } = opts;
  const skipped: { copy: string; why: string }[] = [];
  for (const c of listKnownGood(dataDir, source)) {
    let content: Buffer;
    try {
      content = readFileSync(c.path);
    } catch (err) {
      skipped.push({ copy: c.path, why: errorMessage(err) });
      continue;
    }
    if (c.sha256 === undefined || c.sha256 !== sha256Hex(content)) {
      skipped.push({ copy: c.path, why: 'the copy does not match its own .sha256' });
      continue;
    }
    try {
      opts.validate?.(content.toString('utf8'), c.path);
    } catch (err) {
      skipped.push({ copy: c.path, why: errorMessage(err) });
      continue;
    }
    const current = readMaybe(source);
    if (current && sha256Hex(current) === c.sha256 && checkSidecar(source, current).state !== 'mismatch') return { restored: false, identical: c.path, skipped };
    const quarantined: string[] = [];
    for (const f of [source, `${source}.sha256`]) {
      if (existsSync(f) && statSync(f).isFile()) quarantined.push(quarantineFile(dataDir, f, now, { copy: true }));
    }
    const hadSidecar = existsSync(`${source}.sha256`);
    try {
      writeFileAtomic(source, content, modeOf(source));
      if (hadSidecar) writeFileAtomic(`${source}.sha256`, `${c.sha256}  ${basename(source)}\n`, modeOf(`${source}.sha256`));
      return { restored: true, from: c.path, quarantined, replaced: true, loadPath: source, skipped };
    } catch (err) {
      return { restored: true, from: c.path, quarantined, replaced: false, loadPath: c.path, replaceError: errorMessage(err), skipped };
    }
  }
  return { restored: false, skipped };
}

function readMaybe(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

function modeOf(path: string): number {
  try {
    return statSync(path).mode & 0o777;
  } catch {
    return 0o640;
  }
}

export interface KnownGoodComparison {
  source: string;
  /** `same`: the file holds the newest known-good copy's bytes; `differs`: it does not; `none`: no copy yet; `unreadable`: the file cannot be read. */
  state: 'same' | 'differs' | 'none' | 'unreadable';
  copy: string | null;
  sha256: string | null;
  knownGoodSha256: string | null;
}

/** The file `source` against its newest known-good copy (the daily `config-verify`); reads only. */
export function compareKnownGood(dataDir: string, source: string): KnownGoodComparison {
  const newest = listKnownGood(dataDir, source)[0];
  let sha: string | null = null;
  try {
    sha = sha256Hex(readFileSync(source));
  } catch {
    return { source, state: 'unreadable', copy: newest?.path ?? null, sha256: null, knownGoodSha256: newest?.sha256 ?? null };
  }
  if (!newest) return { source, state: 'none', copy: null, sha256: sha, knownGoodSha256: null };
  return { source, state: newest.sha256 === sha ? 'same' : 'differs', copy: newest.path, sha256: sha, knownGoodSha256: newest.sha256 ?? null };
}
