/**
 * `update-health` (issue 18): `ota.healthReportSec` after an `update` committed, one event on
 * `~/events` with the release's health since the commit: agent starts after it (restarts),
 * incidents recorded, alerts raised. A rollout engine halts on failures that appear after a
 * "successful" install with it (docs/fleet.md).
 *
 * INVARIANTS
 * - The commit is persisted ({dataDir}/update-health.json, atomic) when the command succeeds, so
 *   a restart before the report neither loses nor restarts the wait: the report is due at
 *   commit + healthReportSec whatever happened in between, and each start counts as a restart.
 * - The event is queued durably before the file says `reported`; a power cut between them sends
 *   it again (at least once, never zero times).
 * - A later commit replaces an unreported one: the report is about the release that runs.
 */
import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../lib/atomic.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { AgentEvent, Component } from '../core/ports.js';

export interface UpdateHealthOptions {
  dataDir: string;
  /** 0: no report. */
  reportSec: number;
  version: string;
  slot: string;
  clock: Clock;
  logger: Logger;
  event(ev: AgentEvent, durable: boolean): void;
  /** Incidents recorded at or after `since` (ms). */
  incidentsSince(since: number): number;
  /** Alerts active now, with when each was raised. */
  alerts(): { code: string; since: string }[];
}

interface State {
  command: string;
  rolloutId?: string;
  version: string;
  slot: string;
  committedAt: number;
  /** Agent starts since the commit (the first process, the one that committed, is not one). */
  restarts: number;
  reported: boolean;
}

export class UpdateHealth implements Component {
  readonly name = 'update-health';
  private timer: NodeJS.Timeout | undefined;
  /** This process committed (or took over) the report: its start is not a restart. */
  private fresh = false;

  constructor(private readonly o: UpdateHealthOptions) {}

  private get path(): string {
    return join(this.o.dataDir, 'update-health.json');
  }

  private load(): State | undefined {
    try {
      return readJsonFile(this.path) as State | undefined;
    } catch (err) {
      this.o.logger.warn({ err }, 'update-health.json is damaged: no health report for the last update');
      return undefined;
    }
  }

  async start(): Promise<void> {
    const s = this.load();
    if (!s || s.reported || this.fresh) return;
    s.restarts++;
    writeJsonAtomic(this.path, s);
    this.schedule(s);
  }

  async stop(): Promise<void> {
    this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** An `update` command succeeded (its release is committed): the report is due in reportSec. */
  committed(command: string, rolloutId: string | undefined): void {
    if (this.o.reportSec <= 0) return;
    this.fresh = true;
    const s: State = { command, ...(rolloutId === undefined ? {} : { rolloutId }), version: this.o.version, slot: this.o.slot, committedAt: this.o.clock.now(), restarts: 0, reported: false };
    writeJsonAtomic(this.path, s);
    this.schedule(s);
  }

  private schedule(s: State): void {
    this.o.clock.clearTimeout(this.timer);
    const delay = Math.max(0, s.committedAt + this.o.reportSec * 1000 - this.o.clock.now());
    this.timer = this.o.clock.setTimeout(() => this.report(), delay);
  }

  private report(): void {
    this.timer = undefined;
    const s = this.load();
    if (!s || s.reported) return;
    try {
      const since = s.committedAt;
      const incidents = this.o.incidentsSince(since);
      const alerts = this.o.alerts().filter((a) => Date.parse(a.since) >= since).map((a) => a.code);
      const healthy = s.restarts === 0 && incidents === 0 && alerts.length === 0;
      this.o.event(
        {
          type: 'update-health',
          severity: healthy ? 'info' : 'warning',
          code: 'update-health',
          message: `${s.version} ${Math.round((this.o.clock.now() - since) / 1000)} s after its commit: ${s.restarts} restarts, ${incidents} incidents, ${alerts.length} alerts`,
          command: s.command,
          ...(s.rolloutId === undefined ? {} : { rolloutId: s.rolloutId }),
          version: s.version,
          slot: s.slot,
          committedAt: new Date(since).toISOString(),
          restarts: s.restarts,
          incidents,
          alerts,
          healthy,
        },
        true,
      );
      writeJsonAtomic(this.path, { ...s, reported: true });
    } catch (err) {
      this.o.logger.error({ err }, 'the update health report failed');
    }
  }
}
