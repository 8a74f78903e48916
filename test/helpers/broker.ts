/**
 * A real MQTT broker for integration tests: mosquitto as a child process with a generated config
 * in a temp dir (plain listener; optional mTLS listener with certs/devca.ts; optional ACL file;
 * persistence, so restart() keeps persistent sessions and their queued QoS 1 messages).
 *
 * Without mosquitto (neither on PATH nor in /usr/sbin) it falls back to an in-process aedes
 * broker with a plain listener only and says so on stderr; tls/acl then throw, and restart()
 * loses sessions (aedes keeps them in memory).
 *
 * Invariant: every broker started is stopped by stop()/kill9(); a process 'exit' hook kills a
 * mosquitto child the test forgot, so no broker outlives the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../demo/broker.js';
import { writePki, type CertAndKey, type PkiPaths } from '../../certs/devca.js';
import { canConnect, freePort, tempDir, waitFor } from './util.js';

export interface BrokerOptions {
  /** Adds an mTLS listener (require_certificate, use_identity_as_username). */
  tls?: boolean;
  /** Adds an ACL file: anonymous clients may use every topic, TLS identities only `{prefix}/{CN}/#`. */
  acl?: boolean;
  /** Working directory for config, certs, persistence and logs; a fresh temp dir by default. */
  dir?: string;
  /** CN of the generated client certificate, i.e. the TLS client's username. Default 'gw-test'. */
  gatewayId?: string;
  /** Topic prefix the ACL grants to TLS identities. Default 'edge'. */
  prefix?: string;
  /**
   * mosquitto's max_inflight_messages (QoS 1 messages sent to a client before its PUBACKs);
   * default mosquitto's 20. 0: no window, the broker sends everything queued at once.
   */
  maxInflight?: number;
  /** Force an implementation; default mosquitto when installed, else aedes. */
  kind?: 'mosquitto' | 'aedes';
}

export interface Broker {
  kind: 'mosquitto' | 'aedes';
  /** mqtt://127.0.0.1:PORT, anonymous. */
  url: string;
  port: number;
  /** mqtts://localhost:PORT2, client certificate required. */
  tlsUrl: string | undefined;
  tlsPort: number | undefined;
  /** The paths, and the CA itself (its key too) for issuing more in a test. */
  pki: (PkiPaths & { authority: CertAndKey }) | undefined;
  dir: string;
  /** SIGTERM and wait for exit (mosquitto saves its persistence file on the way out). */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: only what the last autosave wrote survives. */
  kill9(): Promise<void>;
  /** Stops the broker if it runs, then starts it again on the same ports and persistence dir. */
  restart(): Promise<void>;
  /** The last lines the broker wrote to stderr, for assertion messages. */
  logs(): string;
}

const LOG_LINES = 500;
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const RUNNING_LINE = /mosquitto version \S+ running/;

export function findMosquitto(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    const p = join(d, 'mosquitto');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export interface MosquittoConf {
  port: number;
  tlsPort?: number;
  pki?: PkiPaths;
  aclFile?: string;
  persistenceDir: string;
  runningAsRoot: boolean;
  maxInflight?: number;
}

/** The generated mosquitto.conf (mosquitto.conf(5), 2.0). */
export function mosquittoConf(c: MosquittoConf): string {
  const lines = [
    'per_listener_settings false',
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${c.persistenceDir}`,
    'autosave_interval 1',
    'max_queued_messages 100000',
    ...(c.maxInflight !== undefined ? [`max_inflight_messages ${c.maxInflight}`] : []),
    'log_dest stderr',
    'log_type all',
    'connection_messages true',
    // As root, mosquitto would switch to user "mosquitto", who cannot read our temp dir.
    ...(c.runningAsRoot ? ['user root'] : []),
    ...(c.aclFile ? [`acl_file ${c.aclFile}`] : []),
    '',
    `listener ${c.port} 127.0.0.1`,
  ];
  if (c.tlsPort !== undefined && c.pki) {
    lines.push(
      '',
      `listener ${c.tlsPort} 127.0.0.1`,
      `cafile ${c.pki.ca}`,
      `certfile ${c.pki.serverCert}`,
      `keyfile ${c.pki.serverKey}`,
      'require_certificate true',
      'use_identity_as_username true',
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * The ACL file. Lines before any `user` line apply to anonymous clients (here: the plain
 * listener's test-side WMS simulators, which may use every topic). `pattern` lines apply to
 * every authenticated client; `%u` is the username, which for the TLS listener is the
 * certificate CN. No `user` sections, so a TLS identity has nothing but its own subtree.
 */
export function aclFile(prefix: string): string {
  return ['# anonymous clients', 'topic readwrite #', '', '# every named client: its own subtree only', `pattern readwrite ${prefix}/%u/#`, ''].join('\n');
}

export async function startBroker(opts: BrokerOptions = {}): Promise<Broker> {
  const binary = opts.kind === 'aedes' ? undefined : findMosquitto();
  if (opts.kind === 'mosquitto' && !binary) throw new Error('mosquitto requested but not installed (apt-get install mosquitto)');
  const dir = opts.dir ?? tempDir('broker-');
  mkdirSync(dir, { recursive: true });
  if (!binary) {
    if (opts.kind !== 'aedes') console.warn('mosquitto not installed: using the embedded aedes broker (plain listener only)');
    if (opts.tls || opts.acl) throw new Error('startBroker: tls and acl need mosquitto, which is not installed');
    return startAedes(dir);
  }
  return startMosquitto(binary, dir, opts);
}

async function startMosquitto(binary: string, dir: string, opts: BrokerOptions): Promise<Broker> {
  const port = await freePort();
  const tlsPort = opts.tls ? await freePort() : undefined;
  const pki = opts.tls ? writePki(join(dir, 'pki'), { clientCommonName: opts.gatewayId ?? 'gw-test' }) : undefined;
  const persistenceDir = join(dir, 'data');
  mkdirSync(persistenceDir, { recursive: true });
  let aclPath: string | undefined;
  if (opts.acl) {
    aclPath = join(dir, 'acl');
    writeFileSync(aclPath, aclFile(opts.prefix ?? 'edge'));
  }
  const confPath = join(dir, 'mosquitto.conf');
  const runningAsRoot = process.getuid?.() === 0;
  writeFileSync(confPath, mosquittoConf({ port, tlsPort, pki, aclFile: aclPath, persistenceDir, runningAsRoot, ...(opts.maxInflight !== undefined ? { maxInflight: opts.maxInflight } : {}) }));

  const log: string[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const killOnExit = (): void => {
    child?.kill('SIGKILL');
  };
  const logs = (): string => log.join('\n');

  const launch = async (): Promise<void> => {
    const proc = spawn(binary, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let exitInfo: string | undefined;
    exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        exitInfo = `exited with ${signal ?? code}`;
        if (child === proc) child = undefined;
        process.off('exit', killOnExit);
        resolve();
      });
    });
    proc.once('error', (err) => {
      exitInfo = `failed to spawn: ${err.message}`;
      if (child === proc) child = undefined;
    });
    let partial = '';
    let running = false;
    proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      // Printed once every listener is open; a TCP probe alone could reach whoever holds the port.
      if (parts.some((l) => RUNNING_LINE.test(l))) running = true;
      log.push(...parts);
      if (log.length > LOG_LINES) log.splice(0, log.length - LOG_LINES);
    });
    process.on('exit', killOnExit);
    try {
      await waitFor(
        async () => {
          if (exitInfo) throw new Error(`mosquitto ${exitInfo}`);
          return running && (await canConnect(port)) && (tlsPort === undefined || (await canConnect(tlsPort)));
        },
        { what: `mosquitto to listen on ${port}${tlsPort ? ` and ${tlsPort}` : ''}`, timeoutMs: START_TIMEOUT_MS },
      );
    } catch (err) {
      proc.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n--- mosquitto log ---\n${logs()}`, { cause: err });
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  await launch();
  return {
    kind: 'mosquitto',
    url: `mqtt://127.0.0.1:${port}`,
    port,
    tlsUrl: tlsPort === undefined ? undefined : `mqtts://localhost:${tlsPort}`,
    tlsPort,
    pki,
    dir,
    stop: () => halt('SIGTERM'),
    kill9: () => halt('SIGKILL'),
    restart: async () => {
      await halt('SIGTERM');
      await launch();
    },
    logs,
  };
}

async function startAedes(dir: string): Promise<Broker> {
  const port = await freePort();
  const log: string[] = [];
  let embedded: EmbeddedBroker | undefined;
  const launch = async (): Promise<void> => {
    embedded = await startEmbeddedBroker(port, (id, err) => log.push(`client ${id} error: ${err.message}`));
  };
  const halt = async (): Promise<void> => {
    const e = embedded;
    embedded = undefined;
    await e?.close();
  };

  await launch();
  return {
    kind: 'aedes',
    url: `mqtt://127.0.0.1:${port}`,
    port,
    tlsUrl: undefined,
    tlsPort: undefined,
    pki: undefined,
    dir,
    stop: halt,
    kill9: halt,
    restart: async () => {
      await halt();
      await launch();
    },
    logs: () => log.join('\n'),
  };
}
