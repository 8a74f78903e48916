/**
 * manifest.json of a format 1 bundle (CONTRACT.md section 4): its schema, its path and symlink
 * safety, and the install policy (product, device class, requires, version, securityVersion).
 *
 * Decisions beyond the contract:
 *  - a `files` entry without `type` is a regular file; `type` may also say `file`, `symlink` or
 *    `dir` (an empty directory the slot must have; directories that only hold listed entries
 *    need not be listed). Entries are strict: an unknown key in one is an error, since an entry
 *    with both `sha256` and `target` is ambiguous. Unknown top-level keys are ignored, so a newer
 *    publisher may add fields without breaking older devices (a breaking change bumps `format`).
 *  - `mode` is three octal permission digits, optionally after a 0 ("0644"); setuid, setgid and
 *    sticky bits are refused. `sha256` may be upper case; it is returned lower case.
 *  - `files` lists at least one entry: a release that installs nothing is always a mistake.
 *  - `version` is a canonical semantic version (no `v` prefix).
 *  - A delta bundle (CONTRACT.md section 4) names its base in `delta` and marks the files taken
 *    from the running release with `"source": "base"`; a `source` without `delta` is refused as a
 *    malformed manifest.
 * Pure; no I/O.
 */
import semver from 'semver';
import { z } from 'zod';
import { OtaError } from './errors.js';
import { ancestors, pathProblem, symlinkProblem } from './manifest-paths.js';

export const MANIFEST_FORMAT = 1;
export const PRODUCT = 'edge-agent';
export const DEFAULT_FILE_MODE = 0o644;
export const DEFAULT_DIR_MODE = 0o755;

const version = z.string().refine((v) => semver.valid(v) === v, 'must be a semantic version such as 1.4.0');
const range = z.string().min(1).refine((r) => semver.validRange(r) !== null, 'must be a semver range such as ">=1.0.0 <2.0.0"');
const mode = z.string().regex(/^0?[0-7]{3}$/, 'must be octal permissions such as "0644" (no setuid, setgid or sticky bit)');

const fileEntry = z.strictObject({
  path: z.string(),
  type: z.literal('file'),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits').transform((s) => s.toLowerCase()),
  size: z.number().int().min(0),
  mode: mode.optional(),
  /** Taken from the running release (a delta bundle), not from the payload. */
  source: z.literal('base').optional(),
});
const symlinkEntry = z.strictObject({ path: z.string(), type: z.literal('symlink'), target: z.string() });
const dirEntry = z.strictObject({ path: z.string(), type: z.literal('dir'), mode: mode.optional() });

const entry = z.preprocess(
  (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) && !('type' in v) ? { ...v, type: 'file' } : v),
  z.discriminatedUnion('type', [fileEntry, symlinkEntry, dirEntry]),
);

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT, { error: `must be ${MANIFEST_FORMAT} (the bundle format this agent reads)` }),
  product: z.string().min(1),
  version,
  compatible: z.array(z.string().min(1)).min(1, 'must name at least one device class'),
  requires: range.optional(),
  securityVersion: z.number().int().min(0).default(0),
  created: z.iso.datetime({ offset: true }),
  files: z.array(entry).min(1, 'must list at least one entry'),
  delta: z
    .strictObject({
      baseVersion: version,
      baseManifestSha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits').transform((s) => s.toLowerCase()),
    })
    .optional(),
});

export type Manifest = z.output<typeof manifestSchema>;
export type ManifestEntry = Manifest['files'][number];
export type FileEntry = z.output<typeof fileEntry>;
export type SymlinkEntry = z.output<typeof symlinkEntry>;
export type DirEntry = z.output<typeof dirEntry>;

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

function decodeJson(bytes: Buffer): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new OtaError('manifest-invalid', 'manifest.json is not valid UTF-8', { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new OtaError('manifest-invalid', `manifest.json is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Paths, duplicates, nesting and symlink targets; see ota/manifest-paths.ts for the rules. */
function checkEntries(files: ManifestEntry[]): void {
  const byPath = new Map<string, ManifestEntry>();
  files.forEach((f, i) => {
    const problem = pathProblem(f.path);
    if (problem) throw new OtaError('unsafe-path', `files[${i}].path ${JSON.stringify(f.path.slice(0, 200))} ${problem}`);
    if (byPath.has(f.path)) throw new OtaError('duplicate-member', `files[${i}].path ${JSON.stringify(f.path)} is listed twice`);
    byPath.set(f.path, f);
  });
  files.forEach((f, i) => {
    for (const a of ancestors(f.path)) {
      const t = byPath.get(a)?.type;
      if (t === 'symlink' || t === 'file') throw new OtaError('unsafe-path', `files[${i}].path ${JSON.stringify(f.path)} lies under ${JSON.stringify(a)}, which is a ${t}`);
    }
  });
  const links = new Map(files.flatMap((f) => (f.type === 'symlink' ? [[f.path, f.target] as const] : [])));
  files.forEach((f, i) => {
    if (f.type !== 'symlink') return;
    const problem = symlinkProblem(f.path, f.target, links);
    if (problem) throw new OtaError('symlink-invalid', `files[${i}] (symlink ${JSON.stringify(f.path)}) ${problem}`);
  });
}

/**
 * Parses and validates the exact bytes of manifest.json. Throws OtaError: 'manifest-invalid'
 * (listing every schema problem with its field), 'unsafe-path', 'duplicate-member' or
 * 'symlink-invalid' (naming the entry).
 */
export function parseManifest(bytes: Buffer): Manifest {
  const parsed = manifestSchema.safeParse(decodeJson(bytes));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
    throw new OtaError('manifest-invalid', `manifest.json is invalid: ${problems.slice(0, 10).join('; ')}`, { details: { problems } });
  }
  checkEntries(parsed.data.files);
  const fromBase = parsed.data.files.filter((f) => f.type === 'file' && f.source === 'base').length;
  if (fromBase > 0 && parsed.data.delta === undefined) {
    throw new OtaError('manifest-invalid', `manifest.json marks ${fromBase} files "source": "base" but names no base release (delta)`);
  }
  return parsed.data;
}

/** The permission bits an entry asks for, or the default for its type (symlinks: undefined). */
export function entryMode(e: ManifestEntry): number | undefined {
  if (e.type === 'symlink') return undefined;
  if (e.mode !== undefined) return parseInt(e.mode, 8);
  return e.type === 'dir' ? DEFAULT_DIR_MODE : DEFAULT_FILE_MODE;
}

/** True when the file is taken from the running release rather than from the payload. */
export function fromBase(e: ManifestEntry): boolean {
  return e.type === 'file' && e.source === 'base';
}

/** The sum of the sizes of the regular files the payload carries (a delta's base files are not in it). */
export function totalPayloadBytes(m: Manifest): number {
  return m.files.reduce((sum, f) => sum + (f.type === 'file' && !fromBase(f) ? f.size : 0), 0);
}

export { checkPolicy, type DeviceFacts, type PolicyOptions } from './manifest-policy.js';

/** The directory in an installed slot that keeps its bundle's manifest.json, manifest.sig and signer.pem (health/diag/slots.ts checks the slot against them). */
export const SLOT_MANIFEST_DIR = '.edge-agent-bundle';
