/**
 * `edge-agent maintenance list|show ID|validate FILE|run ID|reports|report RUN` (CONTRACT.md
 * sections 5 and 6). list, show and validate read the files (the shipped procedures and
 * `maintenance.proceduresDir`); reports and report read the store; all of them work when the
 * daemon is not running. `run` asks the daemon (admin socket), as if the WMS had sent the
 * `maintenance` operation, and follows the run until its report.
 *
 * Exit statuses: list: 0 every procedure is valid, 1 one is invalid or unsafe or a directory
 * could not be read; show: 0 valid, 1 invalid or unsafe (its problems are printed), 2 no such
 * procedure; validate: 0 valid, 1 invalid, 66 the file cannot be read; run: 0 succeeded, 1 the
 * run ended otherwise (failed, rolled-back, cancelled, interrupted), 2 rejected (its code:
 * unknown-procedure, invalid-params, ...), 3 the daemon is not running; report: 0, 2 no such
 * run; 64 a usage error; 78 the agent's configuration is invalid.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { errorMessage } from '../../lib/errors.js';
import { loadCatalog, MAX_PROCEDURE_BYTES, shippedProceduresDir, type Catalog } from '../../maintenance/catalog.js';
import { agentUidFor } from '../../maintenance/safety.js';
import { validateProcedureText } from '../../maintenance/validate.js';
import { RunStore } from '../../maintenance/run-store.js';
import { parseParamArgs } from '../../maintenance/params.js';
import { contextOrExit, limitOption, withStoreReadonly } from './context.js';
import { entryJson, formatList, formatReport, formatReports, formatShow, problemJson } from './maintenance-format.js';
import { exitOf, follow, reasonLine, submit } from './operations.js';
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

/** The store's runs, or undefined when the store (or its table) is not there yet. */
function withRuns<T>(v: Values, read: (runs: RunStore) => T): T | undefined | number {
  const ctx = contextOrExit(NAME, v);
  if (typeof ctx === 'number') return ctx;
  try {
    return withStoreReadonly(ctx.store, (db) => read(new RunStore(db)));
  } catch (err) {
    // An agent that never ran a procedure (or an older one) has no maintenance_runs table.
    if (/no such table/.test(errorMessage(err))) return undefined;
    throw err;
  }
}

function reports(v: Values): number {
  const limit = limitOption(NAME, v.limit, 20);
  if (limit === undefined) return 64;
  const list = withRuns(v, (runs) => runs.list(limit));
  if (typeof list === 'number') return list;
  if (v.json) process.stdout.write(JSON.stringify({ reports: list ?? [] }, null, 2) + '\n');
  else process.stdout.write(formatReports(list ?? []));
  return 0;
}

function report(runId: string, v: Values): number {
  const row = withRuns(v, (runs) => runs.get(runId));
  if (typeof row === 'number') return row;
  if (!row) {
    process.stderr.write(`${NAME}: no procedure run ${JSON.stringify(runId)} in the store (edge-agent maintenance reports lists them)\n`);
    return 2;
  }
  const rep = row.report ?? { runId, procedure: row.procedure.id, state: row.record.state, ok: false, note: 'the run has not ended yet: its report is written when it ends' };
  process.stdout.write(v.json ? JSON.stringify(rep, null, 2) + '\n' : formatReport(rep));
  return 0;
}

async function run(id: string, v: Values): Promise<number> {
  const name = `${NAME} run`;
  const timeoutSec = typeof v.timeout === 'string' ? Number(v.timeout) : 24 * 3600;
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) return usage(`--timeout must be a positive number of seconds, got ${JSON.stringify(v.timeout)}`);
  const priority = typeof v.priority === 'string' ? v.priority : undefined;
  if (priority !== undefined && !['low', 'normal', 'high'].includes(priority)) return usage('--priority is low, normal or high');
  const c = catalogOrExit(v);
  if (typeof c === 'number') return c;
  // --param K=V takes the declared type of K (an integer parameter gets a number); the daemon
  // checks the values against the declaration, the same as for the WMS.
  const decl = c.catalog.entries.find((e) => e.id === id)?.procedure;
  const raw = ([] as string[]).concat((v.param as unknown as string[] | undefined) ?? []);
  let params: Record<string, unknown>;
  try {
    params = parseParamArgs(decl ?? { params: {} }, raw);
  } catch (err) {
    process.stderr.write(`${name}: invalid-params: ${errorMessage(err)}\n`);
    return 2;
  }
  const ctx = contextOrExit(NAME, v);
  if (typeof ctx === 'number') return ctx;
  const cmd = await submit(name, ctx, 'maintenance', { procedure: id, params, dryRun: !!v['dry-run'], force: !!v.force }, priority ? { priority } : {});
  if (typeof cmd === 'number') return cmd;
  if (!v.json) process.stdout.write(`${id}${v['dry-run'] ? ' (dry run)' : ''}: run ${cmd}\n`);
  if (v.detach) {
    if (v.json) process.stdout.write(JSON.stringify({ runId: cmd }) + '\n');
    return 0;
  }
  const s = await follow(ctx, cmd, timeoutSec, (st) => {
    if (v.json) return;
    if (st.status === 'executing' && st.progress?.step) process.stdout.write(`  ${st.progress.step}${st.progress.percent !== undefined ? ` (${st.progress.percent} %)` : ''}\n`);
    else if (st.status === 'accepted') process.stdout.write('  waiting in the operation queue\n');
  });
  if (!s) {
    process.stderr.write(`${name}: no outcome within ${timeoutSec} s; the run goes on: edge-agent operations, edge-agent maintenance report ${cmd}\n`);
    return 1;
  }
  if (v.json) process.stdout.write(JSON.stringify(s.result ?? s, null, 2) + '\n');
  else if (s.result) process.stdout.write(formatReport(s.result as Record<string, unknown>));
  if (s.status !== 'successful') process.stderr.write(reasonLine(name, s));
  return exitOf(s);
}

export async function maintenanceCommand(v: Values, positionals: string[]): Promise<number> {
  const [action, arg, ...extra] = positionals;
  if (extra.length > 0) return usage(`unexpected ${extra.join(' ')}`);
  switch (action) {
    case 'run':
      return arg === undefined ? usage('run needs a procedure id') : run(arg, v);
    case 'reports':
      return arg === undefined ? reports(v) : usage('reports takes no argument (report RUN shows one)');
    case 'report':
      return arg === undefined ? usage('report needs a run id (edge-agent maintenance reports lists them)') : report(arg, v);
    case 'list':
      return arg === undefined ? list(v) : usage('list takes no argument');
    case 'show':
      return arg === undefined ? usage('show needs a procedure id') : show(arg, v);
    case 'validate':
      return arg === undefined ? usage('validate needs a FILE') : validate(arg, v);
    case undefined:
      return usage('which one: list, show ID, validate FILE, run ID, reports or report RUN?');
    default:
      return usage(`unknown action ${JSON.stringify(action)}${action === 'schedule' ? ' (not built yet in this release: see docs/maintenance.md)' : ''}`);
  }
}
