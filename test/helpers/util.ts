/**
 * Small helpers shared by the integration tests: free ports, polling with a deadline (never a
 * fixed sleep), per-test temp dirs, MQTT clients for test-side WMS simulators, and the output of
 * child processes.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';

/**
 * A port the OS just handed out on 127.0.0.1. For servers that cannot listen on port 0
 * themselves (mosquitto); another process could take it before use, which tests accept.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: no TCP address'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Names the condition in the timeout error: "timed out after 5000 ms waiting for <what>". */
  what: string;
}

/**
 * Polls `cond` until it returns true; throws naming `what` once `timeoutMs` has passed. An error
 * thrown by `cond` ends the wait at once (e.g. "the process under test has exited").
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, opts: WaitOptions): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves true when a TCP connection to host:port succeeds, false when it is refused. */
export async function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ port, host });
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

/** A fresh directory under os.tmpdir(); the caller removes it if it cares. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
}

/**
 * A connected mqtt.js client. Rejects (and ends the client) when the first attempt fails:
 * an error such as a TLS alert, a CONNACK refusal, or the connection closing before CONNACK.
 * Once connected, the client reconnects as mqtt.js does by default.
 */
export async function mqttClient(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = connect(url, { connectTimeout: 5000, reconnectPeriod: 200, ...opts });
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      client.off('connect', onConnect);
      client.off('error', onFail);
      client.off('close', onClose);
    };
    const onConnect = (): void => {
      cleanup();
      resolve(client);
    };
    const onFail = (err: Error): void => {
      cleanup();
      client.end(true);
      reject(err);
    };
    const onClose = (): void => onFail(new Error(`connection to ${url} closed before CONNACK`));
    client.on('connect', onConnect);
    client.on('error', onFail);
    client.on('close', onClose);
  });
}

export interface Received {
  topic: string;
  /** Parsed JSON when the payload is JSON, else the UTF-8 string. */
  payload: unknown;
  retain: boolean;
}

function decode(buf: Buffer): unknown {
  const text = buf.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Subscribes to `topicFilter` (QoS 1) and returns a live array that fills as messages arrive.
 * Resolves once the broker has granted the subscription, so nothing published after is missed.
 */
export async function collect(client: MqttClient, topicFilter: string, qos: 0 | 1 | 2 = 1): Promise<Received[]> {
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) => {
    if (topicMatches(topicFilter, topic)) got.push({ topic, payload: decode(payload), retain: packet.retain });
  });
  const granted = await client.subscribeAsync(topicFilter, { qos });
  const refused = granted.find((g) => g.qos >= 0x80);
  if (refused) throw new Error(`subscription to ${topicFilter} refused with reason code ${refused.qos}`);
  return got;
}

/** A line a child wrote: parsed when it is JSON (pino), else the text. */
export type OutputLine = Record<string, unknown> | string;

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Collects a child's stdout and stderr into a live array, a line at a time. A chunk may end in
 * the middle of a line: each stream keeps its unfinished line until the rest (or its end) comes.
 */
export function collectLines(proc: ChildProcess): OutputLine[] {
  const lines: OutputLine[] = [];
  const push = (line: string): void => {
    if (!line.trim()) return;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push(line);
    }
  };
  for (const stream of [proc.stdout, proc.stderr]) {
    let rest = '';
    stream?.on('data', (buf: Buffer) => {
      const parts = (rest + buf.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const l of parts) push(l);
    });
    stream?.on('end', () => {
      push(rest);
      rest = '';
    });
  }
  return lines;
}

/** The lines as text, JSON ones re-serialized: for assertion messages. */
export function linesText(lines: readonly OutputLine[]): string {
  return lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');
}

/** Resolves with the child's exit code or signal. */
export function exitOf(proc: ChildProcess): Promise<ChildExit> {
  return new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
}

/** mulberry32: a tiny seeded PRNG, so a failing random test can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The state letter of a process in /proc (`Z`: a zombie), or `gone`. */
export function procState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').slice(0, 1);
  } catch {
    return 'gone';
  }
}

/** No code of it runs any more: no such process, or a zombie (an orphan this sandbox's init does not reap). */
export function processGone(pid: number): boolean {
  return ['gone', 'Z', 'X'].includes(procState(pid));
}

/** Awaits `p` and counts the event loop's turns meanwhile (more than one: it was not blocked). */
export async function loopTurnsDuring<T>(p: () => Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let done = false;
  const spin = (): void => {
    turns++;
    if (!done) setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { value: await p(), turns };
  } finally {
    done = true;
  }
}
