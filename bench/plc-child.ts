/**
 * The reference for the PLC bridge bench (plc-bench.ts): the least a poll-and-publish program
 * does. Per device, on the same epoch-aligned grid as the bridge, modbus-serial's own TCP client
 * reads holding registers 0..tags-1 in reads of 125 and mqtt.js publishes the raw arrays at QoS 1
 * on `{topic}/data/d{i}`: no decoding, no quality, no report by exception, no store, no
 * handover. Writes: a message on
 * `{topic}/set` `{id, device, value}` is an FC6 to `--set-address` then an FC3 read-back of it,
 * answered retained at QoS 1 on `{topic}/res/{id}`, as the bridge answers a `set`.
 *
 *   node dist/bench/plc-child.js --url URL --protocol 5 --ports P1,P2 --tags N --interval MS
 *                                --topic T --set-address A
 *
 * Prints `{"ready": true}` once MQTT and every device are connected; SIGTERM stops it (exit 0).
 * Invariant: one request at a time per device (writes queue behind the reads in flight).
 */
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import modbusSerial from 'modbus-serial';
import type { ModbusRTU } from 'modbus-serial/ModbusRTU.js';

const BLOCK = 125;
// As plc-bridge/modbus-driver.ts: the CommonJS export seen through its ESM types.
const ModbusClient = modbusSerial.default as unknown as new () => ModbusRTU;

interface Device {
  index: number;
  client: ModbusRTU;
  /** The tail of this device's request chain. */
  chain: Promise<unknown>;
  busy: boolean;
  seq: number;
  timer: NodeJS.Timeout | undefined;
}

/** modbus-serial rejects with plain objects ({name, message, errno}), not Errors. */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  const m = (err as { message?: unknown } | null)?.message;
  return typeof m === 'string' ? m : JSON.stringify(err);
}

function serial<T>(d: Device, job: () => Promise<T>): Promise<T> {
  const next = d.chain.then(job, job);
  d.chain = next.catch(() => undefined);
  return next;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      protocol: { type: 'string', default: '5' },
      ports: { type: 'string' },
      tags: { type: 'string' },
      interval: { type: 'string' },
      topic: { type: 'string', default: 'bench-ref' },
      'set-address': { type: 'string', default: '5000' },
      // TCP_NODELAY on the MQTT socket (mqtt.js leaves Nagle on), to show what Nagle costs a write.
      'no-delay': { type: 'boolean', default: false },
    },
  });
  if (!values.url || !values.ports || !values.tags || !values.interval) throw new Error('--url, --ports, --tags and --interval are required');
  const tags = Number(values.tags);
  const interval = Number(values.interval);
  const setAddress = Number(values['set-address']);
  const topic = values.topic;
  const ports = values.ports.split(',').map(Number);

  const client = mqtt.connect(values.url, { protocolVersion: values.protocol === '4' ? 4 : 5, clientId: `bench-ref-${process.pid}`, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  if (values['no-delay']) (client.stream as Partial<Socket>).setNoDelay?.(true);
  const devices: Device[] = [];
  for (const [index, port] of ports.entries()) {
    const c = new ModbusClient();
    await c.connectTCP('127.0.0.1', { port });
    c.setID(1);
    c.setTimeout(2000);
    devices.push({ index, client: c, chain: Promise.resolve(), busy: false, seq: 0, timer: undefined });
  }

  let running = true;
  const poll = async (d: Device, tick: number): Promise<void> => {
    const regs: number[][] = [];
    for (let start = 0; start < tags; start += BLOCK) {
      const r = await serial(d, () => d.client.readHoldingRegisters(start, Math.min(BLOCK, tags - start)));
      regs.push(r.data);
    }
    if (running) client.publish(`${topic}/data/d${d.index}`, JSON.stringify({ seq: ++d.seq, ts: new Date(tick).toISOString(), regs }), { qos: 1 });
  };
  // The bridge's grid (plc-bridge/poller.ts): tick k at a multiple of the interval; a tick that
  // comes while the previous cycle still reads is skipped (the reference owes nothing).
  const schedule = (d: Device, after: number): void => {
    if (!running) return;
    const tick = (Math.floor(after / interval) + 1) * interval;
    d.timer = setTimeout(() => {
      schedule(d, tick);
      if (d.busy) return;
      d.busy = true;
      poll(d, tick)
        .catch((err: unknown) => process.stderr.write(`poll d${d.index}: ${describe(err)}\n`))
        .finally(() => (d.busy = false));
    }, Math.max(0, tick - Date.now()));
  };
  for (const d of devices) schedule(d, Date.now());

  await client.subscribeAsync(`${topic}/set`, { qos: 1 });
  client.on('message', (_t, payload) => {
    const req = JSON.parse(payload.toString('utf8')) as { id: string; device: number; value: number };
    const d = devices[req.device];
    if (!d) return;
    void serial(d, async () => {
      await d.client.writeRegister(setAddress, req.value);
      return d.client.readHoldingRegisters(setAddress, 1);
    }).then(
      (r) => client.publish(`${topic}/res/${req.id}`, JSON.stringify({ id: req.id, status: 'successful', result: { readBack: { value: r.data[0] } } }), { qos: 1, retain: true }),
      (err: unknown) => client.publish(`${topic}/res/${req.id}`, JSON.stringify({ id: req.id, status: 'failed', reason: describe(err) }), { qos: 1, retain: true }),
    );
  });

  process.once('SIGTERM', () => {
    running = false;
    for (const d of devices) clearTimeout(d.timer);
    void Promise.all(devices.map((d) => d.chain))
      .then(() => {
        for (const d of devices) d.client.close(() => undefined);
        return client.endAsync();
      })
      .then(() => process.exit(0));
  });
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`plc-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
