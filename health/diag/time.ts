/**
 * Group `time`: a wrong clock breaks TLS (certificates "not yet valid" or "expired"), update
 * signatures and every timestamp the WMS sees. Checks: the clock is not before this release was
 * built; it is inside the validity of the certificate the broker showed (the one outside view
 * of the time we get without asking an NTP server ourselves); and the system says it is
 * synchronised (systemd-timesyncd or chrony through timedatectl, when there is one).
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { aborted, failure, ok, skipped, warning, type CheckResult, type DiagContext, type GroupCheck, type PeerCertTimes } from './types.js';

const SYNC_PROBE_MS = 1500;

/** The clock against the build date and the broker's certificate; pure. */
export function clockVerdict(now: number, builtAt: string | undefined, broker: PeerCertTimes | undefined): CheckResult[] {
  const out: CheckResult[] = [];
  const nowIso = new Date(now).toISOString();
  if (builtAt !== undefined && now < Date.parse(builtAt)) {
    out.push(failure('clock', `the clock says ${nowIso}, before this release was built (${builtAt})`, 'set the clock (timedatectl set-ntp true, or set the time by hand) and check the RTC battery', { now: nowIso, builtAt }));
  } else {
    out.push(ok('clock', `the clock says ${nowIso}${builtAt ? `, after this release was built (${builtAt.slice(0, 10)})` : ''}`, { now: nowIso, builtAt: builtAt ?? null }));
  }
  if (!broker) {
    out.push(skipped('broker-view', "the broker's view of the time is not known (no TLS handshake to learn it from)"));
  } else if (now < Date.parse(broker.notBefore)) {
    out.push(failure('broker-view', `the clock is behind: the broker's certificate is valid from ${broker.notBefore}, later than now (${nowIso})`, 'set the clock; TLS connections fail until it is right', { ...broker }));
  } else if (now > Date.parse(broker.notAfter)) {
    out.push(warning('broker-view', `the broker's certificate expired on ${broker.notAfter} by this clock: either the clock is ahead or the certificate is out of date`, 'check the clock first; if it is right, the broker operator must renew the certificate', { ...broker }));
  } else {
    out.push(ok('broker-view', "the clock lies inside the validity of the broker's certificate", { ...broker }));
  }
  return out;
}

/** `timedatectl show -p NTPSynchronized --value`: "yes", "no", or undefined when it cannot tell. */
function ntpSynchronized(signal: AbortSignal): Promise<'yes' | 'no' | undefined> {
  return new Promise((resolve) => {
    execFile('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: SYNC_PROBE_MS, signal }, (err, stdout) => {
      if (err) return resolve(undefined);
      const v = stdout.trim();
      resolve(v === 'yes' ? 'yes' : v === 'no' ? 'no' : undefined);
    });
  });
}

async function syncStatus(signal: AbortSignal): Promise<CheckResult> {
  const v = await ntpSynchronized(signal);
  if (v === 'yes') return ok('sync', 'the system clock is synchronised (timedatectl: NTPSynchronized=yes)');
  if (v === 'no') return warning('sync', 'the system clock is not synchronised (timedatectl: NTPSynchronized=no)', 'enable time synchronisation (timedatectl set-ntp true) and let it reach an NTP server');
  // systemd-timesyncd touches this file once it has synchronised (systemd-timesyncd.service(8)).
  const touched = await access('/run/systemd/timesync/synchronized').then(
    () => true,
    () => false,
  );
  if (touched) return ok('sync', 'the system clock is synchronised (/run/systemd/timesync/synchronized)');
  return skipped('sync', 'whether the clock is synchronised is not known here (no timedatectl answer)');
}

/** What the connectivity check learned; it ends within the same per-check bound, minus a margin. */
async function brokerView(ctx: DiagContext, signal: AbortSignal, waitMs: number): Promise<PeerCertTimes | undefined> {
  return Promise.race([ctx.brokerCert, aborted(AbortSignal.any([signal, AbortSignal.timeout(waitMs)]))]).catch(() => undefined);
}

export const timeChecks: GroupCheck = async (ctx, signal) => {
  const waitMs = Math.max(100, ctx.config.diag.checkTimeoutMs - 100);
  const [sync, broker] = await Promise.all([syncStatus(signal), brokerView(ctx, signal, waitMs)]);
  return [...clockVerdict(ctx.now(), ctx.builtAt, broker), sync];
};
