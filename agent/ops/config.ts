/**
 * The `config` operation (CONTRACT.md section 7, docs/config-apply.md): `get` the running
 * configuration of the agent or the PLC bridge (secrets redacted, with its hash), or `apply` a
 * whole document or a JSON merge patch based on that hash, safely.
 *
 * An agent apply is a state machine persisted (saveData, then fsync) before each action:
 *
 *   (none) --write .prev/.next--> swap --file replaced--> restart --restart--> [next process]
 *   restart --connected and healthy within confirmSec--> confirmed --> successful
 *   restart --deadline passed--> revert --old file back, restart--> [next process] --> failed `reverted`
 *
 * A PLC bridge apply: swap --file replaced--> handover (the bridge starts its successor on the
 * new file, no data gap) --> successful; a failed handover puts the old file back: `reverted`.
 *
 * INVARIANTS
 * - The configuration file is only ever replaced whole (lib/atomic.ts): after a power cut it is
 *   the old or the new document, both valid. The old bytes are in {dataDir}/config-apply/ before
 *   the file is replaced, so a revert never depends on memory.
 * - The phase is durable before the action it names; `resume` finds out from the phase and the
 *   file's hash where a killed process stopped, and carries on to exactly one terminal status.
 * - A configuration becomes known-good only once confirmed (the restore component is held off
 *   while a config command is unfinished).
 * - Secret values are never returned, stored in the params, or recorded: only key paths.
 */
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { errorMessage } from '../../lib/errors.js';
import { rpcRequest } from '../../lib/rpc.js';
import { changedPaths, configHash, isDoc, keepSecrets, mergePatch, redacted, type Problem } from '../../core/config-edit.js';
import type { AuditPort } from '../../core/audit.js';
import type { OperationContext, OperationHandler, OperationOutcome, Reason } from '../../core/ports.js';
import type { ConfigTarget, TargetName } from '../config-targets.js';

const target = z.enum(['agent', 'plc-bridge']).default('agent');
const doc = z.record(z.string(), z.unknown());

export const configParams = z
  .discriminatedUnion('action', [
    z.object({ action: z.literal('get'), target }).strict(),
    z
      .object({
        action: z.literal('apply'),
        target,
        config: doc.optional(),
        patch: doc.optional(),
        baseHash: z.string().regex(/^[0-9a-f]{64}$/, 'the `hash` of the configuration as `get` returned it'),
        confirmSec: z.number().int().min(1).max(3600).default(60),
      })
      .strict(),
  ])
  .superRefine((p, ctx) => {
    if (p.action === 'apply' && (p.config === undefined) === (p.patch === undefined)) ctx.addIssue({ code: 'custom', message: 'exactly one of config and patch', path: ['config'] });
  });

export type ConfigParams = z.infer<typeof configParams>;
type ApplyParams = Extract<ConfigParams, { action: 'apply' }>;

export interface ConfigOpDeps {
  targets: Record<TargetName, ConfigTarget>;
  /** sha256 of the agent configuration bytes this process started on (undefined: no file). */
  runningHash: string | undefined;
  dataDir: string;
  clock: Clock;
  logger: Logger;
  /** Connected to the broker and every critical loop ticking. */
  healthy(): boolean;
  /** The agent's normal graceful restart. */
  restart(reason: string): void;
  /** Resolves once every store commit so far is on disk. */
  durable(): Promise<void>;
  audit: AuditPort;
  /** Who sent a command (`local` or `wms:<id>`): saved with the apply, since a restart forgets it. */
  actorOf(id: string): string;
  keepKnownGood(source: string, content: Buffer): void;
  /** Crash-test fault points (lib/fault.ts). */
  fault(name: string): void;
  /** The PLC bridge: its control socket and this release's entry point (for the handover). */
  bridge?: { socket: string; cli: string; timeoutMs: number };
}

type Phase = 'swap' | 'restart' | 'revert' | 'confirmed' | 'handover';

interface ApplyState {
  phase: Phase;
  target: TargetName;
  path: string;
  fromHash: string;
  toHash: string;
  changed: string[];
  confirmSec: number;
  deadlineAt?: number;
  actor?: string;
}

interface Candidate {
  target: ConfigTarget;
  bytes: Buffer;
  hash: string;
  next: string;
  toHash: string;
  changed: string[];
}

type Built = { ok: true; c: Candidate } | { ok: false; reason: Reason };

export function configOperation(d: ConfigOpDeps): OperationHandler<ConfigParams> & { get(target: TargetName): OperationOutcome } {
  const dir = join(d.dataDir, 'config-apply');
  const files = (id: string): { prev: string; next: string } => ({ prev: join(dir, `${id}.prev`), next: join(dir, `${id}.next`) });
  const cleanup = (id: string): void => {
    for (const f of Object.values(files(id))) rmSync(f, { force: true });
  };

  const build = (p: ApplyParams): Built => {
    const t = d.targets[p.target];
    if (!t.path) return { ok: false, reason: { code: 'config-unavailable', message: `the ${p.target} runs without a configuration file: nothing to apply to` } };
    let cur: ReturnType<ConfigTarget['read']>;
    try {
      cur = t.read();
    } catch (err) {
      return { ok: false, reason: { code: 'config-unavailable', message: `cannot read ${t.path}: ${errorMessage(err)}` } };
    }
    if (cur.hash !== p.baseHash) return { ok: false, reason: { code: 'conflict', message: `the ${p.target} configuration changed: its hash is ${cur.hash}, not ${p.baseHash}; get it again and rebase the change` } };
    const wanted = p.config ?? mergePatch(cur.doc, p.patch);
    const kept = keepSecrets(wanted, cur.doc);
    const problems: Problem[] = [...kept.problems];
    const cand = isDoc(kept.doc) ? kept.doc : {};
    if (problems.length === 0) problems.push(...t.problems(cand, cur.doc));
    if (problems.length > 0) {
      return { ok: false, reason: { code: 'invalid-config', message: `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${problems.map((x) => `${x.path}: ${x.message}`).join('; ')}`, details: problems } };
    }
    const next = t.serialize(cand);
    return { ok: true, c: { target: t, bytes: cur.bytes, hash: cur.hash, next, toHash: configHash(next), changed: changedPaths(cur.doc, cand) } };
  };

  const save = async (ctx: OperationContext<ConfigParams>, s: ApplyState): Promise<void> => {
    ctx.saveData(s);
    await d.durable();
  };

  const record = (ctx: OperationContext<ConfigParams>, s: ApplyState, action: string, outcome: string): void => {
    try {
      d.audit({ actor: s.actor ?? `wms:${ctx.id}`, action, target: s.target, outcome, details: { command: ctx.id, fromHash: s.fromHash, toHash: s.toHash, changed: s.changed } });
    } catch (err) {
      ctx.logger.error({ err }, 'could not record the configuration change in the audit trail');
    }
  };

  const result = (s: ApplyState): Record<string, unknown> => ({ target: s.target, fromHash: s.fromHash, toHash: s.toHash, changed: s.changed });

  const fileHash = (path: string): string | undefined => {
    try {
      return configHash(readFileSync(path));
    } catch {
      return undefined;
    }
  };

  const modeOf = (path: string): number => {
    try {
      return statSync(path).mode & 0o777;
    } catch {
      return 0o640;
    }
  };

  /** Puts the old file back and restarts onto it (agent), or just puts it back (bridge). */
  const revert = async (ctx: OperationContext<ConfigParams>, s: ApplyState, why: string): Promise<OperationOutcome> => {
    const st = { ...s, phase: 'revert' as const };
    await save(ctx, st);
    ctx.progress('revert');
    writeFileAtomic(s.path, readFileSync(files(ctx.id).prev), modeOf(s.path));
    if (s.target === 'plc-bridge') return reverted(ctx, st, why);
    ctx.logger.warn({ fromHash: s.fromHash, toHash: s.toHash, why }, 'configuration not confirmed: reverting and restarting');
    d.restart('config revert');
    return { status: 'pending' };
  };

  const reverted = (ctx: OperationContext<ConfigParams>, s: ApplyState, why: string): OperationOutcome => {
    record(ctx, s, 'config-revert', 'reverted');
    cleanup(ctx.id);
    return { status: 'failed', reason: { code: 'reverted', message: `${why}: reverted to ${s.fromHash}` }, result: result(s) };
  };

  const confirmed = async (ctx: OperationContext<ConfigParams>, s: ApplyState): Promise<OperationOutcome> => {
    await save(ctx, { ...s, phase: 'confirmed' });
    try {
      d.keepKnownGood(s.path, readFileSync(s.path));
    } catch (err) {
      ctx.logger.error({ err }, 'could not keep the confirmed configuration as known-good');
    }
    record(ctx, s, 'config-apply', 'confirmed');
    cleanup(ctx.id);
    return { status: 'successful', result: result(s) };
  };

  /** This process runs on the new file: wait for the broker and health, or the deadline. */
  const confirm = async (ctx: OperationContext<ConfigParams>, s: ApplyState): Promise<OperationOutcome> => {
    ctx.setCancellable(false);
    const deadline = s.deadlineAt ?? d.clock.now() + s.confirmSec * 1000;
    if (s.phase !== 'restart' || s.deadlineAt === undefined) await save(ctx, { ...s, phase: 'restart', deadlineAt: deadline });
    ctx.progress('confirm');
    while (d.clock.now() < deadline) {
      if (d.healthy()) return confirmed(ctx, s);
      ctx.progress('confirm');
      await new Promise<void>((r) => d.clock.setTimeout(r, 200));
    }
    if (d.healthy()) return confirmed(ctx, s);
    return revert(ctx, s, `not connected to the broker and healthy within ${s.confirmSec} s`);
  };

  const ping = async (socket: string): Promise<{ pid?: number; role?: string } | undefined> => {
    try {
      return (await rpcRequest(socket, 'ping', {}, 2000)) as { pid?: number; role?: string };
    } catch {
      return undefined;
    }
  };

  /**
   * The running bridge starts its successor on the new file and hands the role over. Its own
   * answer may be lost (it exits once the successor has the role): what counts is who answers
   * `ping` afterwards, as for an update's handover (agent/bridge-upgrade.ts).
   */
  const handover = async (ctx: OperationContext<ConfigParams>, s: ApplyState): Promise<OperationOutcome> => {
    const b = d.bridge;
    if (!b) return revert(ctx, s, 'no PLC bridge is configured to hand over to');
    await save(ctx, { ...s, phase: 'handover' });
    ctx.progress('handover');
    const before = (await ping(b.socket))?.pid;
    let failure: unknown;
    await rpcRequest(b.socket, 'upgrade', { cli: b.cli }, b.timeoutMs).catch((err: unknown) => (failure = err));
    const until = d.clock.now() + 10_000;
    for (;;) {
      const now = await ping(b.socket);
      if (now?.role === 'active' && now.pid !== undefined && now.pid !== before) return confirmed(ctx, s);
      if ((now?.role === 'active' && now.pid === before) || d.clock.now() >= until) break;
      await new Promise<void>((r) => d.clock.setTimeout(r, 100));
    }
    return revert(ctx, s, `the PLC bridge did not take the new configuration over${failure === undefined ? '' : ` (${errorMessage(failure)})`}`);
  };

  const apply = async (ctx: OperationContext<ConfigParams>, p: ApplyParams): Promise<OperationOutcome> => {
    // Checked at intake too; the file may have changed while the command waited its turn.
    const b = build(p);
    if (!b.ok) return { status: 'failed', reason: b.reason };
    const c = b.c;
    const s: ApplyState = { phase: 'swap', target: p.target, path: c.target.path!, fromHash: c.hash, toHash: c.toHash, changed: c.changed, confirmSec: p.confirmSec, actor: d.actorOf(ctx.id) };
    if (c.changed.length === 0) return { status: 'successful', result: { ...result(s), toHash: c.hash } };
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(files(ctx.id).prev, c.bytes, 0o600);
    writeFileAtomic(files(ctx.id).next, c.next, 0o600);
    await save(ctx, s);
    ctx.setCancellable(false);
    ctx.progress('apply');
    d.fault('config-before-swap');
    writeFileAtomic(s.path, c.next, modeOf(s.path));
    d.fault('config-after-swap');
    if (p.target === 'plc-bridge') return handover(ctx, s);
    await save(ctx, { ...s, phase: 'restart', deadlineAt: d.clock.now() + s.confirmSec * 1000 });
    ctx.progress('restart');
    ctx.logger.info({ fromHash: s.fromHash, toHash: s.toHash, changed: s.changed, confirmSec: s.confirmSec }, 'configuration applied: restarting onto it');
    d.restart('config apply');
    return { status: 'pending' };
  };

  const get = (p: { target: TargetName }): OperationOutcome => {
    const t = d.targets[p.target];
    if (!t.path) return { status: 'failed', reason: { code: 'config-unavailable', message: `the ${p.target} runs without a configuration file` } };
    try {
      const cur = t.read();
      return { status: 'successful', result: { target: p.target, hash: cur.hash, config: redacted(cur.doc) } };
    } catch (err) {
      return { status: 'failed', reason: { code: 'config-unavailable', message: `cannot read ${t.path}: ${errorMessage(err)}` } };
    }
  };

  return {
    get: (t) => get({ target: t }),
    op: 'config',
    params: configParams,
    exclusive: true,
    resumesWithoutParams: true,
    // A whole document may carry secrets: the store keeps them masked (resume needs only saveData).
    redactParams: (p) => (p.action === 'apply' ? { ...p, ...(p.config ? { config: redacted(p.config) } : {}), ...(p.patch ? { patch: redacted(p.patch) } : {}) } : p),
    check: (p) => {
      if (p.action !== 'apply') return undefined;
      const b = build(p);
      return b.ok ? undefined : b.reason.code === 'config-unavailable' ? undefined : b.reason;
    },
    async execute(ctx) {
      const p = ctx.params;
      return p.action === 'get' ? get(p) : apply(ctx, p);
    },
    async resume(ctx) {
      const s = ctx.loadData() as ApplyState | null | undefined;
      if (!s?.phase) {
        cleanup(ctx.id);
        return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the configuration was changed: nothing changed; send it again with a new id' } };
      }
      const now = fileHash(s.path);
      ctx.logger.info({ phase: s.phase, file: now, fromHash: s.fromHash, toHash: s.toHash }, 'resuming a configuration apply');
      switch (s.phase) {
        case 'confirmed':
          return confirmed(ctx, s);
        case 'revert':
          if (now !== s.fromHash) return revert(ctx, s, 'the revert was interrupted');
          if (s.target === 'agent' && d.runningHash !== s.fromHash) {
            d.restart('config revert');
            return { status: 'pending' };
          }
          return reverted(ctx, s, `not connected to the broker and healthy within ${s.confirmSec} s`);
        case 'swap':
        case 'restart':
        case 'handover':
          if (now === s.fromHash) {
            cleanup(ctx.id);
            if (s.phase === 'swap') return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the new configuration was in place: nothing changed; send it again with a new id' }, result: result(s) };
            return reverted(ctx, s, 'the previous configuration was put back while the new one was unconfirmed');
          }
          if (now !== s.toHash) return revert(ctx, s, 'the configuration file changed while the apply was unconfirmed');
          if (s.target === 'plc-bridge') return handover(ctx, s);
          if (d.runningHash !== s.toHash) {
            // Stopped after the file was replaced but before the restart: restart onto it now.
            await save(ctx, { ...s, phase: 'restart', deadlineAt: d.clock.now() + s.confirmSec * 1000 });
            d.restart('config apply');
            return { status: 'pending' };
          }
          return confirm(ctx, s);
      }
    },
  };
}
