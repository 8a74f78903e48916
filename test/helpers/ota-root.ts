/**
 * An A/B install root for end-to-end update tests (test/integration/ota-e2e.test.ts): releases
 * made from the repo's own compiled dist/, the real boot guard installed with installGuard and
 * run as a real process, and a local HTTP server that serves update bundles, fast or slowly.
 *
 * A release directory is what a slot holds: package.json (the version) + dist/. node_modules is
 * not copied into the slots: ROOT/node_modules is a symlink to the repo's, and Node's module
 * resolution walks up from ROOT/slots/X/dist/... to it. Importing this file starts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, createReadStream, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { adminRequest } from '../../core/admin.js';
import { guardEntry, installGuard } from '../../ota/guard-install.js';
import { initSlots } from '../../ota/slots.js';
import { REPO } from './agent.js';
import { collectLines, exitOf, linesText, tempDir, waitFor, type ChildExit, type OutputLine, type Received } from './util.js';

export const REPO_DIST = join(REPO, 'dist');

/** Writes a release of `version` into `dir`: the repo's package.json with that version, and a copy of dist/. */
export function makeRelease(dir: string, version: string, from = REPO): void {
  mkdirSync(dir, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, version }, null, 2) + '\n');
  // Source maps are not needed to run; leaving them out keeps the bundles small.
  cpSync(join(from, 'dist'), join(dir, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.map') });
}

export { keepBundleHead } from '../../ota/delta-base.js';

/** Replaces `search` by `replace` in a release's file; throws when the text is not there. */
export function patchFile(path: string, search: string | RegExp, replace: string): void {
  const before = readFileSync(path, 'utf8');
  const after = before.replace(search, replace);
  if (after === before) throw new Error(`patch of ${path} did not apply: ${String(search)} not found`);
  writeFileSync(path, after);
}

export interface OtaRoot {
  root: string;
  dataDir: string;
  configPath: string;
}

/**
 * ROOT with slot A = the release in `releaseDir` (version `version`), slots.json, the guard, and
 * an agent config. A self-contained release (`selfContained`: its own node_modules and
 * runtime/bin/node, deploy/release.ts) gets no ROOT/node_modules, and the guard is installed
 * with the release's runtime as its own (ROOT/guard/runtime/bin/node), as the package does.
 */
export function makeOtaRoot(opts: { releaseDir: string; version: string; config: Record<string, unknown>; selfContained?: boolean }): OtaRoot {
  const root = tempDir('ota-root');
  cpSync(opts.releaseDir, join(root, 'slots', 'A'), { recursive: true, verbatimSymlinks: true });
  if (opts.selfContained === true) {
    installGuard(join(root, 'slots', 'A', 'dist'), root, { runtime: join(root, 'slots', 'A', 'runtime', 'bin', 'node') });
  } else {
    symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
    installGuard(REPO_DIST, root);
  }
  initSlots(root, { version: opts.version });
  const dataDir = join(root, 'data');
  mkdirSync(dataDir, { recursive: true });
  const configPath = join(root, 'config.yaml');
  // The console on a port of the system's choosing: side-by-side tests would all ask for 8080.
  const console = { listen: '127.0.0.1:0', ...((opts.config.console as Record<string, unknown> | undefined) ?? {}) };
  writeFileSync(configPath, stringify({ dataDir, ...opts.config, console }));
  return { root, dataDir, configPath };
}

/** The running agent's own view (admin socket `status`): which process, slot and version. */
export async function agentStatus(r: OtaRoot): Promise<{ pid: number; slot: string; version: string }> {
  return (await adminRequest(join(r.dataDir, 'agent.sock'), 'status')) as { pid: number; slot: string; version: string };
}

export interface GuardRun {
  proc: ChildProcess;
  /** Every line the guard and its agents wrote (stdout and stderr), parsed when JSON. */
  lines: OutputLine[];
  exited: Promise<ChildExit>;
  running(): boolean;
  /** Guard log lines of one event, e.g. "spawned". */
  logged(event: string): Record<string, unknown>[];
  /** The last `n` characters of the output, for assertion messages. */
  tail(n?: number): string;
  /** SIGTERM (the guard stops the agent), SIGKILL after `graceMs`; then SIGKILL every agent it spawned. */
  stop(graceMs?: number): Promise<void>;
}

/** True while `pid` runs; a zombie (dead, not yet reaped by its new parent) counts as dead. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Runs ROOT/guard/ota/boot-guard.js as systemd would, with `run --config CONFIG` for the agent. */
export function startGuard(r: OtaRoot, guardArgs: string[], extraEnv: NodeJS.ProcessEnv = {}, node = process.execPath): GuardRun {
  const env = { ...process.env };
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'INVOCATION_ID']) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('EDGE_AGENT_')) delete env[k];
  Object.assign(env, extraEnv);
  const argv = [guardEntry(r.root), '--root', r.root, ...guardArgs, '--', 'run', '--config', r.configPath];
  const proc = spawn(node, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = collectLines(proc);
  let done = false;
  proc.on('exit', () => {
    done = true;
  });
  const exited = exitOf(proc);
  const logged = (event: string): Record<string, unknown>[] =>
    lines.filter((l): l is Record<string, unknown> => typeof l === 'object' && l.component === 'boot-guard' && l.event === event);
  const tail = (n = 6000): string => linesText(lines).slice(-n);
  const stop = async (graceMs = 15_000): Promise<void> => {
    if (!done) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    }
    for (const l of logged('spawned')) {
      const pid = l.childPid;
      if (typeof pid === 'number' && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  };
  return { proc, lines, exited, running: () => !done, logged, tail, stop };
}

/** Polls `cond`; fails at once, with the guard's output, when the guard has exited. */
export async function until(g: GuardRun, cond: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 30_000): Promise<void> {
  const name = typeof what === 'string' ? what : 'the condition';
  await waitFor(
    async () => {
      if (await cond()) return true;
      if (!g.running()) throw new Error(`the guard exited while waiting for ${name}`);
      return false;
    },
    { what: name, timeoutMs, intervalMs: 50 },
  ).catch((err: unknown) => {
    const detail = typeof what === 'string' ? '' : `\n${what()}`;
    throw new Error(`${(err as Error).message}${detail}\n--- guard and agent output ---\n${g.tail()}`, { cause: err });
  });
}

export interface BundleServer {
  /** http://127.0.0.1:PORT/NAME, or a URL that delivers it in small chunks with pauses. */
  url(name: string, slow?: boolean): string;
  /** Requests served, by path. */
  requests: string[];
  /** The Range header of each request (undefined: the whole file), in order. */
  ranges: (string | undefined)[];
  /** Body bytes handed to the sockets for NAME so far (what a gateway downloaded of it, at most). */
  sent(name: string): number;
  /** When each request came (Date.now()), in order. */
  times: number[];
  close(): Promise<void>;
}

/** Serves the files of `dir` over HTTP on port 0; /slow/NAME sends 16 KiB every 100 ms. */
export async function serveBundles(dir: string): Promise<BundleServer> {
  const requests: string[] = [];
  const ranges: (string | undefined)[] = [];
  const sent = new Map<string, number>();
  const count = (name: string, n: number): void => {
    sent.set(name, (sent.get(name) ?? 0) + n);
  };
  const times: number[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    times.push(Date.now());
    ranges.push(req.headers.range);
    const slow = path.startsWith('/slow/');
    const name = path.replace(/^\/(slow\/)?/, '');
    let size: number;
    try {
      if (name.includes('/') || name.startsWith('.')) throw new Error('bad name');
      size = statSync(join(dir, name)).size;
    } catch {
      res.writeHead(404).end();
      return;
    }
    // Byte ranges as RFC 9110 14.2: one range, open (a resuming client) or closed (a head probe).
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const etag = `"${size}-${Math.floor(statSync(join(dir, name)).mtimeMs)}"`;
    const counted = (stream: ReturnType<typeof createReadStream>): ReturnType<typeof createReadStream> => stream.on('data', (c) => count(name, c.length));
    if (!slow && range && Number(range[1]) < size && (req.headers['if-range'] === undefined || req.headers['if-range'] === etag)) {
      const start = Number(range[1]);
      const end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
      res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, etag });
      counted(createReadStream(join(dir, name), { start, end })).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, etag });
    if (!slow) {
      counted(createReadStream(join(dir, name))).pipe(res);
      return;
    }
    const data = readFileSync(join(dir, name));
    let at = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(data.subarray(at, at + 16_384));
      at += 16_384;
      if (at >= data.length) {
        clearInterval(timer);
        res.end();
      }
    }, 100);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (name, slow = false) => `http://127.0.0.1:${port}/${slow ? 'slow/' : ''}${name}`,
    requests,
    ranges,
    sent: (name) => sent.get(name) ?? 0,
    times,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What the WMS sees of one gateway: `~/res/{id}` and `~/status` messages, in arrival order. */
export interface Res {
  id: string;
  op: string;
  status: string;
  progress?: { step: string; percent?: number };
  reason?: { code: string; message: string };
  result?: Record<string, unknown>;
}
export interface GwStatus {
  state: string;
  version: string;
  slot: string;
}
export const TERMINAL = ['successful', 'failed', 'cancelled', 'rejected'];

export function resOf(got: Received[], gatewayId: string, id: string): Res[] {
  return got.filter((m) => m.topic === `edge/${gatewayId}/res/${id}`).map((m) => m.payload as Res);
}

/** The distinct terminal statuses a command got, over every message (a status may come again). */
export function terminalsOf(got: Received[], gatewayId: string, id: string): string[] {
  return [...new Set(resOf(got, gatewayId, id).filter((p) => TERMINAL.includes(p.status)).map((p) => p.status))];
}

/** The ids of every command the WMS has seen a status of. */
export function commandIds(got: Received[], gatewayId: string): string[] {
  return [...new Set(got.filter((m) => m.topic.startsWith(`edge/${gatewayId}/res/`)).map((m) => (m.payload as Res).id))];
}

/** The progress steps of a command, consecutive repeats folded. */
export function stepsOf(got: Received[], gatewayId: string, id: string): string[] {
  const all = resOf(got, gatewayId, id).flatMap((p) => (p.status === 'executing' && p.progress ? [p.progress.step] : []));
  return all.filter((s, i) => s !== all[i - 1]);
}

export function statusesOf(got: Received[], gatewayId: string): GwStatus[] {
  return got.filter((m) => m.topic === `edge/${gatewayId}/status`).map((m) => m.payload as GwStatus);
}
