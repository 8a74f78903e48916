/**
 * The suite inside the daemon, for the `diagnostics` operation: the same checks as
 * `edge-agent diag`, against the daemon's own handles. The result is the daemon's quick facts
 * (status, process, store, loops: what the first version of the operation returned, so older
 * WMS code keeps working) followed by the report's fields; with `upload` the support bundle is
 * made and PUT, and the outcome is in `result.upload`.
 *
 * A burst of commands shares one run: a run in progress is joined, and a report younger than
 * REUSE_MS is returned again (a flood of `diagnostics` must not open a broker connection each).
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../../core/config.js';
import type { AgentStoreReader } from '../../core/ports.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { Db } from '../../lib/sqlite.js';
import { makeSupportBundle } from '../support-bundle.js';
import { diagContext, liveIntegrity } from './context.js';
import { DiagError } from './errors.js';
import { runSuite } from './suite.js';
import type { DiagContext, DiagReport, GroupName } from './types.js';
import { uploadFile, type UploadOutcome, type UploadTarget } from './upload.js';

export const REUSE_MS = 5000;

export interface DaemonDiagOptions {
  config: AgentConfig;
  configPath: string | undefined;
  db: Db;
  /** The agent's own tables (outbox, commands): agent/store-reader.ts. */
  storeReader: AgentStoreReader;
  clock: Clock;
  logger: Logger;
  version: string;
  builtAt: string | undefined;
  /** The daemon's quick facts: status, loops, cached store integrity (agent/main.ts). */
  facts(): Record<string, unknown>;
}

export class DaemonDiagnostics {
  private running: Promise<DiagReport> | undefined;
  private last: { at: number; report: DiagReport } | undefined;

  constructor(private readonly opts: DaemonDiagOptions) {}

  private context(live: Record<string, unknown>): DiagContext {
    const o = this.opts;
    return diagContext({
      source: 'daemon',
      config: o.config,
      configPath: o.configPath,
      configError: undefined,
      now: () => o.clock.now(),
      version: o.version,
      builtAt: o.builtAt,
      db: o.db,
      storeReader: o.storeReader,
      live,
      daemon: 'running',
      integrity: () => liveIntegrity(live),
    });
  }

  /** The report, shared with a run in progress or reused while fresh. */
  async report(): Promise<DiagReport> {
    const now = this.opts.clock.now();
    if (this.last && now - this.last.at < REUSE_MS) return this.last.report;
    this.running ??= runSuite(this.context(this.opts.facts()))
      .then((report) => {
        this.last = { at: this.opts.clock.now(), report };
        this.opts.logger.info({ overall: report.overall, summary: report.summary, durationMs: report.durationMs }, 'diagnostics suite ran');
        return report;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Only these groups, run now (the maintenance actions: slot-verify, config-verify, cert-expiry). */
  async groups(only: readonly GroupName[]): Promise<DiagReport> {
    return runSuite(this.context(this.opts.facts()), only);
  }

  /** The support bundle (the latest report, shared as `report` does), written to `out` (mode 0600). */
  async bundle(out: string): Promise<void> {
    const report = await this.report();
    await makeSupportBundle({ ctx: this.context(this.opts.facts()), report, out });
  }

  /** The operation's result; with `upload`, also the bundle's upload outcome. */
  async run(params: { upload?: UploadTarget | undefined }, progress: (step: string) => void): Promise<Record<string, unknown>> {
    progress('collect');
    const report = await this.report();
    const result: Record<string, unknown> = { ...this.opts.facts(), ...report };
    if (params.upload) result.upload = await this.upload(report, params.upload, progress);
    return result;
  }

  private async upload(report: DiagReport, target: UploadTarget, progress: (step: string) => void): Promise<UploadOutcome> {
    const c = this.opts.config;
    progress('bundle');
    const out = join(tmpdir(), `edge-agent-support-${c.gatewayId}-${this.opts.clock.now()}.tar.gz`);
    try {
      try {
        await makeSupportBundle({ ctx: this.context(this.opts.facts()), report, out });
      } catch (err) {
        throw new DiagError('bundle-failed', `cannot make the support bundle: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      progress('upload');
      const outcome = await uploadFile(out, target, { timeoutMs: c.diag.upload.timeoutMs, maxBytes: c.diag.upload.maxBytes });
      // Headers and the query string are credentials: only the outcome is logged.
      this.opts.logger.info({ url: outcome.url, ok: outcome.ok, bytes: outcome.bytes, httpStatus: outcome.httpStatus, code: outcome.error?.code }, 'support bundle upload');
      return outcome;
    } finally {
      await rm(out, { force: true });
    }
  }
}
