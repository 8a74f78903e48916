/**
 * Group `identity`: the device certificate the agent presents to the broker (mqtt.tls.cert and
 * .key). Present and readable, the key belongs to the certificate, and how long it has left.
 * Never reads out or reports the key itself: only whether it loads and matches.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { errText, failure, ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';

const DAY_MS = 24 * 3600 * 1000;
/** Renew before this many days are left (a certificate's renewal usually takes days to roll out). */
export const EXPIRY_WARNING_DAYS = 30;
/** The alarm of issue 16 (docs/certificates.md): this few days left is a failure, not a warning. */
export const EXPIRY_ALARM_DAYS = 7;

/** The verdict on a certificate's validity window at `now`; pure. */
export function expiryVerdict(notBefore: Date, notAfter: Date, now: number, subject: string): CheckResult {
  const days = Math.floor((notAfter.getTime() - now) / DAY_MS);
  const details = { subject, notBefore: notBefore.toISOString(), notAfter: notAfter.toISOString(), daysLeft: days };
  if (now < notBefore.getTime()) {
    return failure(
      'expiry',
      `the device certificate is not valid before ${notBefore.toISOString()}`,
      'check the clock (group time); if it is right, the certificate was issued with a future start date: reissue it',
      details,
    );
  }
  if (now > notAfter.getTime()) {
    return failure('expiry', `the device certificate expired on ${notAfter.toISOString()}`, 'issue a new device certificate and key and install them at mqtt.tls.cert and mqtt.tls.key', details);
  }
  if (days < EXPIRY_ALARM_DAYS) {
    return failure('expiry', `the device certificate expires in ${days} day${days === 1 ? '' : 's'} (${notAfter.toISOString()})`, 'the agent sent a CSR as the certificate-renewal event: have the CA sign it and send it back with the certificate operation (install), or edge-agent cert install FILE', details);
  }
  if (days < EXPIRY_WARNING_DAYS) {
    return warning('expiry', `the device certificate expires in ${days} day${days === 1 ? '' : 's'} (${notAfter.toISOString()})`, 'renew the device certificate before it expires', details);
  }
  return ok('expiry', `the device certificate is valid for ${days} more days (until ${notAfter.toISOString().slice(0, 10)})`, details);
}

export const identityChecks: GroupCheck = async (ctx) => {
  const tls = ctx.config.mqtt.tls;
  if (!tls.cert || !tls.key) return [skipped('certificate', 'no device certificate configured (mqtt.tls.cert): the broker knows this gateway by user name or not at all')];
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(tls.cert));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return [
      failure(
        'certificate',
        missing ? `the device certificate ${tls.cert} does not exist` : `cannot read the device certificate ${tls.cert}: ${errText(err)}`,
        missing ? 'install the device certificate at mqtt.tls.cert, or correct the path' : 'replace it with a PEM certificate readable by the service user',
      ),
    ];
  }
  const subject = cert.subject.replace(/\n/g, ', ');
  const results: CheckResult[] = [ok('certificate', `${tls.cert}: ${subject}, issued by ${cert.issuer.replace(/\n/g, ', ')}`, { serialNumber: cert.serialNumber })];
  try {
    const key = createPrivateKey(await readFile(tls.key));
    results.push(
      cert.checkPrivateKey(key)
        ? ok('key', `the key ${tls.key} belongs to the certificate`)
        : failure('key', `the key ${tls.key} does not belong to the certificate ${tls.cert}`, 'install the key that was generated with this certificate (or a new certificate for this key)'),
    );
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    results.push(
      failure(
        'key',
        missing ? `the device key ${tls.key} does not exist` : `cannot load the device key ${tls.key} (unreadable, encrypted or not a PEM private key)`,
        'install the unencrypted PEM private key at mqtt.tls.key, readable by the service user only (mode 0600)',
      ),
    );
  }
  results.push(expiryVerdict(new Date(cert.validFrom), new Date(cert.validTo), ctx.now(), subject));
  return results;
};
