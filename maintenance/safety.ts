/**
 * The `unsafe-procedure` check (CONTRACT.md section 6): whoever can write a procedure can run
 * code as the agent, so a procedure file must be writable only by root or the agent's own user,
 * and so must the directory it lives in. The verdicts are pure; `safetyProblems` reads the
 * file system (synchronously: a handful of stat calls at start and from the command line).
 *
 * INVARIANTS
 * - The file (after symbolic links: its real path) is a regular file owned by root or the
 *   agent's user, with no group or other write bit.
 * - Its directory: owned by root or the agent's user, no group or other write bit.
 * - Every directory above: the same, except that a sticky directory (like /tmp, mode 1777) may be
 *   writable by others, since they cannot rename or remove what they do not own in it.
 */
import { realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Ownership {
  uid: number;
  mode: number;
}

const GROUP_OR_OTHER_WRITE = 0o022;
const STICKY = 0o1000;

/** The owners a procedure may have: root, and the agent's own user when it is not root. */
export function trustedOwners(agentUid: number): ReadonlySet<number> {
  return new Set([0, agentUid]);
}

function who(uid: number): string {
  return uid === 0 ? 'root' : `uid ${uid}`;
}

/** Why this file or directory makes the procedure unsafe, or undefined; pure. */
export function ownershipVerdict(kind: 'file' | 'directory' | 'ancestor', path: string, st: Ownership, trusted: ReadonlySet<number>): string | undefined {
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (!trusted.has(st.uid)) return `${kind === 'file' ? 'the file' : `the directory ${path}`} is owned by ${who(st.uid)}, not by root or the agent's user (${[...trusted].map(who).join(', ')})`;
  if ((st.mode & GROUP_OR_OTHER_WRITE) === 0) return undefined;
  if (kind === 'ancestor' && (st.mode & STICKY) !== 0) return undefined;
  return `${kind === 'file' ? 'the file' : `the directory ${path}`} is writable by ${st.mode & 0o002 ? 'anyone' : 'its group'} (mode ${mode}): chmod go-w`;
}

/**
 * The agent's user, for the unsafe-procedure check from outside the daemon: the daemon runs as
 * its own user (the unit's User=edge-agent), which owns the data directory; the command line
 * may run as root or an operator, so it judges with the data directory's owner, or its own
 * user when there is none. The daemon itself uses its own uid.
 */
export function agentUidFor(dataDir: string): number {
  try {
    return statSync(dataDir).uid;
  } catch {
    return process.getuid?.() ?? 0;
  }
}

/** Every reason the procedure file at `file` is unsafe ([] when it is safe). */
export function safetyProblems(file: string, agentUid: number): string[] {
  const trusted = trustedOwners(agentUid);
  const out: string[] = [];
  let real: string;
  try {
    real = realpathSync(file);
  } catch (err) {
    return [`cannot resolve the file: ${err instanceof Error ? err.message : String(err)}`];
  }
  const st = statSync(real);
  if (!st.isFile()) return ['not a regular file'];
  const f = ownershipVerdict('file', real, st, trusted);
  if (f) out.push(f);
  let dir = dirname(real);
  let kind: 'directory' | 'ancestor' = 'directory';
  for (;;) {
    const d = ownershipVerdict(kind, dir, statSync(dir), trusted);
    if (d) out.push(d);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
    kind = 'ancestor';
  }
  return out;
}
