/**
 * The procedure file format (CONTRACT.md section 6) as one zod schema: every key with its type,
 * bounds and default. What a schema alone cannot say (unique step ids, parameter references,
 * argv[0] a literal absolute path, defaults that fit their own declaration) is in validate.ts;
 * docs/maintenance.md describes both.
 */
import { z } from 'zod';
import { checkShapeProblems, METRIC_NAME, type Check } from './checks.js';
import { BUILTIN_ACTIONS, isActionName } from './actions.js';

/** Procedure and step ids. */
export const PROCEDURE_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
export const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** `{{params.NAME}}`, only ever a whole string. */
export const PARAM_REF = /^\{\{params\.([A-Za-z_][A-Za-z0-9_]{0,63})\}\}$/;
const ACTION_NAME = /^[a-z][a-z0-9-]{0,63}$/;
const EVENT_CODE = /^[a-z][a-z0-9-]{0,63}$/;
const HEADER_NAME = /^[A-Za-z0-9-]{1,128}$/;

export const isParamRef = (s: string): boolean => PARAM_REF.test(s);

/** An http(s) URL, or a whole parameter reference (its value is checked when the step runs). */
function httpUrlOk(s: string): boolean {
  if (isParamRef(s)) return true;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

const checkSchema = z.custom<Check>(() => true).superRefine((v, ctx) => {
  for (const p of checkShapeProblems(v, isParamRef)) ctx.addIssue({ code: 'custom', message: p.message, path: p.path });
});
const conditionSchema = z.object({ name: z.string().min(1).max(200).optional(), check: checkSchema }).strict();

const stepId = z.string().regex(PROCEDURE_ID, 'must match [a-z0-9][a-z0-9-]{0,63}');
const baseKeys = {
  id: stepId,
  name: z.string().min(1).max(200).optional(),
  notes: z.string().max(4000).optional(),
  timeoutSec: z.number().int().min(1).max(86_400).optional(),
  retries: z.number().int().min(0).max(10).default(0),
  onFailure: z.enum(['abort', 'continue', 'rollback']).default('abort'),
  validate: conditionSchema.optional(),
  sideEffects: z.boolean().optional(),
};
const message = z.string().min(1).max(2000);

const actionStep = z.object({ ...baseKeys, type: z.literal('action'), action: z.string().regex(ACTION_NAME, 'must be a built-in action name, [a-z][a-z0-9-]{0,63}'), with: z.record(z.string(), z.unknown()).default({}) }).strict();
const commandStep = z
  .object({
    ...baseKeys,
    type: z.literal('command'),
    argv: z.array(z.string().min(1).max(4096)).min(1).max(256),
    okExitCodes: z.array(z.number().int().min(0).max(255)).min(1).default([0]),
  })
  .strict();
const httpStep = z
  .object({
    ...baseKeys,
    type: z.literal('http'),
    method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']).default('GET'),
    url: z.string().min(1).max(4096).refine(httpUrlOk, 'must be an http:// or https:// URL, or a whole {{params.NAME}}'),
    headers: z.record(z.string().regex(HEADER_NAME, 'must be a header name'), z.string().max(8192)).optional(),
    body: z.unknown().optional(),
    expectStatus: z.union([z.number().int().min(100).max(599), z.array(z.number().int().min(100).max(599)).min(1)]).optional(),
  })
  .strict();
const checkStep = z.object({ ...baseKeys, type: z.literal('check'), check: checkSchema }).strict();
const waitStep = z.object({ ...baseKeys, type: z.literal('wait'), seconds: z.number().positive().max(86_400) }).strict();
const logStep = z.object({ ...baseKeys, type: z.literal('log'), message }).strict();
const notifyStep = z
  .object({ ...baseKeys, type: z.literal('notify'), code: z.string().regex(EVENT_CODE, 'must match [a-z][a-z0-9-]{0,63}'), message, severity: z.enum(['info', 'warning', 'critical']).default('info') })
  .strict();
const snapshotStep = z.object({ ...baseKeys, type: z.literal('snapshot'), metrics: z.array(z.string().regex(METRIC_NAME, 'must be a metric name')).optional() }).strict();
const confirmStep = z.object({ ...baseKeys, type: z.literal('confirm'), message, ttlSec: z.number().int().min(1).max(604_800).default(3600) }).strict();

export const STEP_TYPES = ['action', 'command', 'http', 'check', 'wait', 'log', 'notify', 'snapshot', 'confirm'] as const;
export const stepSchema = z.discriminatedUnion('type', [actionStep, commandStep, httpStep, checkStep, waitStep, logStep, notifyStep, snapshotStep, confirmStep]);

const description = z.string().max(2000).optional();
const integerParam = z.object({ type: z.literal('integer'), description, min: z.number().int().optional(), max: z.number().int().optional(), default: z.number().int().optional() }).strict();
const numberParam = z.object({ type: z.literal('number'), description, min: z.number().optional(), max: z.number().optional(), default: z.number().optional() }).strict();
const stringParam = z
  .object({
    type: z.literal('string'),
    description,
    pattern: z.string().min(1).max(1000).optional(),
    enum: z.array(z.string()).min(1).optional(),
    minLength: z.number().int().min(0).max(65_536).default(0),
    maxLength: z.number().int().min(1).max(65_536).default(1024),
    default: z.string().optional(),
  })
  .strict();
const booleanParam = z.object({ type: z.literal('boolean'), description, default: z.boolean().optional() }).strict();
export const paramSchema = z.discriminatedUnion('type', [integerParam, numberParam, stringParam, booleanParam]);

/** Five fields (minute hour day-of-month month day-of-week), or six with seconds first; croner's syntax. */
const CRON_FIELD = /^(\*|\?|L|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(\/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(\/[0-9]+)?)*#?[0-9]?$/;
function cronOk(s: string): boolean {
  const f = s.trim().split(/\s+/);
  return (f.length === 5 || f.length === 6) && f.every((x) => CRON_FIELD.test(x));
}
function timezoneOk(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const scheduleSchema = z
  .object({
    cron: z.string().refine(cronOk, 'must be a cron expression of 5 fields (or 6, seconds first)'),
    timezone: z.string().refine(timezoneOk, 'must be an IANA time zone such as Europe/Madrid').optional(),
    jitterSec: z.number().int().min(0).max(86_400).default(0),
    catchUpSec: z.number().int().min(0).max(604_800).default(0),
  })
  .strict();

const triggersSchema = z
  .object({
    incidents: z.array(z.object({ component: z.string().min(1).max(64), cause: z.string().min(1).max(64).optional() }).strict()).default([]),
    alerts: z.array(z.string().regex(METRIC_NAME, 'must be a metric name')).default([]),
    cooldownSec: z.number().int().min(0).max(604_800).default(3600),
    maxAutoRunsPerDay: z.number().int().min(0).max(1000).default(3),
  })
  .strict();

export const procedureSchema = z
  .object({
    id: z.string().regex(PROCEDURE_ID, 'must match [a-z0-9][a-z0-9-]{0,63}'),
    name: z.string().min(1).max(200),
    description: z.string().max(4000).optional(),
    category: z.enum(['repair', 'maintenance', 'incident', 'diagnostic']).default('maintenance'),
    severity: z.enum(['low', 'medium', 'high', 'critical']).default('low'),
    disruptive: z.boolean().default(false),
    estimatedDurationSec: z.number().int().min(0).max(604_800).optional(),
    maxDurationSec: z.number().int().min(1).max(604_800).default(3600),
    onInterrupt: z.enum(['resume', 'rollback', 'fail']).default('fail'),
    // Parameter names are checked in validate.ts: zod's own message for a bad record key names no rule.
    params: z.record(z.string(), paramSchema).default({}),
    prerequisites: z.array(conditionSchema).default([]),
    steps: z.array(stepSchema).min(1, 'a procedure needs at least one step'),
    rollback: z.array(stepSchema).default([]),
    successCriteria: z.array(conditionSchema).default([]),
    schedule: scheduleSchema.optional(),
    triggers: triggersSchema.optional(),
  })
  .strict();

export type Procedure = z.infer<typeof procedureSchema>;
export type Step = z.infer<typeof stepSchema>;
export type StepType = Step['type'];
export type ParamDecl = z.infer<typeof paramSchema>;
export type ParamValue = number | boolean | string;
export type Condition = z.infer<typeof conditionSchema>;

/**
 * Whether a step changes anything (a dry run reports these `would-run` and runs none of them).
 * Only a `command` step may say `sideEffects: false` of itself; any step may add `true`. An
 * `action` has the side effects its declaration says (actions.ts); an unknown one counts as
 * side-effecting.
 */
export function stepHasSideEffects(step: Step): boolean {
  switch (step.type) {
    case 'command':
      return step.sideEffects ?? true;
    case 'action':
      return step.sideEffects === true || !isActionName(step.action) || BUILTIN_ACTIONS[step.action].sideEffects;
    case 'notify':
      return true;
    case 'http':
      return step.sideEffects === true || (step.method !== 'GET' && step.method !== 'HEAD');
    case 'check':
    case 'wait':
    case 'log':
    case 'snapshot':
    case 'confirm':
      return step.sideEffects === true;
  }
}

/** Whether a run of it may change anything: disruptive, or a step (or rollback step) with side effects. */
export function procedureIsExclusive(p: Pick<Procedure, 'disruptive' | 'steps' | 'rollback'>): boolean {
  return p.disruptive || [...p.steps, ...p.rollback].some(stepHasSideEffects);
}
