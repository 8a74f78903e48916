/**
 * How the watchdog tells what it did: an incident row (recovery/incidents.ts), a log line and an
 * event on `~/events` for each failure and requested restart; a `recovery` event when incidents
 * are resolved; `alarm` and `alarm-cleared`. Event shapes are in docs/asyncapi.yaml and
 * docs/errors.md ("recovery").
 */
import type { Logger } from '../lib/log.js';
import type { AgentEvent } from '../core/ports.js';
import type { IncidentStore } from './incidents.js';
import type { Action, Level } from './policy.js';

export type IncidentAction = Extract<Action, { kind: 'incident' }>;

export class Reporter {
  constructor(
    private readonly opts: { store: IncidentStore; event(ev: AgentEvent): void; logger: Logger },
  ) {}

  requested(name: string, at: number, level: Level): void {
    const id = this.opts.store.record({ at, component: name, cause: 'requested', action: 'restart', level, detail: 'restart command' });
    this.opts.logger.info({ target: name, incident: id }, 'restart on request');
    this.opts.event({ type: 'incident', severity: 'info', code: 'component-restart-requested', message: `${name}: restarted on request`, component: name, incident: id, cause: 'requested', action: 'restart' });
  }

  /** `notes`: what the escalation step did (restore, rollback), for the incident's detail. */
  failure(name: string, a: IncidentAction, notes: string[], lastLog: string[]): void {
    const f = a.failure;
    const detail = [f.detail, ...notes, `next start in ${a.delayMs} ms`].filter(Boolean).join('; ');
    const id = this.opts.store.record({ at: f.at, component: name, cause: f.cause, exitCode: f.exitCode, signal: f.signal, lastLog, action: a.step, level: a.level, detail });
    const how = f.exitCode !== undefined ? ` with code ${f.exitCode}` : f.signal !== undefined ? ` by ${f.signal}` : '';
    this.opts.logger.warn({ target: name, incident: id, cause: f.cause, exitCode: f.exitCode, signal: f.signal, step: a.step, level: a.level, delayMs: a.delayMs }, 'component failed');
    this.opts.event({
      type: 'incident',
      severity: a.level >= 3 ? 'critical' : 'warning',
      code: `component-${f.cause}`,
      message: `${name} ${f.cause}${how}: ${a.step}; ${detail}`,
      component: name,
      incident: id,
      cause: f.cause,
      ...(f.exitCode !== undefined ? { exitCode: f.exitCode } : {}),
      ...(f.signal !== undefined ? { signal: f.signal } : {}),
      action: a.step,
      level: a.level,
      delayMs: a.delayMs,
      lastLog: lastLog.slice(-5),
    });
  }

  /** Healthy for healthyMs since `at`: its open incidents are resolved as of then. */
  recovered(name: string, at: number): void {
    const resolved = this.opts.store.resolve(name, at);
    if (resolved.length === 0) return;
    const recoveryMs = Math.max(...resolved.map((i) => i.recoveryMs ?? 0));
    this.opts.logger.info({ target: name, recoveryMs, incidents: resolved.length }, 'component recovered');
    this.opts.event({
      type: 'recovery',
      severity: 'info',
      code: 'component-recovered',
      message: `${name} is running again and stayed up: ${resolved.length} incident(s), running again ${recoveryMs} ms after the first`,
      component: name,
      recoveryMs,
      incidents: resolved.map((i) => i.id),
    });
  }

  alarm(name: string, message: string): void {
    this.opts.logger.error({ target: name, alarm: message }, 'alarm raised: crash loop');
    this.opts.event({ type: 'alarm', severity: 'critical', code: 'crash-loop', message: `${name}: ${message}`, component: name });
  }

  alarmCleared(name: string, message: string): void {
    this.opts.logger.info({ target: name }, 'alarm cleared');
    this.opts.event({ type: 'alarm-cleared', severity: 'info', code: 'crash-loop', message: `${name}: ${message}`, component: name });
  }
}
