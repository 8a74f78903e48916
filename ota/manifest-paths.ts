/**
 * Path and symlink safety for manifest entries (CONTRACT.md section 4): every path stays inside
 * the slot when written, and every symlink, followed the way the kernel follows it, stays inside
 * the slot too.
 *
 * Invariants, for a manifest these checks accept:
 *  - every path is relative, '/'-separated and normalised: no empty, '.' or '..' segment, no
 *    backslash, no NUL, at most MAX_PATH_BYTES bytes and MAX_SEGMENT_BYTES per segment;
 *  - no entry lies under a path the manifest lists as a file or a symlink, so writing an entry
 *    never goes through a symlink (or a file) the bundle itself created;
 *  - every symlink target is relative and, resolved from the link's directory with the
 *    manifest's other symlinks substituted as the kernel would (path_resolution(7)),
 *    never climbs above the slot root. Lexical normalisation alone is not enough: with
 *    `d -> .` listed, `sub/e -> ../d/../x` is lexically `x` but physically `../x`.
 * Pure; no I/O. Returns a problem as text, or undefined when the input is safe.
 */

/** Linux PATH_MAX and NAME_MAX. */
export const MAX_PATH_BYTES = 4096;
export const MAX_SEGMENT_BYTES = 255;
/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_HOPS = 40;

/** What is wrong with a member path, or undefined. */
export function pathProblem(path: string): string | undefined {
  if (path.length === 0) return 'is empty';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\0')) return 'contains a NUL character';
  if (path.includes('\\')) return 'contains a backslash (the separator is /)';
  if (path.startsWith('/')) return 'is absolute (paths are relative to payload/ and the slot)';
  for (const seg of path.split('/')) {
    if (seg === '') return 'has an empty segment (a doubled or trailing /)';
    if (seg === '.') return "has a '.' segment";
    if (seg === '..') return "has a '..' segment";
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) return `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** The proper ancestors of a normalised path: `a/b/c` -> `a`, `a/b`. */
export function ancestors(path: string): string[] {
  const segs = path.split('/');
  return segs.slice(0, -1).map((_, i) => segs.slice(0, i + 1).join('/'));
}

/**
 * What is wrong with the symlink at `linkPath` pointing to `target`, or undefined. `links` maps
 * every symlink path the manifest lists to its target (including this one).
 */
export function symlinkProblem(linkPath: string, target: string, links: ReadonlyMap<string, string>): string | undefined {
  if (target.length === 0) return 'has an empty target';
  if (Buffer.byteLength(target) > MAX_PATH_BYTES) return `has a target longer than ${MAX_PATH_BYTES} bytes`;
  if (target.includes('\0')) return 'has a target with a NUL character';
  if (target.includes('\\')) return 'has a target with a backslash (the separator is /)';
  if (target.startsWith('/')) return `has an absolute target ${JSON.stringify(target)}; targets are relative and stay inside the slot`;
  const dir = linkPath.split('/').slice(0, -1);
  let pending = target.split('/');
  const stack = [...dir];
  let hops = 0;
  for (let seg = pending.shift(); seg !== undefined; seg = pending.shift()) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (stack.length === 0) return `has target ${JSON.stringify(target)}, which leaves the slot`;
      stack.pop();
      continue;
    }
    stack.push(seg);
    const next = links.get(stack.join('/'));
    if (next === undefined) continue;
    if (++hops > MAX_HOPS) return `has target ${JSON.stringify(target)}, which loops through symlinks`;
    if (next.startsWith('/')) return `has target ${JSON.stringify(target)}, which goes through the absolute symlink ${stack.join('/')}`;
    stack.pop(); // the link's own directory is where its target resolves from
    pending = [...next.split('/'), ...pending];
  }
  return undefined;
}
