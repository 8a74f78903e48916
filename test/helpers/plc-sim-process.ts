/**
 * The simulated PLC in its own process (demo/plc-sim-main.ts), so a busy test process cannot
 * slow the PLC's answers down: the data-gap tests then measure the bridge, not the test runner.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitFor } from './util.js';

const ENTRY = fileURLToPath(new URL('../../demo/plc-sim-main.js', import.meta.url));

export interface SimProcess {
  ports: number[];
  /** One JSON-line command; resolves with its answer (throws on `ok: false`). */
  send(cmd: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Holding registers of a device. */
  holding(address: number, count: number, device?: number): Promise<number[]>;
  stats(device?: number): Promise<{ requests: number; writes: number }>;
  stop(): Promise<void>;
}

/** `args` as for plc-sim-main, e.g. ['--churn', '1'] (registers 0..N-1 change on every read). */
export async function startSimProcess(args: string[] = []): Promise<SimProcess> {
  const child = spawn(process.execPath, [ENTRY, '--port', '0', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  await waitFor(() => lines.length >= 1 || child.exitCode !== null, { timeoutMs: 10_000, what: 'the simulated PLC to listen' });
  const first = JSON.parse(lines[0] ?? '{}') as { ports?: number[] };
  if (!first.ports) throw new Error(`the simulated PLC did not start: ${lines.join('\n')}`);
  let queue = Promise.resolve<unknown>(undefined);
  const send = (cmd: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const run = queue.then(async () => {
      const n = lines.length;
      child.stdin.write(`${JSON.stringify(cmd)}\n`);
      await waitFor(() => lines.length > n, { timeoutMs: 5000, what: `an answer to ${JSON.stringify(cmd)}` });
      const res = JSON.parse(lines[n]!) as Record<string, unknown>;
      if (res.ok !== true) throw new Error(`simulated PLC: ${String(res.error)}`);
      return res;
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    ports: first.ports,
    send,
    holding: async (address, count, device = 0) => (await send({ device, get: { area: 'holding', address, count } })).values as number[],
    stats: async (device = 0) => (await send({ device, stats: true })).stats as { requests: number; writes: number },
    stop: async () => {
      process.off('exit', killOnExit);
      child.kill('SIGTERM');
      await exited;
    },
  };
}
