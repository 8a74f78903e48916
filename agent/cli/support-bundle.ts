/**
 * `edge-agent support-bundle [-o FILE]`: runs the diagnostics suite and writes the support
 * bundle (health/support-bundle.ts) next to it: a .tar.gz with the report, recent logs, the
 * configuration with secrets redacted, slot states, history and incidents. Works with the
 * daemon down. Prints the file's path; exit 0 when written, 1 when not.
 */
import { resolve } from 'node:path';
import { cliDiagContext } from '../../health/diag/context.js';
import { agentStoreReader } from '../store-reader.js';
import { runSuite } from '../../health/diag/suite.js';
import { makeSupportBundle } from '../../health/support-bundle.js';

type Values = Record<string, string | boolean | undefined>;

export function defaultBundleName(gatewayId: string | undefined, now: Date): string {
  return `edge-agent-support-${gatewayId ?? 'unknown'}-${now.toISOString().replace(/[:.]/g, '-')}.tar.gz`;
}

export async function supportBundleCommand(v: Values): Promise<number> {
  const { ctx, close } = await cliDiagContext(v, agentStoreReader);
  try {
    const report = await runSuite(ctx);
    const out = resolve(typeof v.output === 'string' ? v.output : defaultBundleName(ctx.config?.gatewayId, new Date()));
    const b = await makeSupportBundle({ ctx, report, out });
    process.stdout.write(v.json ? JSON.stringify({ path: b.path, bytes: b.bytes, files: b.files, overall: report.overall }, null, 2) + '\n' : `wrote ${b.path} (${b.bytes} bytes, ${b.files.length} files; diagnostics: ${report.overall})\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`edge-agent support-bundle: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    close();
  }
}
