/**
 * Check `data-dir` (group storage): who can read the agent's data directory and its state store.
 * The store holds command history, incidents and queued messages; a directory that others (not
 * the agent's user, not its group) can read or enter exposes them, and whatever a file created
 * there under a loose umask holds. The agent creates the store 0640, but an existing directory's
 * mode is the installer's choice: this says when it is too open.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errText, ok, warning, type CheckResult } from './types.js';

const octal = (mode: number): string => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/** The verdict on the directory's and the store's modes; pure. `storeMode` undefined: no store yet. */
export function dataDirVerdict(dir: string, dirMode: number, storeMode: number | undefined): CheckResult {
  const details = { path: dir, mode: octal(dirMode), storeMode: storeMode === undefined ? null : octal(storeMode) };
  const fix = `chmod 0750 ${dir}; chmod 0640 ${join(dir, 'agent.db')}*`;
  if (dirMode & 0o007) return warning('data-dir', `others can read or enter the data directory ${dir} (mode ${octal(dirMode)}): it holds the command history and queued messages`, fix, details);
  if (storeMode !== undefined && storeMode & 0o007) return warning('data-dir', `others can read the state store in ${dir} (mode ${octal(storeMode)})`, fix, details);
  return ok('data-dir', `only the agent's user and group can read ${dir} (mode ${octal(dirMode)})`, details);
}

export async function dataDirCheck(dir: string): Promise<CheckResult> {
  let dirMode: number;
  try {
    dirMode = (await stat(dir)).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ok('data-dir', `${dir} does not exist yet`);
    return warning('data-dir', `cannot read the mode of ${dir}: ${errText(err)}`, 'check the path and its permissions');
  }
  const storeMode = await stat(join(dir, 'agent.db')).then(
    (s) => s.mode,
    () => undefined,
  );
  return dataDirVerdict(dir, dirMode, storeMode);
}
