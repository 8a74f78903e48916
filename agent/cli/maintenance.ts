/**
 * `edge-agent maintenance list|show ID|validate FILE` (CONTRACT.md sections 5 and 6): the
 * procedures on this gateway, read from the files (the shipped ones and
 * `maintenance.proceduresDir`), so they work when the daemon is not running. Running
 * procedures is not built yet (docs/maintenance.md).
 *
 * Exit statuses: list: 0 every procedure is valid, 1 one is invalid or unsafe or a directory
 * could not be read; show: 0 valid, 1 invalid or unsafe (its problems are printed), 2 no such
 * procedure; validate: 0 valid, 1 invalid, 66 the file cannot be read; 64 a usage error; 78
 * the agent's configuration is invalid.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { errorMessage } from '../../lib/errors.js';
import { loadCatalog, MAX_PROCEDURE_BYTES, shippedProceduresDir, type Catalog } from '../../maintenance/catalog.js';
import { agentUidFor } from '../../maintenance/safety.js';
import { validateProcedureText } from '../../maintenance/validate.js';
import { contextOrExit } from './context.js';
import { entryJson, formatList, formatShow, problemJson } from './maintenance-format.js';
import { MAINTENANCE_USAGE } from './maintenance-usage.js';

type Values = Record<string, string | boolean | undefined>;
const NAME = 'edge-agent maintenance';

function usage(message: string): number {
  process.stderr.write(`${NAME}: ${message}\n\nUsage: ${MAINTENANCE_USAGE}\n`);
  return 64;
}

function catalogOrExit(v: Values): { catalog: Catalog; operatorDir: string; shippedDir: string } | number {
  const ctx = contextOrExit(NAME, v);
  if (typeof ctx === 'number') return ctx;
  const operatorDir = ctx.config.maintenance.proceduresDir;
  const shippedDir = shippedProceduresDir();
  return { catalog: loadCatalog({ shippedDir, operatorDir, agentUid: agentUidFor(ctx.config.dataDir) }), operatorDir, shippedDir };
}

function list(v: Values): number {
  const c = catalogOrExit(v);
  if (typeof c === 'number') return c;
  const { catalog } = c;
  if (v.json) {
    process.stdout.write(
      JSON.stringify({ proceduresDir: c.operatorDir, shippedDir: c.shippedDir, procedures: catalog.entries.map((e) => entryJson(e, false)), problems: catalog.problems.map(problemJson) }, null, 2) + '\n',
    );
  } else {
    process.stdout.write(formatList(catalog.entries, catalog.problems));
  }
  return catalog.problems.length === 0 && catalog.entries.every((e) => e.status === 'valid') ? 0 : 1;
}

function show(id: string, v: Values): number {
  const c = catalogOrExit(v);
  if (typeof c === 'number') return c;
  const e = c.catalog.entries.find((x) => x.id === id && x.file.endsWith('.yaml'));
  if (!e) {
    const ids = c.catalog.entries.map((x) => x.id);
    process.stderr.write(`${NAME}: unknown-procedure: no procedure ${JSON.stringify(id)} on this gateway${ids.length > 0 ? ` (there are: ${ids.join(', ')})` : ''}\n`);
    if (v.json) process.stdout.write(JSON.stringify({ ok: false, code: 'unknown-procedure', id }) + '\n');
    return 2;
  }
  process.stdout.write(v.json ? JSON.stringify(entryJson(e, true), null, 2) + '\n' : formatShow(e));
  if (e.status !== 'valid') process.stderr.write(`${NAME}: ${e.status === 'unsafe' ? 'unsafe-procedure' : 'invalid-procedure'}: ${e.file} cannot run (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'})\n`);
  return e.status === 'valid' ? 0 : 1;
}

function validate(file: string, v: Values): number {
  let bytes: Buffer;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_PROCEDURE_BYTES) throw new Error(`larger than ${MAX_PROCEDURE_BYTES} bytes`);
    bytes = readFileSync(file);
  } catch (err) {
    process.stderr.write(`${NAME}: cannot read ${file}: ${errorMessage(err)}\n`);
    return 66;
  }
  const name = basename(file);
  const expectedId = /\.yaml$/.test(name) ? name.slice(0, -'.yaml'.length) : undefined;
  const r = validateProcedureText(bytes, file, expectedId);
  const problems = expectedId === undefined ? [{ file, path: '(file)', message: `a procedure is installed as {id}.yaml; ${name} is not` }, ...r.problems] : r.problems;
  const ok = problems.length === 0;
  if (v.json) {
    process.stdout.write(JSON.stringify({ ok, file, id: r.procedure?.id ?? null, definitionSha256: r.definitionSha256, problems: problems.map(problemJson), procedure: ok ? (r.procedure ?? null) : null }, null, 2) + '\n');
  } else if (ok && r.procedure) {
    process.stdout.write(`${file}: valid procedure ${r.procedure.id} (${r.procedure.steps.length} step${r.procedure.steps.length === 1 ? '' : 's'}, sha256 ${r.definitionSha256})\n`);
  }
  if (!ok) {
    process.stderr.write(`${NAME}: invalid-procedure: ${file} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}\n`);
  }
  return ok ? 0 : 1;
}

export async function maintenanceCommand(v: Values, positionals: string[]): Promise<number> {
  const [action, arg, ...extra] = positionals;
  if (extra.length > 0) return usage(`unexpected ${extra.join(' ')}`);
  switch (action) {
    case 'list':
      return arg === undefined ? list(v) : usage('list takes no argument');
    case 'show':
      return arg === undefined ? usage('show needs a procedure id') : show(arg, v);
    case 'validate':
      return arg === undefined ? usage('validate needs a FILE') : validate(arg, v);
    case 'schedule':
      return arg === undefined ? (await import('./maintenance-schedule.js')).scheduleCommand(v) : usage('schedule takes no argument');
    case undefined:
      return usage('which one: list, show ID or validate FILE?');
    default:
      return usage(`unknown action ${JSON.stringify(action)}${['run', 'reports', 'report', 'schedule'].includes(action) ? ' (not built yet in this release: see docs/maintenance.md)' : ''}`);
  }
}
