/**
 * Fixtures for test/integration/boot-guard.test.ts: an install root in a temp dir whose slots hold
 * tiny fake releases (a few lines of JS at dist/agent/cli/index.js), the real boot guard
 * installed from dist/ with installGuard, and the guard run as a real process from ROOT/guard.
 * Importing this file starts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { guardEntry, installGuard } from '../../ota/guard-install.js';
import { activate, beginInstall, initSlots, markVerified, saveSlots, type SlotName, type SlotsFile } from '../../ota/slots.js';
import { tempDir, waitFor } from '../helpers/util.js';
import { alive } from '../helpers/ota-root.js';

export { alive };

// dist/test/integration/ -> dist/
export const DIST = fileURLToPath(new URL('../../', import.meta.url));

/**
 * What a fake agent does after recording `started` in the marker file:
 * run (until SIGTERM), exit1, crash (an uncaught error), hang (ignores SIGTERM, never commits),
 * commit (commits its own trial through ROOT/guard/ota/slots.js, then runs),
 * exit75-once (asks for a restart on its first start, then runs).
 */
export type Behaviour = 'run' | 'exit1' | 'crash' | 'hang' | 'commit' | 'exit75-once';

const BODY: Record<Behaviour, string> = {
  run: `process.on('SIGTERM', () => { note('stopped'); process.exit(0); });\nsetInterval(() => {}, 1000);`,
  exit1: `process.exit(1);`,
  crash: `throw new Error('fake agent crash');`,
  hang: `process.on('SIGTERM', () => note('ignored-sigterm'));\nsetInterval(() => {}, 1000);`,
  commit: `const m = await import(pathToFileURL(join(root, 'guard', 'ota', 'slots.js')).href);
m.saveSlots(root, m.commit(m.loadSlots(root)));
note('committed');
process.on('SIGTERM', () => { note('stopped'); process.exit(0); });
setInterval(() => {}, 1000);`,
  'exit75-once': `if (!existsSync(marker + '.once')) { writeFileSync(marker + '.once', ''); process.exit(75); }
process.on('SIGTERM', () => { note('stopped'); process.exit(0); });
setInterval(() => {}, 1000);`,
};

function fakeAgent(b: Behaviour): string {
  return `import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
const marker = process.env.TEST_MARKER;
const slot = process.env.EDGE_AGENT_SLOT;
const root = process.env.EDGE_AGENT_ROOT;
const note = (ev, extra = {}) => appendFileSync(marker, JSON.stringify({ ev, slot, pid: process.pid, ...extra }) + '\\n');
note('started', { guard: process.env.EDGE_AGENT_GUARD ?? null, root, args: process.argv.slice(2), execArgv: process.execArgv,
  watchdogPid: process.env.WATCHDOG_PID ?? null, watchdogUsec: process.env.WATCHDOG_USEC ?? null });
${BODY[b]}
`;
}

export interface Fixture {
  root: string;
  marker: string;
}

/** ROOT with the guard installed and a fake release per slot; slots.json with A committed. */
export function makeRoot(a: Behaviour, b?: Behaviour): Fixture {
  const root = tempDir('guard-root');
  installGuard(DIST, root);
  for (const [slot, beh] of [['A', a], ['B', b]] as const) {
    if (!beh) continue;
    const dir = join(root, 'slots', slot);
    mkdirSync(join(dir, 'dist', 'agent', 'cli'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'edge-agent', version: slot === 'A' ? '1.0.0' : '1.1.0', type: 'module' }));
    writeFileSync(join(dir, 'dist', 'agent', 'cli', 'index.js'), fakeAgent(beh));
  }
  initSlots(root, { version: '1.0.0', securityVersion: 1 });
  return { root, marker: join(root, 'marker.log') };
}

/** Puts slot B on trial as an update would: install, verify, activate (one write each). */
export function trialB(root: string, s: SlotsFile): SlotsFile {
  let n = beginInstall(s, 'B', { version: '1.1.0', securityVersion: 2, updateId: 'u-test' });
  saveSlots(root, n);
  n = markVerified(n, 'B');
  saveSlots(root, n);
  n = activate(n, 'B');
  saveSlots(root, n);
  return n;
}

export interface MarkerEvent {
  ev: string;
  slot: SlotName;
  pid: number;
  [k: string]: unknown;
}

export function events(fx: Fixture): MarkerEvent[] {
  if (!existsSync(fx.marker)) return [];
  return readFileSync(fx.marker, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as MarkerEvent);
}

export function starts(fx: Fixture, slot?: SlotName): MarkerEvent[] {
  return events(fx).filter((e) => e.ev === 'started' && (slot === undefined || e.slot === slot));
}

export interface GuardProcess {
  proc: ChildProcess;
  /** The guard's JSON log lines (stderr). */
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode(): number | null | undefined;
  /** Log lines of one event, e.g. "child-exit". */
  logged(event: string): Record<string, unknown>[];
  /** Polls `cond` with a deadline; fails at once if the guard has exited. */
  until(cond: () => boolean, what: string, timeoutMs?: number): Promise<void>;
}

/** Runs ROOT/guard/ota/boot-guard.js as the unit would, with the fake agent's marker in its env. */
export function startGuard(fx: Fixture, args: string[], env: NodeJS.ProcessEnv = {}): GuardProcess {
  const clean = { ...process.env };
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'INVOCATION_ID']) delete clean[k];
  for (const k of Object.keys(clean)) if (k.startsWith('EDGE_AGENT_')) delete clean[k];
  const argv = [guardEntry(fx.root), '--root', fx.root, ...args, '--', 'run', '--config', '/nonexistent/config.yaml'];
  const proc = spawn(process.execPath, argv, { env: { ...clean, TEST_MARKER: fx.marker, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  let rest = '';
  proc.stderr?.on('data', (buf: Buffer) => {
    const lines = (rest + buf.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) {
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        if (o.component === 'boot-guard') logs.push(o);
      } catch {
        /* the fake agents' own stderr (a crash's stack trace) */
      }
    }
  });
  proc.stdout?.resume();
  let status: number | null | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      status = code;
      resolve({ code, signal });
    }),
  );
  const logged = (event: string): Record<string, unknown>[] => logs.filter((l) => l.event === event);
  const until = (cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> =>
    waitFor(
      () => {
        if (cond()) return true;
        if (status !== undefined) throw new Error(`the guard exited (${String(status)}) while waiting for ${what}; log:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`);
        return false;
      },
      { what, timeoutMs, intervalMs: 25 },
    );
  return { proc, logs, exited, exitCode: () => status, logged, until };
}

/** SIGKILLs every guard still running and every fake agent a marker names, as systemd would the cgroup. */
export async function cleanup(fixtures: Fixture[], guards: GuardProcess[]): Promise<void> {
  for (const g of guards) if (g.exitCode() === undefined) g.proc.kill('SIGKILL');
  await Promise.all(guards.map((g) => g.exited));
  for (const fx of fixtures) for (const e of starts(fx)) if (alive(e.pid)) process.kill(e.pid, 'SIGKILL');
}
