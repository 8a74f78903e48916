/**
 * The `trust` operation (docs/trust-updates.md): the trust anchors of update bundles
 * (`ota.trustAnchors`) change only through a signed trust update (certs/trust-update.ts),
 * never through a plain command. `status` lists the anchors and the installed sequence.
 * The anchors file is replaced whole (lib/atomic.ts), then its `.sequence` sidecar.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../../lib/atomic.js';
import { EdgeError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import { summarizePem } from '../../certs/trust.js';
import { checkTrustUpdate } from '../../certs/trust-update.js';
import type { AuditPort } from '../../core/audit.js';
import type { OperationHandler } from '../../core/ports.js';

export const trustParams = z.discriminatedUnion('action', [
  z.object({ action: z.literal('status') }).strict(),
  z.object({ action: z.literal('update'), update: z.record(z.string(), z.unknown()) }).strict(),
]);
export type TrustParams = z.infer<typeof trustParams>;

export function installedSequence(anchorsPath: string): number {
  try {
    const n = Number(readFileSync(`${anchorsPath}.sequence`, 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function trustOperation(d: { anchorsPath: string; clock: Clock; audit: AuditPort; actorOf(id: string): string }): OperationHandler<TrustParams> {
  return {
    op: 'trust',
    params: trustParams,
    exclusive: true,
    async execute(ctx) {
      const p = ctx.params;
      let current: string;
      try {
        current = readFileSync(d.anchorsPath, 'utf8');
      } catch (err) {
        return { status: 'failed', reason: { code: 'trust-update-invalid', message: `cannot read the trust anchors ${d.anchorsPath}: ${(err as Error).message}` } };
      }
      const sequence = installedSequence(d.anchorsPath);
      if (p.action === 'status') return { status: 'successful', result: { path: d.anchorsPath, sequence, anchors: summarizePem(current) } };
      const record = (outcome: string, details: Record<string, unknown>): void => d.audit({ actor: d.actorOf(ctx.id), action: 'trust-update', target: d.anchorsPath, outcome, details: { command: ctx.id, ...details } });
      let u;
      try {
        u = checkTrustUpdate(p.update, current, sequence, new Date(d.clock.now()));
      } catch (err) {
        if (!(err instanceof EdgeError)) throw err;
        const code = (err as EdgeError<string>).code;
        record(`refused/${code}`, {});
        return { status: 'failed', reason: { code, message: err.message } };
      }
      writeFileAtomic(d.anchorsPath, u.anchorsPem, 0o644);
      writeFileAtomic(`${d.anchorsPath}.sequence`, `${u.sequence}\n`, 0o644);
      const signer = u.signer.chain[0]?.subject;
      record('installed', { sequence: u.sequence, added: u.added, removed: u.removed, signer });
      return { status: 'successful', result: { sequence: u.sequence, added: u.added, removed: u.removed, anchors: summarizePem(u.anchorsPem).length } };
    },
  };
}
