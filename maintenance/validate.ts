/**
 * Validates a procedure file whole: YAML syntax, the schema (schema.ts), then the rules a schema
 * cannot say. Every problem comes back at once, each with its file and dotted key path. Pure: it
 * takes the file's text; the catalog (catalog.ts) reads the files.
 *
 * The extra rules run on the raw document too when the schema fails, so one pass lists all:
 * - the `id` is the file's name (`{id}.yaml`);
 * - step ids are unique across `steps` and `rollback`;
 * - `{{params.NAME}}` names a declared parameter, and `{{...}}` appears only as a whole string;
 * - `argv[0]` is a literal absolute path (a parameter never chooses the program);
 * - parameter names match [A-Za-z_][A-Za-z0-9_]{0,63};
 * - a declaration's bounds are in order, its pattern compiles, its default fits it;
 * - `<`, `<=`, `>`, `>=` against a parameter need a number parameter;
 * - a rollback step cannot itself say `onFailure: rollback`;
 * - an `action` step names a built-in action (actions.ts) and gives it only parameters it takes,
 *   of their types.
 */
import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import { formatPath } from '../core/config.js';
import type { Problem } from './errors.js';
import { declarationProblems, paramRefName } from './params.js';
import { actionProblems } from './actions.js';
import { PARAM_NAME, paramSchema, procedureSchema, type Procedure } from './schema.js';

export interface Validated {
  /** The procedure with its defaults, when there is no problem. */
  procedure: Procedure | undefined;
  problems: Problem[];
  definitionSha256: string;
}

type Path = (string | number)[];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Keys whose strings are never substituted (they are shown, not used). */
const NOT_SUBSTITUTED = new Set(['id', 'name', 'notes', 'type']);

function walkStrings(v: unknown, path: Path, visit: (s: string, path: Path) => void): void {
  if (typeof v === 'string') visit(v, path);
  else if (Array.isArray(v)) v.forEach((x, i) => walkStrings(x, [...path, i], visit));
  else if (isObject(v)) for (const [k, x] of Object.entries(v)) if (!(path.length <= 2 && NOT_SUBSTITUTED.has(k))) walkStrings(x, [...path, k], visit);
}

/** Leaf checks `{metric, op, value}` anywhere under v. */
function leafChecks(v: unknown, path: Path, out: { leaf: Record<string, unknown>; path: Path }[]): void {
  if (Array.isArray(v)) v.forEach((x, i) => leafChecks(x, [...path, i], out));
  else if (isObject(v)) {
    if (typeof v.metric === 'string' && 'op' in v) out.push({ leaf: v, path });
    for (const [k, x] of Object.entries(v)) leafChecks(x, [...path, k], out);
  }
}

/** The rules beyond the schema, on the raw document (tolerant of any shape). */
export function extraProblems(doc: unknown, expectedId: string | undefined): { path: Path; message: string }[] {
  const out: { path: Path; message: string }[] = [];
  if (!isObject(doc)) return out;
  if (expectedId !== undefined && typeof doc.id === 'string' && doc.id !== expectedId) {
    out.push({ path: ['id'], message: `the id ${JSON.stringify(doc.id)} must be the file's name (${expectedId}.yaml)` });
  }
  const declared = isObject(doc.params) ? doc.params : {};
  for (const [name, raw] of Object.entries(declared)) {
    if (!PARAM_NAME.test(name)) out.push({ path: ['params', name], message: 'a parameter name must match [A-Za-z_][A-Za-z0-9_]{0,63}' });
    const d = paramSchema.safeParse(raw);
    if (d.success) for (const p of declarationProblems(d.data)) out.push({ path: ['params', name, ...p.key.split(/[[\]]/).filter(Boolean).map((x) => (/^\d+$/.test(x) ? Number(x) : x))], message: p.message });
  }
  const seen = new Map<string, string>();
  for (const list of ['steps', 'rollback'] as const) {
    const steps = doc[list];
    if (!Array.isArray(steps)) continue;
    steps.forEach((step, i) => {
      if (!isObject(step)) return;
      const at: Path = [list, i];
      if (typeof step.id === 'string') {
        const first = seen.get(step.id);
        if (first !== undefined) out.push({ path: [...at, 'id'], message: `the step id ${step.id} is already used by ${first}` });
        else seen.set(step.id, formatPath(at));
      }
      if (step.type === 'command' && Array.isArray(step.argv) && typeof step.argv[0] === 'string') {
        const prog = step.argv[0];
        if (paramRefName(prog) !== undefined || prog.includes('{{')) out.push({ path: [...at, 'argv', 0], message: 'the program (argv[0]) must be written in the procedure, never a parameter' });
        else if (!prog.startsWith('/')) out.push({ path: [...at, 'argv', 0], message: `the program must be an absolute path (got ${JSON.stringify(prog)}): no PATH lookup` });
      }
      if (step.type === 'action') for (const p of actionProblems(step.action, step.with, (x) => paramRefName(x) !== undefined)) out.push({ path: [...at, ...p.key], message: p.message });
      if (list === 'rollback' && step.onFailure === 'rollback') out.push({ path: [...at, 'onFailure'], message: 'a rollback step cannot roll back: use abort or continue' });
    });
  }
  for (const key of ['steps', 'rollback', 'prerequisites', 'successCriteria'] as const) {
    walkStrings(doc[key], [key], (s, path) => {
      const name = paramRefName(s);
      if (name !== undefined) {
        if (!Object.hasOwn(declared, name)) out.push({ path, message: `{{params.${name}}} names no declared parameter (declared: ${Object.keys(declared).join(', ') || 'none'})` });
      } else if (s.includes('{{') || s.includes('}}')) {
        out.push({ path, message: 'a parameter is used only as a whole string, exactly "{{params.NAME}}": never inside a longer string' });
      }
    });
    const leaves: { leaf: Record<string, unknown>; path: Path }[] = [];
    leafChecks(doc[key], [key], leaves);
    for (const { leaf, path } of leaves) {
      const name = typeof leaf.value === 'string' ? paramRefName(leaf.value) : undefined;
      const decl = name !== undefined && isObject(declared[name]) ? declared[name] : undefined;
      if (decl && ['<', '<=', '>', '>='].includes(String(leaf.op)) && decl.type !== 'integer' && decl.type !== 'number') {
        out.push({ path: [...path, 'value'], message: `${String(leaf.op)} compares numbers, but the parameter ${name} is a ${String(decl.type)}` });
      }
    }
  }
  return out;
}

/**
 * Validates a procedure file's bytes. `file` names it in the problems; `expectedId` (the file's
 * name without `.yaml`) must be its id when given.
 */
export function validateProcedureText(bytes: Uint8Array | string, file: string, expectedId?: string): Validated {
  const definitionSha256 = sha256(bytes);
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8');
  const yaml = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (yaml.errors.length > 0) {
    return { procedure: undefined, definitionSha256, problems: yaml.errors.map((e) => ({ file, path: '(file)', message: `not valid YAML: ${e.message.split('\n')[0] ?? e.message}` })) };
  }
  const doc = yaml.toJS() as unknown;
  if (!isObject(doc)) return { procedure: undefined, definitionSha256, problems: [{ file, path: '(top level)', message: 'a procedure is a mapping of keys to values' }] };
  const parsed = procedureSchema.safeParse(doc);
  const problems: Problem[] = parsed.success ? [] : parsed.error.issues.map((i) => ({ file, path: formatPath(i.path), message: i.message }));
  for (const p of extraProblems(doc, expectedId)) problems.push({ file, path: formatPath(p.path), message: p.message });
  return { procedure: parsed.success && problems.length === 0 ? parsed.data : undefined, problems, definitionSha256 };
}
