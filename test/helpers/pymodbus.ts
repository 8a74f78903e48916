/**
 * Debian's python3-pymodbus (3.0.0) as a black-box Modbus TCP server for the driver tests:
 * test/fixtures/pymodbus_server.py under /usr/bin/python3 (the system interpreter has the Debian
 * package; a python3 earlier on PATH, e.g. pyenv's, does not). It listens on a port the OS
 * chooses, prints {"port": N}, and we also wait until a TCP connect succeeds.
 *
 * Invariant: every server started is killed by stop(); a process 'exit' hook kills one the test
 * forgot, so none outlives the test process.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canConnect, tempDir, waitFor } from './util.js';

export const SYSTEM_PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/pymodbus_server.py', import.meta.url));

export interface PymodbusInit {
  holding?: number[];
  input?: number[];
  coils?: boolean[];
  discrete?: boolean[];
}

export interface PymodbusServer {
  port: number;
  /** SIGKILL and wait for the exit. */
  stop(): Promise<void>;
  /** What the server wrote on stderr, for assertion messages. */
  logs(): string;
}

export interface PymodbusOptions {
  /** The first values of each area. */
  init?: PymodbusInit;
  /** Entries per area; addresses from `size` on answer exception 2. Default 200. */
  size?: number;
  unitId?: number;
  timeoutMs?: number;
  /** Holding registers 0..churn-1 go up by one on every read (values that change every cycle). */
  churn?: number;
}

export async function startPymodbus(opts: PymodbusOptions = {}): Promise<PymodbusServer> {
  const dir = tempDir('pymodbus');
  const initPath = join(dir, 'init.json');
  writeFileSync(initPath, JSON.stringify(opts.init ?? {}));
  const args = [SCRIPT, '--port', '0', '--init', initPath, '--size', String(opts.size ?? 200), '--unit', String(opts.unitId ?? 1), ...(opts.churn ? ['--churn', String(opts.churn)] : [])];
  const proc = spawn(SYSTEM_PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = (): void => void proc.kill('SIGKILL');
  process.on('exit', killOnExit);
  let stderr = '';
  let stdout = '';
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = `exited with ${signal ?? code}`;
      process.off('exit', killOnExit);
      resolve();
    });
    proc.once('error', (err) => {
      exitInfo = `failed to spawn: ${err.message}`;
      process.off('exit', killOnExit);
      resolve();
    });
  });
  proc.stderr.on('data', (b: Buffer) => void (stderr = (stderr + b.toString()).slice(-20_000)));
  proc.stdout.on('data', (b: Buffer) => void (stdout += b.toString()));
  const stop = async (): Promise<void> => {
    if (exitInfo === undefined) proc.kill('SIGKILL');
    await exited;
  };
  try {
    let port = 0;
    await waitFor(
      () => {
        if (exitInfo) throw new Error(`pymodbus server ${exitInfo}: ${stderr}`);
        const m = /\{"port": (\d+)\}/.exec(stdout);
        if (m) port = Number(m[1]);
        return port > 0;
      },
      { timeoutMs: opts.timeoutMs ?? 20_000, what: 'the pymodbus server to print its port' },
    );
    await waitFor(() => canConnect(port), { timeoutMs: 5000, what: `pymodbus listening on ${port}` });
    return { port, stop, logs: () => stderr };
  } catch (err) {
    await stop();
    throw err;
  }
}
