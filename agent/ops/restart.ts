/**
 * The `restart` operation. For the agent itself the terminal status can only come from the next
 * process: the command is left `executing` with the old pid saved, the daemon restarts, and the
 * new process's `resume` reports `successful`. Components other than the agent are added by the
 * capabilities that own them (`plc-bridge` comes with the bridge).
 */
import { z } from 'zod';
import type { OperationHandler } from '../../core/ports.js';

export interface RestartTargets {
  /** Asks the daemon to stop gracefully and start again; returns at once. */
  agent(): void;
  [component: string]: () => void | Promise<void>;
}

export function restartOperation(targets: RestartTargets, pid: number): OperationHandler<{ component: string }> {
  const names = Object.keys(targets) as [string, ...string[]];
  const params = z.object({ component: z.enum(names) }).strict();
  return {
    op: 'restart',
    params,
    exclusive: true,
    async execute(ctx) {
      const { component } = ctx.params;
      ctx.setCancellable(false);
      if (component === 'agent') {
        ctx.saveData({ component, pid });
        ctx.progress('restart');
        targets.agent();
        return { status: 'pending' };
      }
      const fn = targets[component];
      if (!fn) return { status: 'failed', reason: { code: 'invalid-params', message: `unknown component ${component}` } };
      await fn();
      return { status: 'successful', result: { component } };
    },
    async resume(ctx) {
      const data = ctx.loadData() as { component?: string; pid?: number } | undefined;
      if (data?.component !== 'agent' || data.pid === pid) {
        return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the restart was carried out' } };
      }
      return { status: 'successful', result: { component: 'agent', previousPid: data.pid, pid } };
    },
  };
}
