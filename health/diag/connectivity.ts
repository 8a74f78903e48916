/**
 * Group `connectivity`: the way to the WMS broker, one step at a time so the report names the
 * step that failed: DNS of the broker host, TCP connect, TLS handshake with the configured CA
 * (mqtts, ssl, wss), then an MQTT connect with the agent's credentials and a publish/subscribe
 * round trip on `~/diag/{nonce}` (QoS 1, not retained; inside the gateway's own subtree, so an
 * ACL that lets the agent work lets this through). A step runs only if the one before passed.
 *
 * The round trip uses its own client id (`{clientId}-diag-{nonce}`), a clean session and no
 * Last Will: it never takes over the agent's session or shows the gateway offline.
 * Every step is bounded (STEP_MS, and the suite's per-check timeout through `signal`).
 */
import { lookup } from 'node:dns/promises';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { IClientOptions } from 'mqtt';
import type { AgentConfig } from '../../core/config.js';
import { redactUrl } from '../../lib/log.js';
import { tlsConnectOptions } from '../../lib/mqtt-options.js';
import { aborted, errText, failure, ok, skipped, warning, type CheckResult, type DiagContext, type GroupCheck, type PeerCertTimes } from './types.js';

/** Bound of one step; the suite's per-check timeout bounds them all together. */
const STEP_MS = { dns: 2000, tcp: 3000, tls: 3000, mqtt: 4000 } as const;

export interface Endpoint {
  scheme: string;
  host: string;
  port: number;
  tls: boolean;
}

const DEFAULT_PORTS: Record<string, number> = { mqtt: 1883, tcp: 1883, mqtts: 8883, ssl: 8883, ws: 80, wss: 443 };

/** Host, port and whether TLS is used, from mqtt.url; pure. */
export function brokerEndpoint(url: string): Endpoint {
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, '');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { scheme, host, port: u.port ? Number(u.port) : (DEFAULT_PORTS[scheme] ?? 1883), tls: scheme === 'mqtts' || scheme === 'ssl' || scheme === 'wss' };
}

/** A step's bound: its own, cut to what is left of the check's budget so the check ends by itself. */
class Budget {
  private readonly deadline: number;
  constructor(
    private readonly signal: AbortSignal,
    totalMs: number,
  ) {
    // A margin, so the check reports its own failed step before the suite's timeout fires.
    this.deadline = Date.now() + totalMs - 250;
  }

  ms(step: keyof typeof STEP_MS): number {
    return Math.max(50, Math.min(STEP_MS[step], this.deadline - Date.now()));
  }

  signalFor(ms: number): AbortSignal {
    return AbortSignal.any([this.signal, AbortSignal.timeout(ms)]);
  }
}

function timeoutText(err: unknown, ms: number): string {
  return (err as Error).name === 'TimeoutError' ? `no answer within ${ms} ms` : errText(err);
}

async function tcpConnect(host: string, port: number, signal: AbortSignal): Promise<void> {
  const sock = netConnect({ host, port });
  try {
    await Promise.race([new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject)), aborted(signal)]);
  } finally {
    sock.destroy();
  }
}

/** What a TLS verification error code means for a person; recommendation text. */
function tlsAdvice(code: string | undefined): string {
  switch (code ?? '') {
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
      return "the broker's certificate is not signed by the CA in mqtt.tls.ca: install the CA that signed the broker certificate there";
    case 'CERT_HAS_EXPIRED':
      return "the broker's certificate has expired (or this gateway's clock is ahead: see group time); the broker operator must renew it";
    case 'CERT_NOT_YET_VALID':
      return "the broker's certificate is not valid yet: this gateway's clock is probably behind (see group time)";
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return "the broker's certificate does not name the host in mqtt.url: use the name it was issued for, or set mqtt.tls.servername";
    default:
      return 'check mqtt.tls (ca, cert, key, servername) against the broker; the message gives OpenSSL\'s reason';
  }
}

function tlsOptions(config: AgentConfig, ep: Endpoint): ConnectionOptions {
  const t = config.mqtt.tls;
  const o: ConnectionOptions = { host: ep.host, port: ep.port, ...tlsConnectOptions(t) };
  const sni = t.servername ?? (isIP(ep.host) ? undefined : ep.host);
  if (sni) o.servername = sni;
  return o;
}

async function tlsHandshake(config: AgentConfig, ep: Endpoint, signal: AbortSignal): Promise<{ peer: PeerCertTimes | undefined; protocol: string | null; authError: string | undefined }> {
  const sock: TLSSocket = tlsConnect(tlsOptions(config, ep));
  try {
    await Promise.race([new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject)), aborted(signal)]);
    const c = sock.getPeerCertificate();
    const peer = c && c.valid_from ? { notBefore: new Date(c.valid_from).toISOString(), notAfter: new Date(c.valid_to).toISOString() } : undefined;
    const authError = sock.authorized ? undefined : String(sock.authorizationError ?? 'not authorized');
    return { peer, protocol: sock.getProtocol(), authError };
  } finally {
    sock.destroy();
  }
}

function mqttOptions(config: AgentConfig, nonce: string, protocolVersion: 4 | 5, timeoutMs: number): IClientOptions {
  const m = config.mqtt;
  const o: IClientOptions = {
    clientId: `${m.clientId ?? `edge-agent-${config.gatewayId}`}-diag-${nonce}`.slice(0, 128),
    protocolVersion,
    clean: true,
    keepalive: 30,
    connectTimeout: timeoutMs,
    reconnectPeriod: 0,
    ...tlsConnectOptions(m.tls),
  };
  if (protocolVersion === 5) o.properties = { sessionExpiryInterval: 0 };
  if (m.username !== undefined) o.username = m.username;
  if (m.password !== undefined) o.password = m.password;
  return o;
}

/** Connect, subscribe, publish, receive our own message; resolves with the phases' times. */
async function roundTrip(config: AgentConfig, signal: AbortSignal, timeoutMs: number): Promise<{ connectMs: number; roundTripMs: number; protocolVersion: number }> {
  const { connect } = await import('mqtt');
  const nonce = randomBytes(6).toString('hex');
  const topic = `${config.mqtt.prefix}/${config.gatewayId}/diag/${nonce}`;
  let version: 4 | 5 = config.mqtt.protocolVersion;
  for (;;) {
    const t0 = Date.now();
    const client = connect(config.mqtt.url, mqttOptions(config, nonce, version, timeoutMs));
    try {
      await Promise.race([
        new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve());
          client.once('error', reject);
          client.once('close', () => reject(new Error('the broker closed the connection before CONNACK')));
        }),
        aborted(signal),
      ]);
      const connectMs = Date.now() - t0;
      const t1 = Date.now();
      const echo = new Promise<void>((resolve) => client.on('message', (t) => t === topic && resolve()));
      const granted = await Promise.race([client.subscribeAsync(topic, { qos: 1 }), aborted(signal)]);
      if (granted.some((g) => g.qos >= 0x80)) throw new Error(`the broker refused the subscription to ${topic} (ACL?)`);
      await Promise.race([client.publishAsync(topic, JSON.stringify({ nonce, ts: new Date().toISOString() }), { qos: 1 }), aborted(signal)]);
      await Promise.race([echo, aborted(signal)]);
      return { connectMs, roundTripMs: Date.now() - t1, protocolVersion: version };
    } catch (err) {
      // CONNACK "unacceptable protocol version" (MQTT 5 section 3.2.2.2): the agent falls back too.
      const rc = (err as { code?: unknown }).code;
      if (version === 5 && (rc === 1 || rc === 0x84)) {
        version = 4;
        continue;
      }
      throw err;
    } finally {
      client.removeAllListeners('message');
      client.end(true);
    }
  }
}

/** What the running agent says about its own link, when it runs. */
function agentLink(ctx: DiagContext): CheckResult {
  if (ctx.source === 'cli' && !ctx.live) return skipped('agent-link', `the daemon is ${ctx.daemon}: its own connection is not known`);
  const b = (ctx.live?.broker ?? {}) as { connected?: boolean; url?: string; urls?: string[]; since?: string; lastError?: string; attempts?: number };
  // With mqtt.urls (failover) the broker in use is the one the agent says, not necessarily the first.
  const which = b.urls && b.url ? ` ${b.url} (of ${b.urls.length})` : '';
  if (b.connected) return ok('agent-link', `the agent is connected to the broker${which}${b.since ? ` since ${b.since}` : ''}`);
  return failure('agent-link', `the agent is not connected to the broker${b.lastError ? `: ${b.lastError}` : ''}`, 'see the failed step above; the agent keeps retrying with backoff', {
    attempts: b.attempts ?? null,
    ...(b.url ? { next: b.url } : {}),
  });
}

/** DNS, TCP, TLS, MQTT in order; stops at the first failure (the later steps cannot pass). */
async function steps(config: AgentConfig, budget: Budget, results: CheckResult[]): Promise<PeerCertTimes | undefined> {
  const url = redactUrl(config.mqtt.url);
  const ep = brokerEndpoint(config.mqtt.url);
  let address = ep.host;
  if (isIP(ep.host)) {
    results.push(skipped('dns', `${ep.host} is an IP address`));
  } else {
    const ms = budget.ms('dns');
    try {
      const addrs = await Promise.race([lookup(ep.host, { all: true }), aborted(budget.signalFor(ms))]);
      address = addrs[0]?.address ?? ep.host;
      results.push(ok('dns', `${ep.host} resolves to ${addrs.map((a) => a.address).join(', ')}`));
    } catch (err) {
      results.push(failure('dns', `${ep.host} does not resolve: ${timeoutText(err, ms)}`, 'check the host name in mqtt.url and the DNS servers (/etc/resolv.conf)', { url }));
      return undefined;
    }
  }
  const tcpMs = budget.ms('tcp');
  try {
    await tcpConnect(address, ep.port, budget.signalFor(tcpMs));
    results.push(ok('tcp', `TCP connect to ${ep.host}:${ep.port} succeeded`));
  } catch (err) {
    results.push(failure('tcp', `cannot connect to ${ep.host}:${ep.port}: ${timeoutText(err, tcpMs)}`, 'check that the broker runs and listens on that port, and that no firewall blocks the way', { url }));
    return undefined;
  }
  let peer: PeerCertTimes | undefined;
  if (ep.tls) {
    const tlsMs = budget.ms('tls');
    try {
      const hs = await tlsHandshake(config, ep, budget.signalFor(tlsMs));
      peer = hs.peer;
      if (hs.authError) {
        results.push(warning('tls', `TLS handshake done without verifying the broker (${hs.authError}): mqtt.tls.rejectUnauthorized is false`, 'set mqtt.tls.rejectUnauthorized to true outside tests'));
      } else {
        results.push(ok('tls', `TLS handshake (${hs.protocol ?? 'TLS'}) with a broker certificate the configured CA verifies`, { brokerCertificate: peer ?? null }));
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      results.push(failure('tls', `TLS handshake with ${ep.host}:${ep.port} failed: ${timeoutText(err, tlsMs)}${code ? ` (${code})` : ''}`, tlsAdvice(code), { url }));
      return undefined;
    }
  }
  const mqttMs = budget.ms('mqtt');
  try {
    const r = await roundTrip(config, budget.signalFor(mqttMs), mqttMs);
    results.push(ok('mqtt', `MQTT ${r.protocolVersion === 5 ? '5' : '3.1.1'} connect in ${r.connectMs} ms, publish/subscribe round trip in ${r.roundTripMs} ms`, { ...r }));
  } catch (err) {
    const advice = "check mqtt.username/password or the client certificate, and the broker ACL for this gateway's topics ({prefix}/{gatewayId}/#)";
    results.push(failure('mqtt', `MQTT connect or round trip failed: ${timeoutText(err, mqttMs)}`, advice, { url }));
  }
  return peer;
}

export const connectivityChecks: GroupCheck = async (ctx, signal) => {
  const results: CheckResult[] = [];
  let peer: PeerCertTimes | undefined;
  try {
    peer = await steps(ctx.config, new Budget(signal, ctx.config.diag.checkTimeoutMs), results);
  } finally {
    // Also on a timeout: the clock check must not wait for a certificate that will never come.
    ctx.learnBrokerCert(peer);
  }
  results.push(agentLink(ctx));
  return results;
};
