/**
 * A small, fast simulated PLC: a Modbus TCP server on node:net for the demo, the benches and the
 * PLC bridge's fault tests. Framing per the "Modbus Messaging on TCP/IP Implementation Guide
 * V1.0b" (MBAP header: transaction id, protocol id 0, length = unit id + PDU, unit id); function
 * codes per the "Modbus Application Protocol Specification V1.1b3": 1, 2, 3, 4, 5, 6, 15, 16, 22,
 * with exception 1 (illegal function), 2 (illegal data address) and 3 (illegal data value).
 *
 * Faults are switched at run time with setFault(); they model what real PLCs and networks do:
 * slow answers, exceptions, silence (a half-open socket), answers in single bytes, answers with a
 * stale transaction id, a reset connection, a refused connection and a PLC that comes back.
 *
 * Invariants: requests on one connection are answered in order; a request that is not answered
 * (silent, reset) is not executed either; stop() closes the listener, every client socket and
 * every timer. Run as a program (`node dist/demo/plc-sim.js --port 0`), see plc-sim-main.ts.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { executePdu, newMemory, type Memory } from './plc-sim-pdu.js';

export { executePdu, newMemory, type Memory, type SimArea } from './plc-sim-pdu.js';

export interface SimFaults {
  /** Every answer waits this long. */
  delayMs?: number;
  /** The next `count` requests (default: all while set) answer this exception code. */
  exception?: { code: number; count?: number };
  /** Accept and read requests, never answer (and never execute them): a half-open peer. */
  silent?: boolean;
  /** Write each answer one byte at a time, this many ms apart. */
  dribbleMs?: number;
  /** Answer with the previous transaction id and inverted data first, then (`then-right`) the
   * real answer, or (`only`) nothing else. */
  staleTid?: 'then-right' | 'only';
  /** Reset (TCP RST) the connection on each of the next N requests, unexecuted. */
  reset?: number;
  /** Close the listener and every connection; resume() (or refuse: false) listens again. */
  refuse?: boolean;
}

export interface PlcSimOptions {
  port?: number;
  host?: string;
  /** Unit ids 1..units each have their own memory; other unit ids answer exception 11. */
  units?: number;
  /** Entries per area (default 65536); addresses beyond answer exception 2. */
  size?: number;
  /** Some registers change over time (see animate()). */
  animate?: boolean;
  /**
   * Holding and input registers 0..churn-1 change on every read: a read request first adds 1
   * (wrapping) to each register it covers in that range, so a poller sees every value change
   * every cycle and report by exception sends them all (the PLC bridge's throughput bench).
   * Registers from `churn` on keep what is written to them.
   */
  churn?: number;
}

export interface SimStats {
  /** Requests received, whatever happened to them. */
  requests: number;
  /** Of those, write requests (FC 5, 6, 15, 16, 22). */
  writes: number;
  /** Connections accepted / open now. */
  connections: number;
  open: number;
}

const WRITE_FCS = new Set([5, 6, 15, 16, 22]);

const MBAP_LEN = 7;
const MAX_ADU = 260;

export class PlcSim {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly memories: Memory[];
  private faults: SimFaults = {};
  private boundPort = 0;
  private animateTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private counters: SimStats = { requests: 0, writes: 0, connections: 0, open: 0 };

  constructor(private readonly opts: PlcSimOptions = {}) {
    const units = Math.max(1, opts.units ?? 1);
    this.memories = Array.from({ length: units }, () => newMemory(opts.size ?? 65536));
  }

  /** Listens and resolves the port (the OS chooses when `port` is 0). */
  async start(): Promise<number> {
    await this.listen(this.opts.port ?? 0);
    if (this.opts.animate) {
      const t0 = Date.now();
      this.animateTimer = setInterval(() => this.animate(Date.now() - t0), 100);
    }
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Unit 1's memory (the only one unless `units` > 1). */
  get regs(): Memory {
    return this.memories[0]!;
  }

  unit(id: number): Memory {
    const m = this.memories[id - 1];
    if (!m) throw new Error(`no unit ${id}`);
    return m;
  }

  stats(): SimStats {
    return { ...this.counters, open: this.sockets.size };
  }

  /** Replaces the active faults; `{}` clears them. `refuse` closes or reopens the listener. */
  async setFault(faults: SimFaults): Promise<void> {
    const wasRefusing = this.faults.refuse === true;
    this.faults = { ...faults };
    if (faults.refuse && !wasRefusing) await this.refuse();
    if (!faults.refuse && wasRefusing) await this.listen(this.boundPort);
  }

  /** The PLC comes back: clears every fault and listens again on the same port. */
  async resume(): Promise<void> {
    await this.setFault({});
  }

  async stop(): Promise<void> {
    clearInterval(this.animateTimer);
    this.animateTimer = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.refuse();
  }

  private async listen(port: number): Promise<void> {
    if (this.server) return;
    const server = createServer((sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('plc-sim: no TCP address');
    this.boundPort = addr.port;
    this.server = server;
  }

  private async refuse(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(sock: Socket): void {
    this.counters.connections++;
    this.sockets.add(sock);
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    // Answers leave in request order: while one waits (delay, dribble) later ones queue behind it.
    let chain: Promise<void> | undefined;
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= MBAP_LEN) {
        const len = buf.readUInt16BE(4);
        // Protocol id must be 0 and the length must fit an ADU; otherwise framing is lost.
        if (buf.readUInt16BE(2) !== 0 || len < 2 || len + 6 > MAX_ADU) {
          sock.destroy();
          return;
        }
        if (buf.length < len + 6) return;
        const frame = buf.subarray(0, len + 6);
        buf = buf.subarray(len + 6);
        const answer = this.handle(sock, frame);
        if (answer === undefined) continue;
        if (chain === undefined && answer.immediate) sock.write(answer.bytes);
        else {
          const prev = chain ?? Promise.resolve();
          const next = prev.then(() => this.sendSlow(sock, answer));
          chain = next;
          void next.then(() => {
            if (chain === next) chain = undefined;
          });
        }
      }
    });
  }

  /** Executes one request under the current faults; undefined = no answer. */
  private handle(sock: Socket, frame: Buffer): Answer | undefined {
    this.counters.requests++;
    if (WRITE_FCS.has(frame[MBAP_LEN] ?? 0)) this.counters.writes++;
    const f = this.faults;
    if (f.silent) return undefined;
    if (f.reset !== undefined && f.reset > 0) {
      this.faults = { ...f, reset: f.reset - 1 };
      sock.resetAndDestroy();
      return undefined;
    }
    const tid = frame.readUInt16BE(0);
    const unitId = frame[6]!;
    const pdu = frame.subarray(MBAP_LEN);
    const fc = pdu[0]!;
    let resPdu: Buffer;
    const memory = this.memories[(unitId === 0 || unitId === 255 ? 1 : unitId) - 1];
    if (f.exception && (f.exception.count === undefined || f.exception.count > 0)) {
      if (f.exception.count !== undefined) this.faults = { ...f, exception: { ...f.exception, count: f.exception.count - 1 } };
      resPdu = Buffer.from([fc | 0x80, f.exception.code]);
    } else if (!memory) {
      resPdu = Buffer.from([fc | 0x80, 11]);
    } else {
      if (this.opts.churn && (fc === 3 || fc === 4) && pdu.length === 5) churn(fc === 3 ? memory.holding : memory.input, pdu.readUInt16BE(1), pdu.readUInt16BE(3), this.opts.churn);
      resPdu = executePdu(memory, pdu);
    }
    const bytes = adu(tid, unitId, resPdu);
    const stale = f.staleTid ? adu((tid + 0xffff) & 0xffff, unitId, invertData(resPdu)) : undefined;
    const immediate = !f.delayMs && !f.dribbleMs && !stale;
    return { bytes, stale, staleOnly: f.staleTid === 'only', immediate, delayMs: f.delayMs ?? 0, dribbleMs: f.dribbleMs ?? 0 };
  }

  private async sendSlow(sock: Socket, a: Answer): Promise<void> {
    if (a.delayMs > 0) await this.sleep(a.delayMs);
    const parts = a.stale ? (a.staleOnly ? [a.stale] : [a.stale, a.bytes]) : [a.bytes];
    for (const part of parts) {
      if (sock.destroyed) return;
      if (a.dribbleMs <= 0) {
        sock.write(part);
        continue;
      }
      for (let i = 0; i < part.length; i++) {
        if (sock.destroyed) return;
        sock.write(part.subarray(i, i + 1));
        await this.sleep(a.dribbleMs);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /**
   * The demo's moving values, in every unit: holding 0..1 a uint32 counter of seconds, holding
   * 2..3 a float32 sine (period 10 s, amplitude 100), holding 4 a 0..999 ramp per 100 ms,
   * input 0 the same ramp, coil 0 and discrete 0 toggle every second.
   */
  private animate(elapsedMs: number): void {
    const secs = Math.floor(elapsedMs / 1000);
    const f = Buffer.alloc(4);
    f.writeFloatBE(100 * Math.sin((2 * Math.PI * elapsedMs) / 10_000));
    const ramp = Math.floor(elapsedMs / 100) % 1000;
    for (const m of this.memories) {
      m.holding[0] = (secs >>> 16) & 0xffff;
      m.holding[1] = secs & 0xffff;
      m.holding[2] = f.readUInt16BE(0);
      m.holding[3] = f.readUInt16BE(2);
      m.holding[4] = ramp;
      m.input[0] = ramp;
      m.coil[0] = secs % 2;
      m.discrete[0] = secs % 2;
    }
  }
}

interface Answer {
  bytes: Buffer;
  stale: Buffer | undefined;
  staleOnly: boolean;
  immediate: boolean;
  delayMs: number;
  dribbleMs: number;
}

/**
 * Adds 1 to each register of start..start+qty-1 below `limit` (see PlcSimOptions.churn); a read
 * that will be answered with an exception (quantity or range) changes nothing.
 */
function churn(regs: Uint16Array, start: number, qty: number, limit: number): void {
  if (qty < 1 || qty > 125 || start + qty > regs.length) return;
  const end = Math.min(start + qty, limit, regs.length);
  for (let i = start; i < end; i++) regs[i] = (regs[i]! + 1) & 0xffff;
}

function adu(tid: number, unitId: number, pdu: Buffer): Buffer {
  const out = Buffer.allocUnsafe(MBAP_LEN + pdu.length);
  out.writeUInt16BE(tid, 0);
  out.writeUInt16BE(0, 2);
  out.writeUInt16BE(pdu.length + 1, 4);
  out[6] = unitId;
  pdu.copy(out, MBAP_LEN);
  return out;
}

/** A stale answer of the same shape but different data, so a client that took it would show. */
function invertData(pdu: Buffer): Buffer {
  const out = Buffer.from(pdu);
  const fc = out[0]!;
  if (fc >= 1 && fc <= 4) for (let i = 2; i < out.length; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

// Run as a program: the CLI lives in plc-sim-main.ts; importing this module starts nothing. Not
// awaited: plc-sim-main.ts imports this module, which must finish evaluating first.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void import('./plc-sim-main.js');
}
