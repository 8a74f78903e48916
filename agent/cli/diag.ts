/**
 * `edge-agent diag [--json]`: the diagnostics suite from the command line. It runs the checks
 * itself (configuration, store read-only, files, network), so it works with the daemon down;
 * when the daemon answers, what only the daemon knows (its link, loops, components) is added.
 * Exit status: 0 all ok, 1 warnings, 2 failures (CONTRACT.md section 5).
 */
import { cliDiagContext } from '../../health/diag/context.js';
import { agentStoreReader } from '../store-reader.js';
import { formatReport, useColor } from '../../health/diag/report.js';
import { runSuite } from '../../health/diag/suite.js';
import { GROUPS, type GroupName } from '../../health/diag/types.js';

type Values = Record<string, string | boolean | undefined>;

/** --only a,b: a subset of the groups; undefined for all. Throws on an unknown name. */
export function parseOnly(v: string | boolean | undefined): GroupName[] | undefined {
  if (typeof v !== 'string') return undefined;
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(GROUPS as readonly string[]).includes(n));
  if (bad.length > 0 || names.length === 0) throw new Error(`--only takes a comma-separated list of ${GROUPS.join(', ')}; got ${v}`);
  return names as GroupName[];
}

export async function diagCommand(v: Values): Promise<number> {
  let only: GroupName[] | undefined;
  try {
    only = parseOnly(v.only);
  } catch (err) {
    process.stderr.write(`edge-agent diag: ${(err as Error).message}\n`);
    return 64;
  }
  const { ctx, close } = await cliDiagContext(v, agentStoreReader);
  try {
    const report = await runSuite(ctx, only);
    process.stdout.write(v.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report, { color: useColor(process.stdout, process.env) }));
    return report.exitCode;
  } finally {
    close();
  }
}
