/**
 * Group `plc`: for each device in the PLC bridge's configuration, whether its Modbus TCP
 * endpoint accepts a connection (our own probe: it works with the bridge down), and what the
 * bridge says about it (control socket `status`: link, last good read age), when it answers.
 *
 * The probe opens a TCP connection and closes it at once, sending nothing: a PLC with few
 * connection slots is held for milliseconds. The bridge's configuration is read leniently (only
 * devices[].name/host/port), so a newer bridge format still yields its devices.
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { parseBridgeConfigText } from '../../plc-bridge/config.js';
import { bridgeSocketPath } from '../../plc-bridge/paths.js';
import { rpcRequest } from '../../lib/rpc.js';
import { aborted, errText, failure, humanAge, ok, skipped, warning, type CheckResult, type GroupCheck } from './types.js';

const PROBE_MS = 2000;
const BRIDGE_MS = 2000;
/** A device whose last good read is older than this is not being read. */
export const READ_AGE_WARN_MS = 60_000;

export interface DeviceEndpoint {
  name: string;
  host: string;
  port: number;
}

/** devices[].{name, host, port} of a bridge configuration document; pure. */
export function bridgeDevices(doc: unknown): DeviceEndpoint[] {
  const devices = (doc as { devices?: unknown } | null)?.devices;
  if (!Array.isArray(devices)) return [];
  return devices.flatMap((d: unknown) => {
    const o = d as { name?: unknown; host?: unknown; port?: unknown } | null;
    if (!o || typeof o.name !== 'string' || typeof o.host !== 'string') return [];
    return [{ name: o.name, host: o.host, port: typeof o.port === 'number' ? o.port : 502 }];
  });
}

interface BridgeDevice {
  link?: string;
  lastReadAt?: string | null;
  lastGoodAgeMs?: number | null;
  error?: string;
}

async function probe(host: string, port: number, signal: AbortSignal): Promise<number> {
  const t0 = Date.now();
  const sock = connect({ host, port });
  try {
    await Promise.race([new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject)), aborted(AbortSignal.any([signal, AbortSignal.timeout(PROBE_MS)]))]);
    return Date.now() - t0;
  } finally {
    sock.destroy();
  }
}

/** A device's verdict from our probe and the bridge's view; pure. */
export function deviceVerdict(d: DeviceEndpoint, reach: { ms: number } | { error: string }, bridge: BridgeDevice | undefined): CheckResult {
  const name = `device:${d.name}`;
  const where = `${d.host}:${d.port}`;
  const details = { host: d.host, port: d.port, link: bridge?.link ?? null, lastReadAt: bridge?.lastReadAt ?? null, lastGoodAgeMs: bridge?.lastGoodAgeMs ?? null };
  if ('error' in reach) {
    return failure(name, `${d.name} is unreachable at ${where}: ${reach.error}`, `check that the PLC is powered and on the network (ping ${d.host}), its Modbus TCP server is enabled on port ${d.port}, and the cabling/VLAN`, details);
  }
  if (bridge?.link === 'down') return failure(name, `${d.name} accepts TCP at ${where}, but the bridge's link is down${bridge.error ? `: ${bridge.error}` : ''}`, `check the device's unit id and register map in the bridge configuration`, details);
  const age = bridge?.lastGoodAgeMs;
  if (typeof age === 'number' && age > READ_AGE_WARN_MS) {
    return warning(name, `${d.name} is reachable at ${where}, but its last good read was ${humanAge(age)} ago`, 'look at the bridge log for read errors (timeouts, illegal addresses)', details);
  }
  const read = typeof age === 'number' ? `, last good read ${humanAge(age)} ago` : '';
  return ok(name, `${d.name} is reachable at ${where} (${reach.ms} ms)${read}`, details);
}

export const plcChecks: GroupCheck = async (ctx, signal) => {
  const file = ctx.config.plcBridge.config;
  if (!file) return [skipped('bridge', 'no PLC bridge configured (plcBridge.config)')];
  let devices: DeviceEndpoint[];
  try {
    devices = bridgeDevices(parseBridgeConfigText(await readFile(file, 'utf8'), file));
  } catch (err) {
    return [failure('bridge-config', `cannot read the bridge configuration ${file}: ${errText(err)}`, 'fix plcBridge.config or the file it names')];
  }
  const results: CheckResult[] = [];
  let view: Record<string, BridgeDevice> = {};
  const socket = bridgeSocketPath(ctx.config.plcBridge.config);
  try {
    if (!socket) throw new Error('its data directory is not known');
    const st = (await rpcRequest(socket, 'status', {}, BRIDGE_MS)) as { state?: string; devices?: Record<string, BridgeDevice>; mqtt?: { connected?: boolean } };
    view = st.devices ?? {};
    results.push(ok('bridge', `the PLC bridge answers (state ${st.state ?? '?'}, MQTT ${st.mqtt?.connected ? 'connected' : 'not connected'})`));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'it is not running' : errText(err);
    results.push(failure('bridge', `the PLC bridge does not answer on ${socket ?? 'its control socket'}: ${why}`, 'start it (systemctl start edge-plc-bridge, or let the agent launch it) and look at its log'));
  }
  if (devices.length === 0) results.push(warning('devices', `${file} lists no devices`, 'add the PLCs to the bridge configuration'));
  const verdicts = await Promise.all(
    devices.map(async (d) => {
      const reach = await probe(d.host, d.port, signal).then(
        (ms) => ({ ms }),
        (err: unknown) => ({ error: (err as Error).name === 'TimeoutError' ? `no answer within ${PROBE_MS} ms` : errText(err) }),
      );
      return deviceVerdict(d, reach, view[d.name]);
    }),
  );
  return [...results, ...verdicts];
};
