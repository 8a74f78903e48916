/**
 * The `update` and `rollback` operations (CONTRACT.md section 2), mapping ota/'s updater, trial
 * gate and slots onto the command router. Both restart the agent at their point of no return; the
 * terminal status then comes from `resume` in whichever release runs next, so the WMS gets exactly
 * one, also when the new release crashed and the boot guard brought the old one back.
 *
 * A fleet rollout's update may wait for its moment first (`notBefore`, `spreadSec`, `window`;
 * ota/rollout.ts chooses it): the chosen start is saved with the command before the wait, so a
 * restart waits for the same moment; meanwhile the status is `executing` with `progress.step`
 * `waiting` and `progress.startsAt`, nothing is downloaded, the gateway stays `online`, and a
 * `cancel` ends it `cancelled`. The update still holds the exclusive slot while it waits.
 */
import { z } from 'zod';
import { errorCode, errorMessage } from '../../lib/errors.js';
// Types only: the updater (bundle reader, node-forge, ...) is loaded when an update needs it.
import type { Updater, UpdateContext, UpdateData } from '../../ota/updater.js';
import type { TrialGate } from '../../ota/trial-gate.js';
import { loadSlots, rollback, saveSlots, type SlotName } from '../../ota/slots.js';
import type { OperationContext, OperationHandler, OperationOutcome } from '../../core/ports.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import { admitRollout, MAX_SPREAD_SEC, planStart, startVerdict, wantsWait } from '../../ota/rollout.js';

export interface UpdateOpDeps {
  /** The updater, loaded on first use: most of the agent's life no update runs. */
  updater(): Promise<Updater>;
  gate: TrialGate;
  root: string;
  runningSlot: SlotName;
  runningVersion: string;
  /** Only a boot guard starts the other slot after the restart; without one, no update. */
  underGuard: boolean;
  /** Graceful stop and start again (the boot guard starts the active slot). */
  restart(): void;
  setUpdating(on: boolean): void;
  /** Default: the system clock. */
  clock?: Clock;
  /** The spread's random source (tests pin it). */
  random?: () => number;
  /**
   * The start of the next maintenance window (epoch ms), for `window: true`; undefined when none
   * is scheduled. Without this port (no window service wired) `window: true` is rejected
   * `no-window-service`.
   */
  nextWindowStart?: () => number | undefined;
}

/** What a waiting update keeps with its command (replaced by UpdateData once the install begins). */
interface WaitData {
  startAt: number;
}

export const updateParams = z
  .object({
    url: z.string().url().max(4096),
    sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'a SHA-256 in hex').optional(),
    size: z.number().int().positive().optional(),
    allowDowngrade: z.boolean().optional(),
    notBefore: z.string().datetime({ offset: true }).optional(),
    spreadSec: z.number().int().min(0).max(MAX_SPREAD_SEC).optional(),
    deadline: z.string().datetime({ offset: true }).optional(),
    window: z.boolean().optional(),
    rolloutId: z.string().min(1).max(128).optional(),
  })
  .strict();

type Params = z.infer<typeof updateParams>;

/**
 * The updater's view of the command. `settle()` closes it: whatever part of the pipeline calls
 * back late reports nothing after the operation's outcome (the router publishes that outcome).
 */
function uctx(ctx: OperationContext<unknown>): UpdateContext & { settle(): void } {
  let open = true;
  return {
    signal: ctx.signal,
    progress: (step, percent) => {
      if (open) ctx.progress(step, percent);
    },
    setCancellable: (c) => {
      if (open) ctx.setCancellable(c);
    },
    save: (d) => {
      if (open) ctx.saveData(d);
    },
    settle: () => {
      open = false;
    },
  };
}

/**
 * Waits for the rollout's moment (see the file's head): undefined to go on, or the outcome that
 * ends the command (cancelled while waiting, deadline passed, no window).
 */
async function waitForStart(deps: UpdateOpDeps, ctx: OperationContext<Params>): Promise<OperationOutcome | undefined> {
  const p = ctx.params;
  const clock = deps.clock ?? systemClock;
  if (wantsWait(p)) {
    let startAt = (ctx.loadData() as Partial<WaitData> | undefined)?.startAt;
    if (startAt === undefined) {
      try {
        startAt = planStart(p, clock.now(), deps.random ?? Math.random, deps.nextWindowStart);
      } catch (err) {
        return failed(err);
      }
      // Saved before the wait: a restart keeps the moment (and the fleet's spread).
      ctx.saveData({ startAt } satisfies WaitData);
    }
    if (startAt > clock.now()) {
      ctx.progress('waiting', undefined, { startsAt: new Date(startAt).toISOString() });
      // In slices of a day at most: a timer longer than 2^31 ms fires at once (Node's setTimeout).
      while (!ctx.signal.aborted && startAt > clock.now()) await sleep(clock, Math.min(startAt - clock.now(), 86_400_000), ctx.signal);
      if (ctx.signal.aborted) return { status: 'cancelled', reason: { code: 'cancelled', message: `${errorMessage(ctx.signal.reason)} while it waited to start; nothing was downloaded` } };
    }
  }
  const late = startVerdict(p, clock.now());
  return late ? { status: 'failed', reason: late } : undefined;
}

/** Resolves after `ms` or when `signal` aborts, whichever comes first. */
function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clock.clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener('abort', done);
    if (signal.aborted) done();
  });
}

function failed(err: unknown): OperationOutcome {
  return { status: 'failed', reason: { code: errorCode(err) ?? 'internal', message: errorMessage(err) } };
}

/** docs/errors.md: the message of `cancelled` names the `cancel` command (the abort reason says which). */
function cancelled(signal: AbortSignal): OperationOutcome {
  return { status: 'cancelled', reason: { code: 'cancelled', message: `${errorMessage(signal.reason)} before activation; the slot was given back` } };
}

export function updateOperation(deps: UpdateOpDeps): OperationHandler<Params> {
  const execute = async (ctx: OperationContext<Params>): Promise<OperationOutcome> => {
    if (!deps.underGuard) {
      return { status: 'failed', reason: { code: 'not-installed', message: 'this agent was not started by the boot guard (ROOT/guard), so it cannot switch slots; install it with the A/B layout' } };
    }
    const waited = await waitForStart(deps, ctx);
    if (waited) return waited;
    return installAndActivate(deps, ctx, async (u) => (await deps.updater()).install(ctx.id, ctx.params, u), undefined);
  };
  return {
    op: 'update',
    params: updateParams,
    exclusive: true,
    admit: (p) => admitRollout(p, Date.now(), deps.nextWindowStart !== undefined),
    execute,
    async resume(ctx) {
      const data = ctx.loadData() as (UpdateData & Partial<WaitData>) | undefined;
      // Stopped while it waited for its moment: it waits again for the same one.
      if (data?.startAt !== undefined && !data.phase) return execute(ctx);
      if (!data?.phase) return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the update began' } };
      const { resolveAfterRestart } = await import('../../ota/updater.js');
      for (;;) {
        const r = resolveAfterRestart(data, loadSlots(deps.root), deps.runningSlot);
        switch (r.kind) {
          case 'install-interrupted':
            return installAndActivate(deps, ctx, async (u) => (await deps.updater()).resumeInstall(ctx.id, ctx.params, data, u), data);
          case 'done':
            ctx.progress('commit');
            return { status: 'successful', result: r.result };
          case 'rolled-back':
            return { status: 'failed', reason: { code: 'rolled-back', message: r.reason }, result: r.result };
          case 'gate': {
            // Activated already: the health gate decides; neither `cancel` nor the watchdog may stop it.
            ctx.setCancellable(false);
            deps.setUpdating(true);
            ctx.progress('health-check');
            const o = await deps.gate.outcome;
            if (o === 'stopped') return { status: 'pending' }; // still on trial: the next start goes on
            if (o === 'failed') {
              // Still updating: this release is bad and on its way out; it must not announce itself online.
              ctx.progress('rollback');
              return { status: 'pending' }; // the release started next reports the outcome
            }
            deps.setUpdating(false);
            continue; // committed (or no longer on trial): resolve again from slots.json
          }
        }
      }
    },
  };
}

/**
 * Installs (or goes on with an install a restart cut short), then activates and restarts. A
 * failure before activation gives the slot back; `prev` adds the result a resumed update reports.
 */
async function installAndActivate(
  deps: UpdateOpDeps,
  ctx: OperationContext<Params>,
  install: (u: UpdateContext) => Promise<{ data: UpdateData }>,
  prev: UpdateData | undefined,
): Promise<OperationOutcome> {
  deps.setUpdating(true);
  const u = uctx(ctx);
  try {
    const updater = await deps.updater();
    const { data } = await install(u);
    if (ctx.signal.aborted) {
      updater.giveBack(data.toSlot);
      deps.setUpdating(false);
      return cancelled(ctx.signal);
    }
    try {
      updater.activate(ctx.id, data, u);
    } catch (err) {
      // Not activated (a failed backup, say): the verified slot must not stay `installing`.
      updater.giveBack(data.toSlot);
      throw err;
    }
    deps.restart();
    return { status: 'pending' };
  } catch (err) {
    deps.setUpdating(false);
    if (ctx.signal.aborted) return cancelled(ctx.signal);
    const outcome = failed(err);
    if (!prev || outcome.status !== 'failed') return outcome;
    return { ...outcome, result: { fromVersion: prev.fromVersion, toVersion: prev.toVersion ?? null, slot: prev.fromSlot, rolledBack: false } };
  } finally {
    u.settle();
  }
}

interface RollbackData {
  fromSlot: SlotName;
  toSlot: SlotName;
  fromVersion: string;
  toVersion: string | undefined;
}

export function rollbackOperation(deps: Pick<UpdateOpDeps, 'root' | 'runningSlot' | 'runningVersion' | 'restart' | 'underGuard'>): OperationHandler<Record<string, never>> {
  return {
    op: 'rollback',
    params: z.object({}).strict(),
    exclusive: true,
    async execute(ctx) {
      if (!deps.underGuard) {
        return { status: 'failed', reason: { code: 'not-installed', message: 'this agent was not started by the boot guard, so it cannot switch slots' } };
      }
      try {
        const s = loadSlots(deps.root);
        const next = rollback(s);
        const data: RollbackData = { fromSlot: s.active, toSlot: next.active, fromVersion: deps.runningVersion, toVersion: next.slots[next.active].version };
        ctx.saveData(data);
        ctx.setCancellable(false);
        ctx.progress('rollback');
        saveSlots(deps.root, next);
        deps.restart();
        return { status: 'pending' };
      } catch (err) {
        return failed(err);
      }
    },
    async resume(ctx) {
      const d = ctx.loadData() as RollbackData | undefined;
      const result = d ? { fromVersion: d.fromVersion, toVersion: d.toVersion, slot: deps.runningSlot, rolledBack: true } : undefined;
      if (d && deps.runningSlot === d.toSlot) return { status: 'successful', result };
      return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the rollback was carried out' }, result };
    },
  };
}
