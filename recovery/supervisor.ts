/**
 * The watchdog: one watch loop over every supervised component (the PLC bridge, declared local
 * services, in-process parts of the agent). For each it probes at the component's interval,
 * decides with recovery/policy.ts, persists the decision, then acts: restart, kill a hung
 * process, restore its configuration, roll the release back, raise or clear the alarm. Every
 * failure, escalation, restore and requested restart is an incident (recovery/incidents.ts) and
 * an event on `~/events`.
 *
 * INVARIANTS
 *  1. Actions on one component run one at a time (a per-component promise chain); the loop
 *     skips a component while an action sequence is in flight.
 *  2. The policy state is persisted before the actions it decided are carried out.
 *  3. A component is failed only for its own death or hang; no probe looks past it.
 *  4. A stall of the agent itself (its event loop blocked, the machine suspended) is not blamed
 *     on the components: the hang deadlines are moved on by the length of the stall.
 *  5. stop() ends the loop and waits (bounded) for running actions; it never stops a component:
 *     detached processes keep running and the next agent adopts them.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { LoopMonitor } from '../lib/loops.js';
import { errorMessage } from '../lib/errors.js';
import type { AgentEvent, Component } from '../core/ports.js';
import type { Handle } from './process.js';
import { detectsHangs, probeFor, type ProbeResult, type ProbeSpec } from './probes.js';
import type { IncidentStore } from './incidents.js';
import { RecoveryError } from './errors.js';
import * as P from './policy.js';
import { InProcessHandle, type InProcessTarget } from './in-process.js';
import { Reporter, type IncidentAction } from './reporter.js';

export type { InProcessTarget };

/** What escalation step 1 did, in words for the incident: which copy was put back, or why none. */
export interface ConfigRestoreOutcome {
  restored: boolean;
  note: string;
}

export interface TargetSpec {
  name: string;
  handle: Handle;
  probe: ProbeSpec;
  intervalMs: number;
  deadlineMs: number;
  startTimeoutMs: number;
}

export interface SupervisorOptions {
  targets: TargetSpec[];
  policy: P.PolicyConfig;
  stopGraceMs: number;
  hungGraceMs: number;
  store: IncidentStore;
  clock: Clock;
  logger: Logger;
  event(ev: AgentEvent): void;
  /** Restores the component's configuration from its last known-good copy; the note goes into the incident's detail. */
  restoreConfig(component: string): Promise<ConfigRestoreOutcome>;
  /** Rolls the running release back (the agent restarts); false when there is nothing to roll back to. */
  rollback(reason: string): Promise<boolean>;
  /** When the running release was activated, if a rollback target exists. */
  activatedAt(): number | undefined;
  loops?: LoopMonitor | undefined;
  loopDeadlineMs?: number;
  random?: () => number;
  /** Lines of the component's log kept with an incident. */
  logLines?: number;
  incidentRetentionMs?: number;
}

export interface ComponentStatus {
  name: string;
  kind: Handle['kind'];
  state: P.ComponentState;
  restarts: number;
  level: P.Level;
  pid?: number;
  since: string;
  lastFailure?: { at: string; cause: string; exitCode?: number; signal?: string };
  alarm?: { since: string; message: string };
}

interface Runtime {
  spec: TargetSpec;
  probe: (timeoutMs: number) => Promise<ProbeResult>;
  hangs: boolean;
  s: P.PolicyState;
  saved: string;
  lastOkAt: number | undefined;
  nextProbeAt: number;
  probing: boolean;
  busy: number;
  chain: Promise<void>;
}

const LOOP = 'recovery';
/** The loop runs at least this often (it is a critical loop of the systemd watchdog). */
const MAX_SLEEP_MS = 1000;
/** A loop iteration this much later than planned is a stall of the agent (invariant 4). */
const STALL_MS = 1000;
const MAINTAIN_EVERY_MS = 60_000;

export class Supervisor implements Component {
  readonly name = 'recovery';
  private readonly rt: Runtime[];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private plannedAt = 0;
  private maintainedAt = 0;
  private readonly log: Logger;
  private readonly report: Reporter;

  constructor(private readonly opts: SupervisorOptions) {
    this.log = opts.logger;
    this.report = new Reporter({ store: opts.store, event: (ev) => opts.event(ev), logger: opts.logger });
    this.rt = opts.targets.map((spec) => ({
      spec,
      probe: spec.handle instanceof InProcessHandle ? ((h: InProcessHandle) => async () => h.result())(spec.handle) : probeFor(spec.probe),
      hangs: detectsHangs(spec.probe),
      s: P.initialState(0),
      saved: '',
      lastOkAt: undefined,
      nextProbeAt: 0,
      probing: false,
      busy: 0,
      chain: Promise.resolve(),
    }));
  }

  /** Supervises an in-process part of the agent (`probe()` healthy|hung|dead, `restart()`). */
  static inProcess(t: InProcessTarget, intervalMs: number): TargetSpec {
    return { name: t.name, handle: new InProcessHandle(t), probe: { kind: 'process' }, intervalMs, deadlineMs: intervalMs, startTimeoutMs: intervalMs * 10 };
  }

  names(): string[] {
    return this.rt.map((r) => r.spec.name);
  }

  async start(): Promise<void> {
    const now = this.opts.clock.now();
    const retention = this.opts.incidentRetentionMs ?? 90 * 86_400_000;
    const pruned = this.opts.store.prune(now - retention);
    if (pruned > 0) this.log.info({ pruned }, 'old incidents deleted');
    this.running = true;
    for (const t of this.rt) {
      t.s = this.opts.store.loadState(t.spec.name) ?? P.initialState(now);
      t.saved = JSON.stringify(t.s);
      if (t.spec.handle.kind === 'in-process') {
        // Started by the composition root with the agent: it runs from the start.
        await t.spec.handle.adopt();
        t.s = P.adopted(t.s.state === 'running' ? t.s : { ...t.s, state: 'starting' }, now).next;
      }
      t.spec.handle.onExit((e) => void this.serial(t, () => this.fail(t, { at: this.opts.clock.now(), cause: 'exited', exitCode: e.exitCode, signal: e.signal })));
      if (t.spec.handle.kind !== 'in-process') void this.serial(t, () => this.boot(t));
    }
    this.opts.loops?.register(LOOP, this.opts.loopDeadlineMs ?? 30_000);
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.opts.loops?.unregister(LOOP);
    let t: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (t = setTimeout(r, this.opts.stopGraceMs + 2000)));
    await Promise.race([Promise.all(this.rt.map((r) => r.chain)), bound]);
    clearTimeout(t);
  }

  status(): ComponentStatus[] {
    return this.rt.map((t) => {
      const s = t.s;
      const out: ComponentStatus = { name: t.spec.name, kind: t.spec.handle.kind, state: s.state, restarts: s.restarts, level: s.level, since: new Date(s.since).toISOString() };
      const pid = t.spec.handle.pid();
      if (pid !== undefined) out.pid = pid;
      if (s.lastFailure) {
        const f = s.lastFailure;
        out.lastFailure = { at: new Date(f.at).toISOString(), cause: f.cause, ...(f.exitCode !== undefined ? { exitCode: f.exitCode } : {}), ...(f.signal !== undefined ? { signal: f.signal } : {}) };
      }
      if (s.alarm) out.alarm = { since: new Date(s.alarm.since).toISOString(), message: s.alarm.message };
      return out;
    });
  }

  /** The `restart` command: kill and start at once. Not a failure; recorded as an incident. */
  async restart(name: string): Promise<void> {
    const t = this.rt.find((r) => r.spec.name === name);
    if (!t) throw new RecoveryError('unknown-component', `no supervised component is called ${name}`);
    await this.serial(t, async () => {
      const now = this.opts.clock.now();
      this.report.requested(name, now, t.s.level);
      await this.apply(t, P.requested(t.s, now));
    });
  }

  /** Runs `fn` after the component's previous actions (invariant 1); errors are logged. */
  private serial(t: Runtime, fn: () => Promise<void>): Promise<void> {
    t.busy++;
    const run = t.chain.then(fn).catch((err: unknown) => this.log.error({ err, target: t.spec.name }, 'supervisor action failed'));
    t.chain = run.finally(() => {
      t.busy--;
      if (this.running) this.schedule(0);
    });
    return t.chain;
  }

  /** At start: adopt what a previous agent left running, else go on from the persisted state. */
  private async boot(t: Runtime): Promise<void> {
    const now = this.opts.clock.now();
    const hint = t.spec.probe.kind === 'heartbeat' ? (await t.probe(Math.min(1000, t.spec.deadlineMs))).pid : undefined;
    const found = await t.spec.handle.adopt(hint);
    if (found === 'adopted') {
      t.lastOkAt = now;
      await this.apply(t, P.adopted(t.s, now));
    } else if (found === 'gone' && (t.s.state === 'running' || t.s.state === 'starting')) {
      await this.fail(t, { at: now, cause: 'gone', detail: 'not running any more when the agent started' });
    } else if (t.s.state === 'backoff') {
      this.log.info({ target: t.spec.name, nextStartAt: new Date(t.s.nextStartAt ?? now).toISOString(), level: t.s.level }, 'resuming a backoff from before the agent restart');
    } else {
      await this.apply(t, P.firstStart({ ...t.s, state: 'stopped' }, now));
    }
  }

  private async fail(t: Runtime, f: P.FailureInfo): Promise<void> {
    if (t.s.state !== 'starting' && t.s.state !== 'running') return;
    if (f.cause === 'exited' && (await this.handedOver(t))) return;
    let info = f;
    if (f.cause === 'exited' && f.exitCode === undefined && f.signal === undefined) {
      const e = await t.spec.handle.lastExit().catch(() => undefined);
      if (e) info = { ...f, exitCode: e.exitCode, signal: e.signal };
    }
    await this.apply(t, P.failure(t.s, info, this.opts.policy, this.opts.activatedAt(), this.opts.random));
  }

  /**
   * A process that exits because it handed its role to a successor it started (the PLC bridge
   * after an update: the old one gives its socket up to the new one before it exits) is not a
   * failure: when the heartbeat answers from another live pid, that process is adopted and
   * supervised from now on. A dead process's socket refuses at once, so this costs a crash
   * nothing measurable.
   */
  private async handedOver(t: Runtime): Promise<boolean> {
    if (t.spec.probe.kind !== 'heartbeat' || t.spec.handle.kind !== 'process') return false;
    const old = t.spec.handle.pid();
    const r = await t.probe(Math.min(1000, t.spec.deadlineMs));
    if (!r.ok || r.pid === undefined || r.pid === old || (await t.spec.handle.adopt(r.pid)) !== 'adopted') return false;
    this.log.info({ target: t.spec.name, from: old, to: r.pid }, 'the process handed over to a successor: following it');
    t.lastOkAt = this.opts.clock.now();
    return true;
  }

  private persist(t: Runtime): void {
    const json = JSON.stringify(t.s);
    if (json === t.saved) return;
    this.opts.store.saveState(t.spec.name, t.s, this.opts.clock.now());
    t.saved = json;
  }

  /** Persists the transition's state, then carries out its actions (invariant 2). */
  private async apply(t: Runtime, tr: P.Transition): Promise<void> {
    const name = t.spec.name;
    t.s = tr.next;
    this.persist(t);
    let incident: IncidentAction | undefined;
    const notes: string[] = [];
    for (const a of tr.actions) {
      switch (a.kind) {
        case 'incident':
          incident = a; // recorded last, with what the other actions did
          break;
        case 'kill':
          await t.spec.handle.kill(a.hung ? this.opts.hungGraceMs : this.opts.stopGraceMs);
          break;
        case 'restore-config': {
          const r = await this.opts.restoreConfig(name).catch((err: unknown): ConfigRestoreOutcome => {
            this.log.error({ err, target: name }, 'configuration restore failed');
            return { restored: false, note: `configuration restore failed: ${errorMessage(err)}` };
          });
          this.log.warn({ target: name, restored: r.restored, note: r.note }, 'escalation: configuration restore');
          notes.push(r.note);
          break;
        }
        case 'rollback': {
          const ok = await this.opts.rollback(`${name}: ${a.reason}`).catch((err: unknown) => {
            this.log.error({ err, target: name }, 'rollback failed');
            return false;
          });
          notes.push(ok ? 'release rolled back; the agent restarts into the previous release' : 'rollback was not possible');
          break;
        }
        case 'raise-alarm':
          this.report.alarm(name, a.message);
          break;
        case 'clear-alarm':
          this.report.alarmCleared(name, a.message);
          break;
        case 'recovered':
          this.report.recovered(name, a.at);
          break;
        case 'start':
          await this.startOne(t);
          break;
      }
    }
    if (incident) this.report.failure(name, incident, notes, await t.spec.handle.lastLog(this.opts.logLines ?? 20).catch(() => []));
  }

  private async startOne(t: Runtime): Promise<void> {
    const now = this.opts.clock.now();
    t.lastOkAt = undefined;
    t.nextProbeAt = now + Math.min(t.spec.intervalMs, 100);
    try {
      await t.spec.handle.start();
    } catch (err) {
      this.log.error({ err, target: t.spec.name }, 'start failed');
      await this.fail(t, { at: this.opts.clock.now(), cause: 'spawn-failed', detail: errorMessage(err) });
    }
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.opts.clock.clearTimeout(this.timer);
    this.plannedAt = this.opts.clock.now() + delayMs;
    this.timer = this.opts.clock.setTimeout(() => this.loop(), delayMs);
  }

  private loop(): void {
    if (!this.running) return;
    const now = this.opts.clock.now();
    const late = now - this.plannedAt;
    if (late > STALL_MS) {
      this.log.warn({ lateMs: late }, 'the supervisor loop ran late (the agent stalled): hang deadlines moved on');
      for (const t of this.rt) if (t.lastOkAt !== undefined) t.lastOkAt += late;
    }
    this.opts.loops?.tick(LOOP);
    if (now - this.maintainedAt >= MAINTAIN_EVERY_MS) {
      this.maintainedAt = now;
      for (const t of this.rt) t.spec.handle.maintain();
    }
    for (const t of this.rt) this.step(t, now);
    this.schedule(Math.max(10, Math.min(this.nextWake(now), now + MAX_SLEEP_MS) - now));
  }

  private step(t: Runtime, now: number): void {
    if (t.busy > 0) return;
    const s = t.s;
    if (s.state === 'backoff') {
      const tr = P.tick(s, now);
      if (tr.actions.length > 0) void this.serial(t, () => this.apply(t, tr));
      return;
    }
    if (s.state === 'starting' && now - s.since >= t.spec.startTimeoutMs) {
      void this.serial(t, () => this.fail(t, { at: now, cause: 'start-timeout', detail: `no passed probe within ${t.spec.startTimeoutMs} ms of the start` }));
      return;
    }
    if (s.state === 'running' && t.hangs && t.lastOkAt !== undefined && now - t.lastOkAt >= t.spec.deadlineMs) {
      void this.serial(t, () => this.fail(t, { at: now, cause: 'hung', detail: `no answer to its ${t.spec.probe.kind} probe for ${now - (t.lastOkAt ?? now)} ms` }));
      return;
    }
    if ((s.state === 'starting' || s.state === 'running') && !t.probing && now >= t.nextProbeAt) this.runProbe(t, now);
  }

  private nextWake(now: number): number {
    let wake = now + MAX_SLEEP_MS;
    for (const t of this.rt) {
      const s = t.s;
      if (s.state === 'backoff' && s.nextStartAt !== undefined) wake = Math.min(wake, s.nextStartAt);
      if (s.state === 'starting') wake = Math.min(wake, s.since + t.spec.startTimeoutMs);
      if (s.state === 'running' && t.hangs && t.lastOkAt !== undefined) wake = Math.min(wake, t.lastOkAt + t.spec.deadlineMs);
      if ((s.state === 'starting' || s.state === 'running') && !t.probing) wake = Math.min(wake, t.nextProbeAt);
    }
    return wake;
  }

  private runProbe(t: Runtime, now: number): void {
    t.probing = true;
    // While starting, probe more often: the sooner it is seen running, the sooner it counts.
    t.nextProbeAt = now + (t.s.state === 'starting' ? Math.min(t.spec.intervalMs, 250) : t.spec.intervalMs);
    const h = t.spec.handle;
    void (async (): Promise<{ r: ProbeResult; dead: boolean }> => {
      if (!(await h.alive())) return { r: { ok: false, detail: 'not running' }, dead: true };
      return { r: await t.probe(t.spec.deadlineMs), dead: false };
    })()
      .catch((err: unknown): { r: ProbeResult; dead: boolean } => ({ r: { ok: false, detail: errorMessage(err) }, dead: false }))
      .then(({ r, dead }) => {
        t.probing = false;
        if (!this.running || t.busy > 0 || (t.s.state !== 'starting' && t.s.state !== 'running')) return;
        const at = this.opts.clock.now();
        if (dead) {
          void this.serial(t, () => this.fail(t, { at, cause: 'exited' }));
        } else if (r.ok) {
          t.lastOkAt = at;
          const tr = P.probeOk(t.s, at, this.opts.policy);
          if (tr.actions.length > 0) void this.serial(t, () => this.apply(t, tr));
          else {
            t.s = tr.next;
            this.persist(t);
          }
        } else if (r.hung) {
          void this.serial(t, () => this.fail(t, { at, cause: 'hung', detail: r.detail }));
        } else {
          this.log.debug({ target: t.spec.name, detail: r.detail }, 'probe failed');
        }
        this.schedule(0);
      });
  }
}
