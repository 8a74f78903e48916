/**
 * The TLS part of a broker connection's options, built from an `mqtt.tls` section
 * (lib/mqtt-schema.ts): used by the agent's WMS link, the bridge's link and the connectivity
 * checks of `edge-agent diag`, for mqtt.js and for a bare node:tls handshake alike.
 */
import { readFileSync } from 'node:fs';
import type { MqttTls } from './mqtt-schema.js';

export interface TlsConnectOptions {
  rejectUnauthorized: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
}

/**
 * Reads the CA, client certificate and key at each call, so a connection attempt after a
 * certificate renewal uses the new files without a restart. Throws the file's read error.
 */
export function tlsConnectOptions(tls: MqttTls): TlsConnectOptions {
  const o: TlsConnectOptions = { rejectUnauthorized: tls.rejectUnauthorized };
  if (tls.ca) o.ca = readFileSync(tls.ca);
  if (tls.cert) o.cert = readFileSync(tls.cert);
  if (tls.key) o.key = readFileSync(tls.key);
  if (tls.servername) o.servername = tls.servername;
  return o;
}
