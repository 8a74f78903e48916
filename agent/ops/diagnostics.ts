/**
 * The `diagnostics` operation, first version: version, uptime, broker connection, store. The
 * full suite (issue: health) replaces `collect` with its own; the operation stays the same.
 */
import { z } from 'zod';
import type { OperationHandler } from '../ports.js';

export const diagnosticsParams = z.object({}).passthrough();

export function diagnosticsOperation(collect: () => unknown): OperationHandler<z.infer<typeof diagnosticsParams>> {
  return {
    op: 'diagnostics',
    params: diagnosticsParams,
    async execute(ctx) {
      ctx.progress('collect');
      return { status: 'successful', result: await collect() };
    },
  };
}
