/**
 * The PLC side of the demo, as real processes:
 *
 *  - the simulated PLC, a Modbus TCP server in a child process (`node dist/demo/plc-sim-main.js
 *    --animate`): a seconds counter, a sine "speed", a ramp, a toggling coil; commands on its
 *    stdin (plc-sim-main.ts);
 *  - the PLC bridge, which the demo does not start: the agent's watchdog does, detached, so it
 *    outlives the agent's restarts and updates (agent/recovery-wiring.ts). The demo only watches
 *    it over its control socket (`ping`: which pid, which release's code) and, at the end, stops
 *    it with SIGTERM to the pid that answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { rpcRequest } from '../lib/rpc.js';

export interface PlcSimProcess {
  child: ChildProcess;
  port: number;
  /** One JSON-line command (plc-sim-main.ts); resolves with its answer, rejects on `ok: false`. */
  command(cmd: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** SIGTERM, SIGKILL after `timeoutMs`; resolves true when it exited on the SIGTERM. */
  stop(timeoutMs: number): Promise<boolean>;
}

/** Starts the simulated PLC on a port the OS chooses; resolves once it listens. */
export async function startPlcSim(repo: string, onStderr: (line: string) => void): Promise<PlcSimProcess> {
  const child = spawn(process.execPath, [join(repo, 'dist', 'demo', 'plc-sim-main.js'), '--animate'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const { stdin, stdout, stderr } = child;
  if (!stdin || !stdout || !stderr) throw new Error('the PLC simulator was spawned without pipes');
  createInterface({ input: stderr }).on('line', onStderr);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const answers: ((line: string) => void)[] = [];
  const lines = createInterface({ input: stdout });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    void exited.then(() => reject(new Error('the PLC simulator exited before it listened')));
    lines.once('line', (line) => {
      const p = (JSON.parse(line) as { port?: unknown }).port;
      if (typeof p === 'number') resolve(p);
      else reject(new Error(`the PLC simulator said ${line}`));
      lines.on('line', (l) => answers.shift()?.(l));
    });
  });
  return {
    child,
    port,
    command: (cmd) =>
      new Promise((resolve, reject) => {
        answers.push((line) => {
          const a = JSON.parse(line) as Record<string, unknown>;
          if (a.ok === true) resolve(a);
          else reject(new Error(`PLC simulator: ${String(a.error)}`));
        });
        stdin.write(`${JSON.stringify(cmd)}\n`);
      }),
    stop: async (timeoutMs) => {
      if (child.exitCode !== null || child.signalCode !== null) return true;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
      clearTimeout(timer);
      if (!inTime) {
        child.kill('SIGKILL');
        await exited;
      }
      return inTime;
    },
  };
}

/** Registers as big-endian ASCII pairs, as the bridge's `string` type reads them (NUL padded). */
export function asciiRegisters(text: string, registers: number): number[] {
  const bytes = Buffer.alloc(registers * 2);
  bytes.write(text, 'ascii');
  return Array.from({ length: registers }, (_, i) => bytes.readUInt16BE(2 * i));
}

export interface BridgePing {
  pid: number;
  version: string;
  role: string;
  session: string;
  /** The release entry point it runs (plc-bridge/main.ts `ping`). */
  cli?: string;
}

export async function pingBridge(socket: string): Promise<BridgePing | undefined> {
  try {
    return (await rpcRequest(socket, 'ping', {}, 2000)) as BridgePing;
  } catch {
    return undefined;
  }
}

/** The A/B slot a bridge's code comes from, read from its entry point `ROOT/slots/X/dist/...`. */
export function slotOf(p: BridgePing | undefined): string | undefined {
  return /[/\\]slots[/\\]([AB])[/\\]/.exec(p?.cli ?? '')?.[1];
}

/** Gone, or a zombie whose parent (not us: the bridge is detached) has not reaped it yet. */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * Pids of the processes running `plc-bridge --config CONFIG` (this demo's own file, in its temp
 * root): a handover's successor that has not taken over yet answers on no socket, and is
 * detached (its own session), so only its command line finds it.
 */
export function bridgeProcesses(configPath: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('plc-bridge');
      if (i > 0 && argv[i + 1] === '--config' && argv[i + 2] === configPath) out.push(Number(name));
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return out;
}

/**
 * Watches the bridge's control socket (every 250 ms) and reports each change of the process
 * that answers: the first start, then every handover (a new pid, its release's code). Every pid
 * seen is kept, so the demo can check at the end that none outlived it.
 */
export class BridgeWatch {
  readonly pids: number[] = [];
  /** Every active bridge seen, in order (one entry per pid). */
  readonly history: BridgePing[] = [];
  current: BridgePing | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly socket: string,
    /** The bridge's configuration file: what every bridge process of this demo was started with. */
    private readonly configPath: string,
    private readonly onChange: (now: BridgePing, before: BridgePing | undefined) => void,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.poll(), 250);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Waits until the bridge answers as active from slot `slot`'s code. */
  async waitSlot(slot: string, timeoutMs: number): Promise<BridgePing> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.poll();
      const c = this.current;
      if (c && c.role === 'active' && slotOf(c) === slot) return c;
      if (Date.now() > deadline) throw new Error(`the PLC bridge does not run slot ${slot}'s code after ${timeoutMs} ms (now: ${c ? `pid ${c.pid}, slot ${String(slotOf(c))}` : 'no answer'})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const p = await pingBridge(this.socket);
      if (p && p.role === 'active' && p.pid !== this.current?.pid) {
        const before = this.current;
        this.current = p;
        this.history.push(p);
        if (!this.pids.includes(p.pid)) this.pids.push(p.pid);
        this.onChange(p, before);
      }
    } finally {
      this.polling = false;
    }
  }

  /**
   * SIGTERM to the bridge that answers (it publishes `offline` and exits) and to any other bridge
   * process of this demo (a successor caught in the middle of a handover), then waits up to
   * `timeoutMs` for every pid seen to be gone; what still lives gets SIGKILL and is returned.
   */
  async stopBridge(timeoutMs: number): Promise<number[]> {
    this.stop();
    const p = await pingBridge(this.socket);
    const others = bridgeProcesses(this.configPath).filter((pid) => pid !== p?.pid);
    for (const pid of [...(p ? [p.pid] : []), ...others]) {
      if (!this.pids.includes(pid)) this.pids.push(pid);
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone meanwhile */
      }
    }
    const deadline = Date.now() + timeoutMs;
    while (this.pids.some((pid) => !processGone(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const stuck = this.pids.filter((pid) => !processGone(pid));
    for (const pid of stuck) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    return stuck;
  }
}

/** `.../slots/B/dist/agent/cli/index.js` -> `slots/B` for a short display. */
export function shortCli(cli: string | undefined): string {
  if (!cli) return '?';
  const i = cli.lastIndexOf(`${sep}slots${sep}`);
  return i < 0 ? cli : cli.slice(i + 1).split(sep).slice(0, 2).join('/');
}
