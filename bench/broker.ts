/**
 * The broker the benchmarks talk to: a real mosquitto child on a free port with a generated
 * config tuned so the broker is never the bottleneck (no persistence, deep queues, unlimited
 * inflight), or, when mosquitto is not installed, an in-process aedes broker. Which one ran is
 * part of the results, since numbers from the two are not comparable.
 *
 * Invariant: stop() ends whatever start() began; a process 'exit' hook SIGKILLs a mosquitto
 * child the caller forgot, so no broker outlives the bench.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Aedes } from 'aedes';

export interface BenchBroker {
  kind: 'mosquitto' | 'aedes';
  url: string;
  /** e.g. "mosquitto version 2.0.11" or "aedes (in-process)". */
  version: string;
  /** MQTT 5 on mosquitto; aedes speaks 3.1.1 only, so every client (the agent too) uses 4 there. */
  protocolVersion: 4 | 5;
  stop(): Promise<void>;
  logs(): string;
}

/** A port the OS just handed out on 127.0.0.1 (mosquitto cannot listen on port 0 itself). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('freePort: no TCP address'));
      srv.close(() => resolve(addr.port));
    });
  });
}

export async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

/** Polls `cond` every 20 ms until true; throws naming `what` after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function findMosquitto(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    try {
      accessSync(join(d, 'mosquitto'), constants.X_OK);
      return join(d, 'mosquitto');
    } catch {
      /* not in this directory */
    }
  }
  return undefined;
}

/** mosquitto.conf(5): anonymous, no persistence, and queues deep enough for 100k QoS 1 messages. */
export function benchConf(port: number, runningAsRoot: boolean): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'max_queued_messages 200000',
    'max_inflight_messages 0',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    // As root, mosquitto would switch to user "mosquitto", who cannot read our temp dir.
    ...(runningAsRoot ? ['user root'] : []),
    '',
  ].join('\n');
}

/** mosquitto when installed (or asked for), else aedes; `prefer: 'aedes'` tests the fallback. */
export async function startBenchBroker(prefer?: 'mosquitto' | 'aedes'): Promise<BenchBroker> {
  const binary = prefer === 'aedes' ? undefined : findMosquitto();
  if (prefer === 'mosquitto' && !binary) throw new Error('mosquitto requested but not installed');
  return binary ? startMosquitto(binary) : startAedes();
}

async function startMosquitto(binary: string): Promise<BenchBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-broker-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, benchConf(port, process.getuid?.() === 0));
  const log: string[] = [];
  const proc = spawn(binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr.setEncoding('utf8').on('data', (s: string) => {
    log.push(...s.split('\n').filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  });
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = `exited with ${signal ?? code}`;
      resolve();
    });
  });
  proc.once('error', (err) => (exitInfo = `failed to spawn: ${err.message}`));
  const killOnExit = (): void => void proc.kill('SIGKILL');
  process.on('exit', killOnExit);
  const stop = async (): Promise<void> => {
    if (exitInfo === undefined) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (exitInfo) throw new Error(`mosquitto ${exitInfo}: ${log.join('\n')}`);
      return canConnect(port);
    }, `mosquitto on port ${port}`);
  } catch (err) {
    await stop();
    throw err;
  }
  const version = await mosquittoVersion(binary);
  return { kind: 'mosquitto', url: `mqtt://127.0.0.1:${port}`, version, protocolVersion: 5, stop, logs: () => log.join('\n') };
}

async function mosquittoVersion(binary: string): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(binary, ['-h'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    p.once('error', () => resolve('mosquitto (unknown version)'));
    p.once('close', () => resolve(/mosquitto version \S+/.exec(out)?.[0] ?? 'mosquitto (unknown version)'));
  });
}

async function startAedes(): Promise<BenchBroker> {
  const broker = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    broker.handle(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('aedes: no TCP address');
  return {
    kind: 'aedes',
    url: `mqtt://127.0.0.1:${addr.port}`,
    version: 'aedes (in-process)',
    protocolVersion: 4,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
    logs: () => '',
  };
}
