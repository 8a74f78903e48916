/**
 * `EDGE_AGENT_FAULT=leak` (the memory-budget handover test): the control socket answers
 * `fault-leak {mb}`, which keeps `mb` MiB more of JS heap alive in this instance, as a leak
 * would, and answers `{heldMb}` (the total held). Without the variable the method does not exist.
 * What is held lives in this closure, so only the instance that is asked leaks: its successor
 * (same environment) starts clean.
 */
import type { Logger } from '../lib/log.js';
import type { RpcMethod } from '../lib/rpc.js';
import { PlcError } from './errors.js';

/** A JS array of doubles keeps 8 bytes per element on the V8 heap (process.memoryUsage().heapUsed). */
const DOUBLES_PER_MIB = (1024 * 1024) / 8;

export function leakFaultMethods(fault: string | undefined, logger: Logger): Record<string, RpcMethod> {
  if (fault !== 'leak') return {};
  const held: number[][] = [];
  return {
    'fault-leak': (params) => {
      const mb = params.mb;
      if (typeof mb !== 'number' || !Number.isInteger(mb) || mb < 1 || mb > 4096) throw new PlcError('invalid-params', 'mb: an integer from 1 to 4096 is required');
      // A distinct non-integer value per chunk: the array stays one of unboxed doubles.
      for (let i = 0; i < mb; i++) held.push(new Array<number>(DOUBLES_PER_MIB).fill(held.length + 0.5));
      logger.warn({ mb, heldMb: held.length }, 'fault injection: leaking heap');
      return { heldMb: held.length };
    },
  };
}
