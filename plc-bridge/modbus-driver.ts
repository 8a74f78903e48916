/**
 * The Driver on modbus-serial (8.0.25+). modbus-serial builds the request PDUs and parses the
 * answers (function code, unit id, length and exception checks); the TCP side is ours, because
 * its TcpPort (ports/tcpport.js) is weak where a gateway that runs for months needs it strong:
 *
 * - transaction ids wrap at 256 and an answer is matched by id alone, so a very late answer can
 *   complete a later request that reuses its id; the protocol id is never checked;
 * - a lost socket does not fail the pending request (it waits for its timer);
 * - no TCP keepalive, and a socket 'error' is re-emitted as an 'error' event that crashes a
 *   process without a listener.
 *
 * So MbapPort below stands in for TcpPort (modbus-serial takes any port object: open/write/
 * isOpen and 'data' events carrying unit id + PDU + CRC, as its own ports emit). It frames per
 * the "Modbus Messaging on TCP/IP Implementation Guide V1.0b" section 3.1.3 (MBAP: transaction
 * id, protocol id 0, length, unit id), uses 16-bit transaction ids, and passes on only the frame
 * whose id is the one of the request written last: anything else is a stale or foreign answer
 * and is dropped. Broken framing (protocol id not 0, impossible length) destroys the socket.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { connect as netConnect, type Socket } from 'node:net';
import modbusSerial from 'modbus-serial';
import type { ModbusRTU, NodeStyleCallback } from 'modbus-serial/ModbusRTU.js';
import type { Logger } from '../lib/log.js';
import type { DeviceConfig } from './config.js';
import type { BitArea, Driver, DriverFactory, RegisterArea } from './driver.js';
import { PlcError } from './errors.js';

const require = createRequire(import.meta.url);
// modbus-serial checks a CRC on every frame a port emits (its RTU heritage), so we append one.
const crc16 = require('modbus-serial/utils/crc16') as (buf: Buffer) => number;
const ModbusClient = modbusSerial.default as unknown as new (port: unknown) => ModbusRTU;

const MBAP = 7;
/** Unit id + the longest PDU (253 bytes). */
const MAX_LENGTH = 254;

export interface ModbusDriverOptions {
  logger?: Logger;
  /** TCP keepalive: idle time before the first probe. */
  keepAliveMs?: number;
}

/** The port modbus-serial's ModbusRTU drives; its field names are the ones ModbusRTU reads. */
class MbapPort extends EventEmitter {
  _transactionIdWrite = 1;
  _transactionIdRead = 0;
  private expected: number | undefined;
  private buf: Buffer = Buffer.alloc(0);
  dropped = 0;

  constructor(
    private readonly sock: Socket,
    private readonly onBroken: (reason: PlcError) => void,
  ) {
    super();
    sock.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  get isOpen(): boolean {
    return !this.sock.destroyed && this.sock.readyState === 'open';
  }

  /** The socket is connected before modbus-serial sees this port. */
  open(cb: (err?: Error) => void): void {
    cb();
  }

  close(cb?: () => void): void {
    this.sock.destroy();
    cb?.();
  }

  destroy(cb?: () => void): void {
    this.close(cb);
  }

  /** `data` is unit id + PDU + CRC, as modbus-serial builds it for RTU. */
  write(data: Buffer): void {
    const tid = this._transactionIdWrite;
    this._transactionIdWrite = (tid + 1) & 0xffff;
    this.expected = tid;
    const pduLen = data.length - 2;
    const out = Buffer.allocUnsafe(6 + pduLen);
    out.writeUInt16BE(tid, 0);
    out.writeUInt16BE(0, 2);
    out.writeUInt16BE(pduLen, 4);
    data.copy(out, 6, 0, pduLen);
    this.sock.write(out);
  }

  private receive(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= MBAP) {
      const tid = this.buf.readUInt16BE(0);
      const len = this.buf.readUInt16BE(4);
      const protocolId = this.buf.readUInt16BE(2);
      if (protocolId !== 0 || len < 2 || len > MAX_LENGTH) {
        this.buf = Buffer.alloc(0);
        this.onBroken(new PlcError('invalid-response', 'Modbus TCP framing lost (bad MBAP header)', { protocolId, length: len }));
        return;
      }
      if (this.buf.length < 6 + len) return;
      const adu = this.buf.subarray(6, 6 + len);
      this.buf = this.buf.subarray(6 + len);
      if (tid !== this.expected) {
        this.dropped++;
        continue;
      }
      // One answer per request: a second frame with the same id is dropped too.
      this.expected = undefined;
      const rtu = Buffer.allocUnsafe(len + 2);
      adu.copy(rtu, 0);
      rtu.writeUInt16LE(crc16(rtu.subarray(0, len)), len);
      this._transactionIdRead = tid;
      this.emit('data', rtu);
    }
  }
}

interface LibError {
  modbusCode?: number;
  errno?: string;
  name?: string;
  message?: string;
}

function mapError(err: unknown): PlcError {
  if (err instanceof PlcError) return err;
  const e = (err ?? {}) as LibError;
  if (typeof e.modbusCode === 'number') return new PlcError('modbus-exception', `Modbus exception ${e.modbusCode}: ${e.message ?? ''}`, { exceptionCode: e.modbusCode });
  if (e.name === 'TransactionTimedOutError') return new PlcError('timeout', 'no answer');
  if (e.name === 'PortNotOpenError') return new PlcError('not-connected', 'socket is not open');
  return new PlcError('invalid-response', e.message ?? 'invalid response');
}

function connectError(err: NodeJS.ErrnoException, device: DeviceConfig): PlcError {
  const where = `${device.host}:${device.port}`;
  if (err.code === 'ETIMEDOUT') return new PlcError('timeout', `connect to ${where} timed out`, { errno: err.code });
  return new PlcError('connection-refused', `connect to ${where} failed: ${err.code ?? err.message}`, { errno: err.code });
}

export class ModbusDriver implements Driver {
  private sock: Socket | undefined;
  private client: ModbusRTU | undefined;
  private port: MbapPort | undefined;
  private closed = false;
  private readonly pending = new Set<(err: PlcError) => void>();
  private readonly closeListeners = new Set<(reason: PlcError) => void>();

  constructor(
    private readonly device: DeviceConfig,
    private readonly opts: ModbusDriverOptions = {},
  ) {}

  get isOpen(): boolean {
    return !this.closed && this.port?.isOpen === true;
  }

  async connect(): Promise<void> {
    if (this.sock) throw new PlcError('not-connected', 'a driver connects once; make a new one');
    const d = this.device;
    const sock = netConnect({ host: d.host, port: d.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: this.opts.keepAliveMs ?? 10_000 });
    this.sock = sock;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        sock.destroy();
        reject(connectError(err, d));
      };
      sock.once('error', onError);
      sock.once('close', () => reject(new PlcError('connection-refused', `connection to ${d.host}:${d.port} closed while connecting`)));
      sock.once('connect', () => {
        sock.off('error', onError);
        resolve();
      });
    });
    if (this.closed) {
      sock.destroy();
      throw new PlcError('not-connected', 'closed while connecting');
    }
    sock.on('error', (err) => this.lost(new PlcError('connection-reset', `socket error: ${err.message}`, { errno: (err as NodeJS.ErrnoException).code })));
    sock.on('close', () => this.lost(new PlcError('connection-reset', 'connection closed by the peer')));
    const port = new MbapPort(sock, (reason) => this.lost(reason));
    const client = new ModbusClient(port);
    // A socket error is handled above; without a listener modbus-serial's re-emit would throw.
    client.on('error', () => undefined);
    client.setID(d.unitId);
    // modbus-serial's own timer only cleans up after the supervisor has given up on a request.
    client.setTimeout(d.timeoutMs + 5000);
    await new Promise<void>((resolve) => client.open(() => resolve()));
    this.port = port;
    this.client = client;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock?.destroy();
    this.failPending(new PlcError('not-connected', 'driver closed'));
  }

  onClose(listener: (reason: PlcError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  async readRegisters(area: RegisterArea, start: number, count: number): Promise<number[]> {
    const res = await this.call<{ data: number[] }>((c, cb) => (area === 'holding' ? c.writeFC3(this.device.unitId, start, count, cb) : c.writeFC4(this.device.unitId, start, count, cb)));
    if (res.data.length !== count) throw new PlcError('invalid-response', `asked for ${count} registers, got ${res.data.length}`);
    return res.data;
  }

  async readBits(area: BitArea, start: number, count: number): Promise<boolean[]> {
    const res = await this.call<{ data: boolean[] }>((c, cb) => (area === 'coil' ? c.writeFC1(this.device.unitId, start, count, cb) : c.writeFC2(this.device.unitId, start, count, cb)));
    // Bits come in whole bytes; the padding of the last byte is not data.
    if (res.data.length < count) throw new PlcError('invalid-response', `asked for ${count} bits, got ${res.data.length}`);
    return res.data.slice(0, count);
  }

  async writeRegisters(start: number, values: number[]): Promise<void> {
    if (values.length === 1) {
      const res = await this.call<{ address: number; value: number }>((c, cb) => c.writeFC6(this.device.unitId, start, values[0]!, cb));
      echo(res.address === start && res.value === values[0], 'FC6', res);
    } else {
      const res = await this.call<{ address: number; length: number }>((c, cb) => c.writeFC16(this.device.unitId, start, values, cb));
      echo(res.address === start && res.length === values.length, 'FC16', res);
    }
  }

  async writeCoils(start: number, values: boolean[]): Promise<void> {
    if (values.length === 1) {
      const res = await this.call<{ address: number; state: boolean }>((c, cb) => c.writeFC5(this.device.unitId, start, values[0]!, cb));
      echo(res.address === start && res.state === values[0], 'FC5', res);
    } else {
      const res = await this.call<{ address: number; length: number }>((c, cb) => c.writeFC15(this.device.unitId, start, values, cb));
      echo(res.address === start && res.length === values.length, 'FC15', res);
    }
  }

  async maskWriteRegister(address: number, andMask: number, orMask: number): Promise<void> {
    const res = await this.call<{ address: number; andMask: number; orMask: number }>((c, cb) => c.writeFC22(this.device.unitId, address, andMask, orMask, cb));
    echo(res.address === address && res.andMask === andMask && res.orMask === orMask, 'FC22', res);
  }

  private call<T>(send: (c: ModbusRTU, cb: NodeStyleCallback<T>) => void): Promise<T> {
    const client = this.client;
    if (!client || !this.isOpen) return Promise.reject(new PlcError('not-connected', 'socket is not open'));
    // modbus-serial files each request under its transaction id and never removes it; its own
    // port wraps ids at 256, which keeps that small, but ours are 16-bit (MBAP): without this the
    // map grows to 65,536 entries per device, each holding its callbacks and data
    // (bench/plc-bench.ts found it as RSS growing by 600 MB/min at 20 x 1,000 tags every 100 ms).
    const tid = this.port?._transactionIdWrite;
    const forget = (): void => {
      if (tid !== undefined) delete (client as unknown as { _transactions: Record<number, unknown> })._transactions[tid];
    };
    return new Promise<T>((resolve, reject) => {
      const fail = (err: PlcError): void => {
        this.pending.delete(fail);
        forget();
        reject(err);
      };
      this.pending.add(fail);
      send(client, (err, data) => {
        this.pending.delete(fail);
        forget();
        if (err) reject(mapError(err));
        else resolve(data);
      });
    });
  }

  private lost(reason: PlcError): void {
    if (this.closed) return;
    this.closed = true;
    this.sock?.destroy();
    this.opts.logger?.debug({ device: this.device.name, code: reason.code, dropped: this.port?.dropped }, 'modbus socket lost');
    this.failPending(reason);
    for (const l of this.closeListeners) l(reason);
    this.closeListeners.clear();
  }

  private failPending(err: PlcError): void {
    for (const fail of [...this.pending]) fail(err);
  }
}

function echo(ok: boolean, fc: string, res: object): void {
  if (!ok) throw new PlcError('invalid-response', `${fc} answer does not echo the request`, { answer: res });
}

export function modbusDriverFactory(opts: ModbusDriverOptions = {}): DriverFactory {
  return (device) => new ModbusDriver(device, opts);
}
