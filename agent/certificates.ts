/**
 * The gateway's client certificate (CONTRACT.md section 7, docs/certificates.md): the
 * `certificate` operation (status, a new key and CSR, install) and the renewal watch that asks
 * the WMS for a new certificate on time.
 *
 * Files: the certificate and key are `mqtt.tls.cert` and `mqtt.tls.key`; {dataDir}/certs/ holds
 * pending.key (0600, made here, never sent), pending.csr, installing.pem (a certificate between
 * its checks and the swap), state.json, and the previous pair as {cert}.previous and
 * {key}.previous until the new one has worked for a day.
 *
 * INVARIANTS
 * - The private key never leaves the gateway; it is written 0600, atomically.
 * - A new certificate replaces the old one only after its checks and a separate MQTT connection
 *   with it succeeded; the broker refusing it leaves the old pair untouched (`broker-refused`).
 * - The swap is persisted (saveData `swap`) before the first file is replaced and is redone by
 *   `resume`, so a power cut never leaves a key and a certificate that do not belong together.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { z } from 'zod';
import { fsyncDir, readJsonFile, writeFileAtomic, writeJsonAtomic } from '../lib/atomic.js';
import { EdgeError, errorMessage } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { tlsConnectOptions } from '../lib/mqtt-options.js';
import { makeCsr, newKey } from '../certs/csr.js';
import { CertificateError, certInfo, checkClientCert, pemCerts, renewalDue } from '../certs/client-cert.js';
import type { AgentConfig } from '../core/config.js';
import type { AuditPort } from '../core/audit.js';
import type { AgentEvent, Component, OperationContext, OperationHandler, OperationOutcome } from '../core/ports.js';

const DAY_MS = 86_400_000;

export const certificateParams = z.discriminatedUnion('action', [
  z.object({ action: z.literal('status') }).strict(),
  z.object({ action: z.literal('csr'), keyType: z.enum(['ec-p256', 'rsa-2048']).default('ec-p256') }).strict(),
  z.object({ action: z.literal('install'), cert: z.string().min(1).max(64 * 1024) }).strict(),
]);
export type CertificateParams = z.infer<typeof certificateParams>;

export interface CertificatesOptions {
  config: AgentConfig;
  clock: Clock;
  logger: Logger;
  audit: AuditPort;
  actorOf(id: string): string;
  event(ev: AgentEvent): void;
  /** Reconnects the WMS link (with the files as they are now). */
  reconnect(): Promise<void>;
  connected(): boolean;
  durable(): Promise<void>;
}

interface State {
  lastRenewalEventAt?: number;
  installedAt?: number;
}

export class Certificates implements Component {
  readonly name = 'certificates';
  private timer: NodeJS.Timeout | undefined;
  private readonly dir: string;

  constructor(private readonly o: CertificatesOptions) {
    this.dir = join(o.config.dataDir, 'certs');
  }

  private get tls(): AgentConfig['mqtt']['tls'] {
    return this.o.config.mqtt.tls;
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private state(): State {
    try {
      return (readJsonFile(this.path('state.json')) as State | undefined) ?? {};
    } catch {
      return {};
    }
  }

  private saveState(s: State): void {
    writeJsonAtomic(this.path('state.json'), s, 0o600);
  }

  /** The certificate in use, or undefined when none is configured or it cannot be read. */
  current(): X509Certificate | undefined {
    if (!this.tls.cert) return undefined;
    try {
      return pemCerts(readFileSync(this.tls.cert, 'utf8'))[0];
    } catch {
      return undefined;
    }
  }

  /** The standing alarm for `status`: the certificate expires within `alarmDays`. */
  alerts(): Record<string, unknown>[] {
    const c = this.current();
    if (!c) return [];
    const left = Date.parse(c.validTo) - this.o.clock.now();
    const cfg = this.o.config.certificates;
    if (left > cfg.alarmDays * DAY_MS) return [];
    return [{ code: 'certificate-expiring', severity: 'critical', metric: 'certificate.daysLeft', value: Math.floor(left / DAY_MS), threshold: cfg.alarmDays, since: new Date(Date.parse(c.validTo) - cfg.alarmDays * DAY_MS).toISOString(), message: `the client certificate expires ${new Date(c.validTo).toISOString()}: install its renewal (a CSR was sent as certificate-renewal)` }];
  }

  async start(): Promise<void> {
    if (!this.tls.cert || !this.tls.key) return;
    this.timer = this.o.clock.setInterval(() => this.check(), this.o.config.certificates.checkIntervalMs);
    this.timer.unref();
    this.check();
  }

  async stop(): Promise<void> {
    this.o.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Renewal on time, repeated daily until installed; the previous pair dropped after a day. */
  check(): void {
    try {
      const c = this.current();
      if (!c) return;
      const now = this.o.clock.now();
      const cfg = this.o.config.certificates;
      const s = this.state();
      if (s.installedAt !== undefined && now - s.installedAt >= DAY_MS && this.o.connected()) {
        for (const f of [`${this.tls.cert}.previous`, `${this.tls.key}.previous`]) rmSync(f, { force: true });
        delete s.installedAt;
        this.saveState(s);
      }
      const due = renewalDue(Date.parse(c.validFrom), Date.parse(c.validTo), cfg.renewAtFraction, cfg.renewBeforeDays * DAY_MS);
      if (now < due) return;
      if (s.lastRenewalEventAt !== undefined && s.lastRenewalEventAt >= due && now - s.lastRenewalEventAt < cfg.repeatMs) return;
      const csr = existsSync(this.path('pending.csr')) && existsSync(this.path('pending.key')) ? readFileSync(this.path('pending.csr'), 'utf8') : this.newCsr('ec-p256');
      const info = certInfo(c);
      const left = Date.parse(c.validTo) - now;
      this.o.event({
        type: 'certificate',
        severity: left <= cfg.alarmDays * DAY_MS ? 'critical' : 'warning',
        code: 'certificate-renewal',
        message: `the client certificate expires ${info.notAfter}: sign the CSR and send it back with certificate install`,
        csr,
        fingerprint: info.fingerprint,
        notAfter: info.notAfter,
        due: new Date(due).toISOString(),
      });
      this.saveState({ ...s, lastRenewalEventAt: now });
      this.o.logger.warn({ notAfter: info.notAfter, due: new Date(due).toISOString() }, 'client certificate due for renewal: CSR sent on ~/events');
    } catch (err) {
      this.o.logger.error({ err }, 'the certificate renewal check failed; tried again at the next check');
    }
  }

  private newCsr(keyType: 'ec-p256' | 'rsa-2048'): string {
    const key = newKey(keyType);
    const csr = makeCsr(key, this.o.config.gatewayId);
    writeFileAtomic(this.path('pending.key'), key, 0o600);
    writeFileAtomic(this.path('pending.csr'), csr, 0o640);
    return csr;
  }

  /** A separate connection with the candidate pair: the broker's own verdict, nothing published. */
  private async trial(certPem: string, keyPem: string): Promise<void> {
    const m = this.o.config.mqtt;
    const opts = { ...tlsConnectOptions(m.tls), cert: Buffer.from(certPem), key: Buffer.from(keyPem) };
    const client = mqtt.connect(m.url, {
      ...opts,
      clientId: `${m.clientId ?? `edge-agent-${this.o.config.gatewayId}`}-cert-check`,
      protocolVersion: m.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: m.connectTimeoutMs,
      ...(m.username !== undefined ? { username: m.username } : {}),
      ...(m.password !== undefined ? { password: m.password } : {}),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', (err) => reject(err));
        client.once('close', () => reject(new Error('the broker closed the connection before accepting it')));
      });
    } catch (err) {
      throw new CertificateError('broker-refused', `the broker refused a connection with the new certificate (${errorMessage(err)}); the current one stays in use`);
    } finally {
      client.end(true);
    }
  }

  private swap(chainPem: string, keyPem: string): void {
    const { cert, key } = this.tls;
    for (const [from, to] of [[cert!, `${cert!}.previous`], [key!, `${key!}.previous`]] as const) {
      if (existsSync(from)) writeFileAtomic(to, readFileSync(from), 0o600);
    }
    writeFileAtomic(key!, keyPem, 0o600);
    writeFileAtomic(cert!, chainPem, 0o644);
  }

  operation(): OperationHandler<CertificateParams> {
    const record = (ctx: OperationContext<CertificateParams>, action: string, outcome: string, details: Record<string, unknown>): void => {
      try {
        this.o.audit({ actor: this.o.actorOf(ctx.id), action, target: this.o.config.gatewayId, outcome, details: { command: ctx.id, ...details } });
      } catch (err) {
        ctx.logger.error({ err }, 'could not record the certificate change in the audit trail');
      }
    };
    const finishInstall = async (ctx: OperationContext<CertificateParams>): Promise<OperationOutcome> => {
      const chain = readFileSync(this.path('installing.pem'), 'utf8');
      this.swap(chain, readFileSync(this.path('pending.key'), 'utf8'));
      const leaf = pemCerts(chain)[0]!;
      const info = certInfo(leaf);
      for (const f of ['pending.key', 'pending.csr', 'installing.pem']) rmSync(this.path(f), { force: true });
      fsyncDir(this.dir);
      this.saveState({ installedAt: this.o.clock.now() });
      record(ctx, 'certificate-install', 'installed', { fingerprint: info.fingerprint, notAfter: info.notAfter });
      ctx.progress('reconnect');
      await this.o.reconnect();
      return { status: 'successful', result: { fingerprint: info.fingerprint, notAfter: info.notAfter } };
    };
    const fail = (err: unknown): OperationOutcome => {
      if (err instanceof EdgeError) return { status: 'failed', reason: { code: (err as EdgeError<string>).code, message: err.message } };
      throw err;
    };
    return {
      op: 'certificate',
      params: certificateParams,
      exclusive: false,
      execute: async (ctx) => {
        const p = ctx.params;
        try {
          if (p.action === 'status') {
            const c = this.current();
            if (!c) throw new CertificateError('cert-unconfigured', 'no client certificate is configured (mqtt.tls.cert) or it cannot be read');
            const pending = existsSync(this.path('pending.csr')) ? readFileSync(this.path('pending.csr'), 'utf8') : undefined;
            return { status: 'successful', result: { ...certInfo(c), ...(pending ? { pendingCsr: pending } : {}) } };
          }
          if (!this.tls.cert || !this.tls.key) throw new CertificateError('cert-unconfigured', 'the agent has no client certificate to replace: set mqtt.tls.cert and mqtt.tls.key');
          if (p.action === 'csr') {
            const csr = this.newCsr(p.keyType);
            record(ctx, 'certificate-csr', 'created', { keyType: p.keyType });
            return { status: 'successful', result: { csr } };
          }
          if (!existsSync(this.path('pending.key'))) throw new CertificateError('no-pending-key', 'there is no pending key: ask for a CSR first (certificate csr)');
          const keyPem = readFileSync(this.path('pending.key'), 'utf8');
          const anchors = this.tls.ca ? readFileSync(this.tls.ca, 'utf8') : '';
          ctx.progress('check');
          try {
            checkClientCert({ chainPem: p.cert, keyPem, anchorsPem: anchors, now: new Date(this.o.clock.now()), commonName: this.o.config.gatewayId });
            ctx.progress('try');
            await this.trial(p.cert, keyPem);
          } catch (err) {
            record(ctx, 'certificate-install', `refused/${err instanceof EdgeError ? err.code : 'internal'}`, {});
            throw err;
          }
          writeFileAtomic(this.path('installing.pem'), p.cert, 0o640);
          ctx.saveData({ phase: 'swap' });
          await this.o.durable();
          ctx.setCancellable(false);
          return await finishInstall(ctx);
        } catch (err) {
          return fail(err);
        }
      },
      resume: async (ctx) => {
        const d = ctx.loadData() as { phase?: string } | undefined;
        if (d?.phase === 'swap' && existsSync(this.path('installing.pem'))) return finishInstall(ctx);
        return { status: 'failed', reason: { code: 'interrupted', message: 'the agent stopped before the certificate was installed; the current one stays in use' } };
      },
    };
  }
}
