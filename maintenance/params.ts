/**
 * A run's parameters (CONTRACT.md section 6): checked against the procedure's declaration before
 * anything starts, then substituted only where `{{params.NAME}}` is a whole string. Pure.
 *
 * INVARIANTS
 * - A value is never split, joined into a larger string or interpreted: in an argv element it
 *   is that one element (`; rm -rf /` stays one argument, no shell ever sees it); in a JSON value
 *   (`with`, an http `body`, a check's `value`) it is that value with its type.
 * - Every problem is reported at once; an unknown parameter is a problem, never ignored.
 */
import { MaintenanceError, type Problem } from './errors.js';
import type { Check } from './checks.js';
import { PARAM_REF, type ParamDecl, type ParamValue, type Procedure, type Step } from './schema.js';

export type ParamValues = Readonly<Record<string, ParamValue>>;

/** Why `value` does not fit `decl`, or undefined when it does. */
export function paramValueProblem(decl: ParamDecl, value: unknown): string | undefined {
  switch (decl.type) {
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return `expected ${decl.type === 'integer' ? 'an integer' : 'a number'}, got ${describe(value)}`;
      if (decl.type === 'integer' && !Number.isSafeInteger(value)) return `expected an integer, got ${value}`;
      if (decl.min !== undefined && value < decl.min) return `${value} is below the minimum ${decl.min}`;
      if (decl.max !== undefined && value > decl.max) return `${value} is above the maximum ${decl.max}`;
      return undefined;
    }
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `expected true or false, got ${describe(value)}`;
    case 'string': {
      if (typeof value !== 'string') return `expected a string, got ${describe(value)}`;
      // An argv element cannot hold NUL; refusing it here keeps "one value, one argument" true.
      if (value.includes('\0')) return 'a string parameter may not contain NUL';
      if (value.length < decl.minLength) return `expected at least ${decl.minLength} characters, got ${value.length}`;
      if (value.length > decl.maxLength) return `expected at most ${decl.maxLength} characters, got ${value.length}`;
      if (decl.enum && !decl.enum.includes(value)) return `expected one of ${decl.enum.map((e) => JSON.stringify(e)).join(', ')}`;
      if (decl.pattern !== undefined) {
        let re: RegExp;
        try {
          re = new RegExp(decl.pattern, 'u');
        } catch {
          return `the declared pattern does not compile`;
        }
        if (!re.test(value)) return `${JSON.stringify(value.length > 80 ? value.slice(0, 80) + '...' : value)} does not match ${decl.pattern}`;
      }
      return undefined;
    }
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${v}`;
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** Problems of a declaration itself (bounds in order, pattern compiles, default fits); for validate.ts. */
export function declarationProblems(decl: ParamDecl): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  if ((decl.type === 'integer' || decl.type === 'number') && decl.min !== undefined && decl.max !== undefined && decl.min > decl.max) out.push({ key: 'min', message: `min ${decl.min} is above max ${decl.max}` });
  if (decl.type === 'string') {
    if (decl.minLength > decl.maxLength) out.push({ key: 'minLength', message: `minLength ${decl.minLength} is above maxLength ${decl.maxLength}` });
    if (decl.pattern !== undefined) {
      try {
        new RegExp(decl.pattern, 'u');
      } catch (err) {
        out.push({ key: 'pattern', message: `not a valid regular expression: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
    for (const [i, e] of (decl.enum ?? []).entries()) {
      const p = paramValueProblem({ ...decl, enum: undefined }, e);
      if (p) out.push({ key: `enum[${i}]`, message: p });
    }
  }
  if (decl.default !== undefined) {
    const p = paramValueProblem(decl, decl.default);
    if (p && !out.some((o) => o.key === 'pattern')) out.push({ key: 'default', message: `the default does not fit the declaration: ${p}` });
  }
  return out;
}

/**
 * A run's parameters, checked whole against the declaration: defaults filled in, a parameter
 * without a default required, unknown ones refused. Throws `invalid-params` with every problem.
 */
export function resolveParams(procedure: Pick<Procedure, 'id' | 'params'>, given: Readonly<Record<string, unknown>> | undefined): Record<string, ParamValue> {
  const problems: Problem[] = [];
  const values: Record<string, ParamValue> = {};
  const input = given ?? {};
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new MaintenanceError('invalid-params', `the parameters of ${procedure.id} must be an object`, [{ path: 'params', message: 'expected an object' }]);
  }
  for (const name of Object.keys(input)) {
    if (!Object.hasOwn(procedure.params, name)) problems.push({ path: `params.${name}`, message: `unknown parameter (${procedure.id} declares ${Object.keys(procedure.params).join(', ') || 'none'})` });
  }
  for (const [name, decl] of Object.entries(procedure.params)) {
    const v = Object.hasOwn(input, name) ? input[name] : decl.default;
    if (v === undefined) {
      problems.push({ path: `params.${name}`, message: 'required (it has no default)' });
      continue;
    }
    const p = paramValueProblem(decl, v);
    if (p) problems.push({ path: `params.${name}`, message: p });
    else values[name] = v as ParamValue;
  }
  if (problems.length > 0) {
    throw new MaintenanceError('invalid-params', `invalid parameters for ${procedure.id} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.map((p) => `${p.path}: ${p.message}`).join('\n  ')}`, problems);
  }
  return values;
}

/**
 * `--param K=V` from the command line: the text becomes the declared type (an integer param
 * takes `7`, a boolean `true`/`false`); what does not convert is left as text for resolveParams
 * to refuse with its reason. The first `=` splits; the value may hold more.
 */
export function parseParamArgs(procedure: Pick<Procedure, 'params'>, args: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i <= 0) throw new MaintenanceError('invalid-params', `--param takes NAME=VALUE; got ${JSON.stringify(a)}`, [{ path: 'params', message: `not NAME=VALUE: ${a}` }]);
    const name = a.slice(0, i);
    const text = a.slice(i + 1);
    const decl = Object.hasOwn(procedure.params, name) ? procedure.params[name] : undefined;
    if ((decl?.type === 'integer' && /^-?\d+$/.test(text)) || (decl?.type === 'number' && text.trim() !== '' && Number.isFinite(Number(text)))) out[name] = Number(text);
    else if (decl?.type === 'boolean' && (text === 'true' || text === 'false')) out[name] = text === 'true';
    else out[name] = text;
  }
  return out;
}

/** A whole-string reference's parameter name, or undefined. */
export function paramRefName(s: string): string | undefined {
  return PARAM_REF.exec(s)?.[1];
}

function asText(v: ParamValue): string {
  return typeof v === 'string' ? v : String(v);
}

/** A JSON value with every whole-string reference replaced by its value, types kept. */
export function substituteValue(value: unknown, params: ParamValues): unknown {
  if (typeof value === 'string') {
    const name = paramRefName(value);
    return name !== undefined && Object.hasOwn(params, name) ? params[name] : value;
  }
  if (Array.isArray(value)) return value.map((v) => substituteValue(v, params));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteValue(v, params)]));
  return value;
}

/** A string field: a whole reference becomes the value's text; anything else stays as written. */
export function substituteText(s: string, params: ParamValues): string {
  const name = paramRefName(s);
  return name !== undefined && Object.hasOwn(params, name) ? asText(params[name] as ParamValue) : s;
}

/** A step as it will run: references replaced in argv, url, headers, body, with, messages and check values. */
export function substituteStep<S extends Step>(step: S, params: ParamValues): S {
  const s: Step = step.validate ? { ...step, validate: { ...step.validate, check: substituteValue(step.validate.check, params) as Check } } : step;
  switch (s.type) {
    case 'command':
      return { ...s, argv: s.argv.map((a) => substituteText(a, params)) } as S;
    case 'action':
      return { ...s, with: substituteValue(s.with, params) as Record<string, unknown> } as S;
    case 'http':
      return {
        ...s,
        url: substituteText(s.url, params),
        ...(s.headers ? { headers: Object.fromEntries(Object.entries(s.headers).map(([k, v]) => [k, substituteText(v, params)])) } : {}),
        ...(s.body !== undefined ? { body: substituteValue(s.body, params) } : {}),
      } as S;
    case 'check':
      return { ...s, check: substituteValue(s.check, params) as Check } as S;
    case 'log':
    case 'notify':
    case 'confirm':
      return { ...s, message: substituteText(s.message, params) } as S;
    case 'wait':
    case 'snapshot':
      return s as S;
  }
}
