/**
 * The `maintenance`, `pause`, `resume` and `confirm` operations (CONTRACT.md sections 2 and 6),
 * over the procedure runner (maintenance/runner.ts). `cancel` is the router's own: it aborts the
 * run's signal, and the runner stops at the boundary (or kills the running command) and rolls back.
 *
 * - Admission, at intake (never executed when refused): the procedure exists, is valid and safe,
 *   its parameters fit their declaration; a disruptive one outside a maintenance window needs
 *   `force`. Codes: unknown-procedure, invalid-procedure, unsafe-procedure, invalid-params,
 *   outside-window.
 * - Exclusive per command: a run that may change anything waits in the router's one queue with
 *   updates and rollbacks; a dry run or a read-only procedure runs beside them.
 * - The run id is the command id: `pause`, `resume`, `cancel` and `confirm` name it as `target`.
 */
import { z } from 'zod';
import { errorCode, errorMessage } from '../../lib/errors.js';
import type { OperationContext, OperationHandler, OperationOutcome, Origin, Reason } from '../../core/ports.js';
import { runnableProcedure, type Catalog } from '../../maintenance/catalog.js';
import { resolveParams } from '../../maintenance/params.js';
import { procedureIsExclusive, type ParamValue, type Procedure } from '../../maintenance/schema.js';
import type { RunEnd, Runner } from '../../maintenance/runner.js';

const runForm = z
  .object({
    procedure: z.string().min(1).max(64),
    params: z.record(z.string(), z.unknown()).optional(),
    dryRun: z.boolean().default(false),
    force: z.boolean().default(false),
  })
  .strict();
const windowForm = z
  .object({ window: z.object({ id: z.string().min(1).max(64), action: z.enum(['defer', 'skip']), bySec: z.number().int().positive().max(604_800).optional() }).strict() })
  .strict();
export const maintenanceParams = z.union([runForm, windowForm]);
export type MaintenanceParams = z.infer<typeof maintenanceParams>;
type RunForm = z.infer<typeof runForm>;
type WindowForm = z.infer<typeof windowForm>;

/** Maintenance windows (issue 14's scheduler); without it there is no window to answer and no gate. */
export interface WindowPort {
  /** Whether a disruptive procedure may start now without `force`. */
  inside(now: number): boolean;
  /** The `{window: ...}` form: the result, or throws an EdgeError with its code. */
  answer(w: WindowForm['window']): Promise<Record<string, unknown>> | Record<string, unknown>;
  /** Knows this window id (admission: unknown-window otherwise). */
  knows(id: string): boolean;
}

export interface MaintenanceOpsOptions {
  runner: Runner;
  catalog(): Catalog;
  windows?: WindowPort | undefined;
  now(): number;
}

const isWindow = (p: MaintenanceParams): p is WindowForm => 'window' in p;

/** Who started a run, for its report: the command id for the WMS, otherwise the origin's actor. */
export function startedBy(id: string, origin: Origin): string {
  return origin.trigger === 'wms' ? id : origin.actor;
}

/** The command's terminal status for a run's end (CONTRACT.md section 6). Pure. */
export function runOutcome(end: RunEnd): OperationOutcome {
  const r = end.report;
  if (end.state === 'succeeded') return { status: 'successful', result: r };
  const message = r.reason?.message ?? end.state;
  if (end.state === 'cancelled') return { status: 'cancelled', reason: { code: 'cancelled', message }, result: r };
  const code = end.state === 'failed' ? (r.reason?.code ?? 'failed') : end.state;
  return { status: 'failed', reason: { code, message }, result: r };
}

function refusal(err: unknown): Reason {
  return { code: errorCode(err) ?? 'invalid-params', message: errorMessage(err) };
}

export function maintenanceOperations(o: MaintenanceOpsOptions): OperationHandler<never>[] {
  /** The procedure as it runs now and the run's parameters; throws the refusal's code. */
  const prepare = (p: RunForm): { procedure: Procedure; definitionSha256: string; file: string; params: Record<string, ParamValue> } => {
    const r = runnableProcedure(o.catalog(), p.procedure);
    return { ...r, params: resolveParams(r.procedure, p.params) };
  };
  const admitRun = (p: RunForm): Reason | undefined => {
    let prepared: ReturnType<typeof prepare>;
    try {
      prepared = prepare(p);
    } catch (err) {
      return refusal(err);
    }
    if (prepared.procedure.disruptive && !p.dryRun && !p.force && o.windows && !o.windows.inside(o.now())) {
      return { code: 'outside-window', message: `${p.procedure} is disruptive and no maintenance window is open; wait for the next window, or send it with force: true` };
    }
    return undefined;
  };
  const execute = async (ctx: OperationContext<MaintenanceParams>): Promise<OperationOutcome> => {
    const p = ctx.params;
    if (isWindow(p)) {
      if (!o.windows) return { status: 'failed', reason: { code: 'unknown-window', message: 'this gateway has no maintenance windows' } };
      try {
        return { status: 'successful', result: await o.windows.answer(p.window) };
      } catch (err) {
        return { status: 'failed', reason: refusal(err) };
      }
    }
    let prepared: ReturnType<typeof prepare>;
    try {
      // Read again: what runs (and its hash in the report) is the file as it is now.
      prepared = prepare(p);
    } catch (err) {
      return { status: 'failed', reason: refusal(err) };
    }
    const end = await o.runner.run(
      { runId: ctx.id, ...prepared, dryRun: p.dryRun, trigger: ctx.origin.trigger, startedBy: startedBy(ctx.id, ctx.origin) },
      { signal: ctx.signal, progress: (step, percent) => ctx.progress(step, percent) },
    );
    return runOutcome(end);
  };

  const maintenance: OperationHandler<MaintenanceParams> = {
    op: 'maintenance',
    params: maintenanceParams,
    exclusive: (p) => {
      if (isWindow(p) || p.dryRun) return false;
      try {
        return procedureIsExclusive(runnableProcedure(o.catalog(), p.procedure).procedure);
      } catch {
        return true;
      }
    },
    admit: (p) => {
      if (isWindow(p)) return o.windows?.knows(p.window.id) ? undefined : { code: 'unknown-window', message: o.windows ? `no maintenance window ${JSON.stringify(p.window.id)}` : 'this gateway has no maintenance windows' };
      return admitRun(p);
    },
    execute,
    resume: async (ctx) => {
      if (isWindow(ctx.params)) return execute(ctx);
      const end = await o.runner.resume(ctx.id, { signal: ctx.signal, progress: (step, percent) => ctx.progress(step, percent) });
      return end ? runOutcome(end) : execute(ctx);
    },
  };

  const target = z.object({ target: z.string().min(1).max(128) }).strict();
  const live = (id: string): Reason | undefined => (o.runner.running().some((r) => r.runId === id) ? undefined : { code: 'not-running', message: `no procedure run ${id} is running on this gateway` });
  const pause: OperationHandler<z.infer<typeof target>> = {
    op: 'pause',
    params: target,
    immediate: true,
    admit: (p) => live(p.target),
    execute: async (ctx) => {
      const a = await o.runner.pause(ctx.params.target);
      return a.ok ? { status: 'successful', result: { target: ctx.params.target, state: a.state, step: a.step ?? null } } : { status: 'failed', reason: { code: a.code, message: a.message } };
    },
  };
  const resume: OperationHandler<z.infer<typeof target>> = {
    op: 'resume',
    params: target,
    immediate: true,
    admit: (p) => live(p.target),
    execute: async (ctx) => {
      const a = o.runner.resumeRun(ctx.params.target);
      return a.ok ? { status: 'successful', result: { target: ctx.params.target, state: a.state } } : { status: 'failed', reason: { code: a.code, message: a.message } };
    },
  };
  const confirmParams = z.object({ target: z.string().min(1).max(128), step: z.string().min(1).max(64), answer: z.enum(['yes', 'no']) }).strict();
  const confirm: OperationHandler<z.infer<typeof confirmParams>> = {
    op: 'confirm',
    params: confirmParams,
    immediate: true,
    admit: (p) => (o.runner.waitingConfirm(p.target, p.step) ? undefined : { code: 'not-waiting', message: `run ${p.target} is not waiting for a confirmation at step ${p.step}` }),
    execute: async (ctx) => {
      const a = o.runner.confirm(ctx.params.target, ctx.params.step, ctx.params.answer);
      return a.ok ? { status: 'successful', result: { target: ctx.params.target, step: ctx.params.step, answer: ctx.params.answer } } : { status: 'failed', reason: { code: a.code, message: a.message } };
    },
  };
  return [maintenance, pause, resume, confirm] as unknown as OperationHandler<never>[];
}
