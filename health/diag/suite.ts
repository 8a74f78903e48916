/**
 * The diagnostics suite: every group at once, each bounded by `diag.checkTimeoutMs` (a group
 * past it is cut off: its signal aborts, its sockets close, and it reports a warning that says
 * so), so the whole suite ends in about one bound even when everything is unreachable. Used by
 * `edge-agent diag` (daemon up or down) and by the `diagnostics` operation inside the daemon.
 *
 * A group that throws is a failure of that group, never of the suite.
 */
import { configurationChecks } from './config.js';
import { identityChecks } from './identity.js';
import { connectivityChecks } from './connectivity.js';
import { timeChecks } from './time.js';
import { storageChecks } from './storage.js';
import { slotsChecks } from './slots.js';
import { componentsChecks } from './components.js';
import { plcChecks } from './plc.js';
import { logsChecks } from './logs.js';
import { maintenanceChecks } from './maintenance.js';
import { errText, exitCodeOf, GROUPS, skipped, warning, failure, worst, type CheckResult, type DiagContext, type DiagReport, type GroupCheck, type GroupName, type GroupReport } from './types.js';

const CHECKS: Record<Exclude<GroupName, 'configuration'>, GroupCheck> = {
  identity: identityChecks,
  connectivity: connectivityChecks,
  time: timeChecks,
  storage: storageChecks,
  slots: slotsChecks,
  components: componentsChecks,
  plc: plcChecks,
  maintenance: maintenanceChecks,
  logs: logsChecks,
};

/** The timeout when the configuration does not load (and so does not say). */
const FALLBACK_TIMEOUT_MS = 4000;

export async function bounded(name: GroupName, timeoutMs: number, run: (signal: AbortSignal) => Promise<CheckResult[]>): Promise<GroupReport> {
  const t0 = Date.now();
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult[]>((resolve) => {
    timer = setTimeout(() => {
      ctl.abort(new Error(`${name} checks timed out`));
      resolve([warning('timeout', `the ${name} checks did not finish within ${timeoutMs} ms; their result is not known`, `run \`edge-agent diag\` again; if it repeats, something in ${name} hangs (raise diag.checkTimeoutMs to see what)`)]);
    }, timeoutMs);
  });
  let checks: CheckResult[];
  try {
    checks = await Promise.race([run(ctl.signal), timeout]);
  } catch (err) {
    checks = [failure('error', `the ${name} checks failed: ${errText(err)}`, 'report this with a support bundle (edge-agent support-bundle)')];
  } finally {
    clearTimeout(timer);
    // Whatever a group still has open (a socket, a stream) closes now.
    ctl.abort(new Error('diagnostics finished'));
  }
  return { name, status: worst(checks.map((c) => c.status)), durationMs: Date.now() - t0, checks };
}

/** Builds the report from the groups' results; pure. */
export function buildReport(ctx: Pick<DiagContext, 'source' | 'daemon' | 'version' | 'config'>, groups: GroupReport[], startedAt: number, finishedAt: number): DiagReport {
  const all = groups.flatMap((g) => g.checks);
  const overall = worst(groups.map((g) => g.status));
  return {
    format: 1,
    checkedAt: new Date(finishedAt).toISOString(),
    durationMs: finishedAt - startedAt,
    source: ctx.source,
    daemon: ctx.daemon,
    gatewayId: ctx.config?.gatewayId,
    version: ctx.version,
    overall,
    exitCode: exitCodeOf(overall),
    summary: {
      ok: all.filter((c) => c.status === 'ok' && !c.skipped).length,
      warning: all.filter((c) => c.status === 'warning').length,
      failure: all.filter((c) => c.status === 'failure').length,
      skipped: all.filter((c) => c.skipped).length,
    },
    groups,
  };
}

/** Runs every group (or `only` those) concurrently; never throws. */
export async function runSuite(ctx: DiagContext, only?: readonly GroupName[]): Promise<DiagReport> {
  const t0 = Date.now();
  const config = ctx.config;
  const timeoutMs = config?.diag.checkTimeoutMs ?? FALLBACK_TIMEOUT_MS;
  const names = GROUPS.filter((g) => !only || only.includes(g));
  if (!names.includes('connectivity')) ctx.learnBrokerCert(undefined);
  const groups = await Promise.all(
    names.map((name) => {
      if (name === 'configuration') return bounded(name, timeoutMs, () => configurationChecks(ctx));
      if (!config) return bounded(name, timeoutMs, async () => [skipped('not-checked', 'not checked: the configuration does not load')]);
      const check = CHECKS[name];
      return bounded(name, timeoutMs, (signal) => check({ ...ctx, config }, signal));
    }),
  );
  return buildReport(ctx, groups, t0, Date.now());
}
