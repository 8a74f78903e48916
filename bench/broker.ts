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
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canConnect, freePort, waitFor as waitForCondition } from '../test/helpers/util.js';
import { findMosquitto } from '../test/helpers/broker.js';
import { startEmbeddedBroker } from '../demo/broker.js';

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

export { canConnect, freePort } from '../test/helpers/util.js';
export { findMosquitto } from '../test/helpers/broker.js';

/** Polls `cond` until true; throws naming `what` after `timeoutMs` (test/helpers/util.ts waitFor). */
export function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  return waitForCondition(cond, { timeoutMs, what });
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
  const b = await startEmbeddedBroker();
  return { kind: 'aedes', url: b.url, version: 'aedes (in-process)', protocolVersion: 4, stop: () => b.close(), logs: () => '' };
}
