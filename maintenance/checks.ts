/**
 * Checks (CONTRACT.md section 6): a structured condition over a metrics snapshot, never an
 * evaluated string. `{metric, op, value}`, combined with `{all: [...]}`, `{any: [...]}` and
 * `{not: ...}`. Pure: the shape check gives problems with their key paths; the evaluator never
 * throws.
 *
 * INVARIANTS
 * - A check whose truth cannot be known (a metric missing from the snapshot, a value of the
 *   wrong type) is `unknown`, and `unknown` is never a pass: `not` of it is `unknown` too
 *   (Kleene's three-valued logic), so a typo in a metric name cannot turn a guard into a pass.
 * - Types never coerce: `"5"` is not `5`, `"true"` is not `true`.
 */
export const OPS = ['<', '<=', '>', '>=', '==', '!='] as const;
export type Op = (typeof OPS)[number];
export type Scalar = number | boolean | string;

export interface MetricCheck {
  metric: string;
  op: Op;
  value: Scalar;
}
export type Check = MetricCheck | { all: Check[] } | { any: Check[] } | { not: Check };

/** A flat map of metric name to value: `disk.data.usedPercent` -> 42. */
export type MetricsSnapshot = Readonly<Record<string, Scalar | null | undefined>>;

export const METRIC_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;
const MAX_DEPTH = 16;

export interface ShapeProblem {
  path: (string | number)[];
  message: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * The problems of a check's shape; [] when it is well formed. `isParamRef` says which string
 * values stand for a parameter (they may be compared with any op; their type is checked where
 * the parameters are known).
 */
export function checkShapeProblems(v: unknown, isParamRef: (s: string) => boolean, path: (string | number)[] = [], depth = 0): ShapeProblem[] {
  if (depth > MAX_DEPTH) return [{ path, message: `checks nest at most ${MAX_DEPTH} deep` }];
  if (!isObject(v)) return [{ path, message: 'expected a check: {metric, op, value}, {all: [...]}, {any: [...]} or {not: ...}' }];
  const keys = Object.keys(v);
  const kind = keys.filter((k) => k === 'metric' || k === 'all' || k === 'any' || k === 'not');
  if (kind.length !== 1 || (kind[0] !== 'metric' && keys.length !== 1)) {
    return [{ path, message: `expected exactly one of metric (with op and value), all, any or not; got keys ${keys.join(', ') || '(none)'}` }];
  }
  if (kind[0] === 'all' || kind[0] === 'any') {
    const list = v[kind[0]];
    if (!Array.isArray(list) || list.length === 0) return [{ path: [...path, kind[0]], message: 'expected a non-empty list of checks' }];
    return list.flatMap((c, i) => checkShapeProblems(c, isParamRef, [...path, kind[0] as string, i], depth + 1));
  }
  if (kind[0] === 'not') return checkShapeProblems(v.not, isParamRef, [...path, 'not'], depth + 1);
  const out: ShapeProblem[] = [];
  const extra = keys.filter((k) => k !== 'metric' && k !== 'op' && k !== 'value');
  if (extra.length > 0) out.push({ path, message: `unknown key${extra.length > 1 ? 's' : ''} ${extra.join(', ')} (a check has metric, op and value)` });
  if (typeof v.metric !== 'string' || !METRIC_NAME.test(v.metric)) out.push({ path: [...path, 'metric'], message: `expected a metric name matching ${METRIC_NAME.source}` });
  if (!(OPS as readonly unknown[]).includes(v.op)) out.push({ path: [...path, 'op'], message: `expected one of ${OPS.join(' ')}` });
  const value = v.value;
  if (!('value' in v) || !(typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string')) {
    out.push({ path: [...path, 'value'], message: 'expected a number, a boolean or a string' });
  } else if (typeof value === 'number' && !Number.isFinite(value)) {
    out.push({ path: [...path, 'value'], message: 'expected a finite number' });
  } else if ((v.op === '<' || v.op === '<=' || v.op === '>' || v.op === '>=') && typeof value !== 'number' && !(typeof value === 'string' && isParamRef(value))) {
    out.push({ path: [...path, 'value'], message: `${String(v.op)} compares numbers: expected a number` });
  }
  return out;
}

export type Truth = 'true' | 'false' | 'unknown';

export interface CheckOutcome {
  ok: boolean;
  truth: Truth;
  /** Why, in words a person reads: the leaves that decided it, with their values. */
  reason: string;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function leaf(c: MetricCheck, metrics: MetricsSnapshot): { truth: Truth; reason: string } {
  const has = Object.hasOwn(metrics, c.metric);
  const actual = has ? metrics[c.metric] : undefined;
  const text = `${c.metric} ${c.op} ${show(c.value)}`;
  if (!has) return { truth: 'unknown', reason: `unknown metric ${c.metric}` };
  if (actual === null || actual === undefined) return { truth: 'unknown', reason: `${c.metric} has no value` };
  if (typeof actual !== typeof c.value) return { truth: 'unknown', reason: `${c.metric} is ${show(actual)} (${typeof actual}), not comparable with ${show(c.value)} (${typeof c.value})` };
  if (typeof actual === 'number' && Number.isNaN(actual)) return { truth: 'unknown', reason: `${c.metric} is not a number` };
  let r: boolean;
  switch (c.op) {
    case '==':
      r = actual === c.value;
      break;
    case '!=':
      r = actual !== c.value;
      break;
    case '<':
    case '<=':
    case '>':
    case '>=': {
      if (typeof actual !== 'number' || typeof c.value !== 'number') return { truth: 'unknown', reason: `${c.op} compares numbers; ${c.metric} is ${show(actual)}` };
      const a = actual;
      const b = c.value;
      r = c.op === '<' ? a < b : c.op === '<=' ? a <= b : c.op === '>' ? a > b : a >= b;
    }
  }
  return { truth: r ? 'true' : 'false', reason: `${text}: ${c.metric} is ${show(actual)}` };
}

function evalCheck(c: Check, metrics: MetricsSnapshot): { truth: Truth; reason: string } {
  if ('metric' in c) return leaf(c, metrics);
  if ('not' in c) {
    const inner = evalCheck(c.not, metrics);
    return { truth: inner.truth === 'unknown' ? 'unknown' : inner.truth === 'true' ? 'false' : 'true', reason: `not (${inner.reason})` };
  }
  const isAll = 'all' in c;
  const parts = (isAll ? c.all : c.any).map((x) => evalCheck(x, metrics));
  // all: one false decides; any: one true decides; otherwise an unknown leaves it unknown.
  const decisive = parts.filter((p) => p.truth === (isAll ? 'false' : 'true'));
  if (decisive.length > 0) return { truth: isAll ? 'false' : 'true', reason: decisive.map((p) => p.reason).join('; ') };
  const unknown = parts.filter((p) => p.truth === 'unknown');
  if (unknown.length > 0) return { truth: 'unknown', reason: unknown.map((p) => p.reason).join('; ') };
  return { truth: isAll ? 'true' : 'false', reason: parts.map((p) => p.reason).join('; ') };
}

/** Evaluates a well-formed check over a snapshot; pure, never throws. */
export function evaluateCheck(check: Check, metrics: MetricsSnapshot): CheckOutcome {
  try {
    const { truth, reason } = evalCheck(check, metrics);
    return { ok: truth === 'true', truth, reason };
  } catch (err) {
    // A malformed check that slipped past validation is a failed check, not a crash.
    return { ok: false, truth: 'unknown', reason: `the check cannot be evaluated: ${err instanceof Error ? err.message : String(err)}` };
  }
}
