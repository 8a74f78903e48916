/**
 * Runs `edge-agent` from the ACTIVE slot, in this very process, on the Node.js that runs this
 * file: what the Debian package's /usr/bin/edge-agent wrapper starts on the guard's runtime (so
 * that `edge-agent rollback` works even when the active slot's runtime does not start).
 * Installed with the boot guard outside the slots (ROOT/guard/, ota/guard-install.ts GUARD_FILES):
 *
 *   node ROOT/guard/ota/slot-entry.js --root ROOT -- plc-bridge --config FILE
 *   node ROOT/guard/ota/slot-entry.js --root ROOT --resolve
 *
 * `--resolve` runs nothing: it prints the active slot's runtime (slotNode) and entry point, one
 * per line, for ROOT/guard/bin/slot-exec (ota/slot-exec.ts), which edge-plc-bridge.service starts
 * so that the bridge runs on its slot's own runtime as the unit's main process.
 *
 * It reads ROOT/slots.json, rewrites process.argv as if node had been started with the active
 * slot's `dist/agent/cli/index.js` and the arguments after `--`, and imports that file. No child:
 * the unit's main PID is the bridge itself (Type=notify, its watchdog), and the bridge's
 * process.argv[1] names its release, which is what a handover compares and starts a successor
 * from (plc-bridge/handover.ts).
 *
 * Unlike the boot guard it only reads slots.json: trial starts are the agent's to count, and the
 * bridge runs whatever slot is active; after a rollback the agent hands it over to its code.
 *
 * Exit status: 78 when ROOT/slots.json is missing (not installed), 64 on bad arguments, 1 when
 * slots.json is unusable or the slot has no entry point; otherwise whatever `edge-agent` does.
 * Imports: node: builtins and ./slots.js only (GUARD_FILES).
 */
import { existsSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadSlots, SlotsError, type SlotName } from './slots.js';

export const EXIT_NOT_INSTALLED = 78;
export const EXIT_USAGE = 64;

export interface EntryArgs {
  root: string;
  /** What `edge-agent` gets: everything after `--`. */
  args: string[];
  /** `--resolve`: print the active slot's runtime and entry point instead of running it. */
  resolve?: true;
}

/** Pure. Throws an Error whose message is meant for a person. */
export function parseEntryArgs(argv: readonly string[]): EntryArgs {
  let root = '';
  let resolveOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      if (!root) throw new Error('--root is required');
      const args = argv.slice(i + 1);
      if (args.length === 0) throw new Error('no edge-agent arguments after --');
      return resolveOnly ? { root, args, resolve: true } : { root, args };
    }
    if (arg === '--resolve') {
      resolveOnly = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (name !== '--root') throw new Error(`unknown option ${JSON.stringify(name)}`);
    if (value === undefined || value === '') throw new Error('--root needs a value');
    root = resolve(value);
  }
  if (resolveOnly && root) return { root, args: [], resolve: true };
  throw new Error('usage: slot-entry.js --root ROOT -- SUBCOMMAND [ARGS...] | --root ROOT --resolve');
}

/** The entry point of a slot, laid out as the boot guard starts it. */
export function slotCli(root: string, slot: SlotName): string {
  return join(root, 'slots', slot, 'dist', 'agent', 'cli', 'index.js');
}

/**
 * The Node.js a slot's programs run on: its own runtime/bin/node (a self-contained release), else
 * this process's (a development install). As ota/boot-guard.ts slotRuntime, for the bridge.
 */
export function slotNode(root: string, slot: SlotName): string {
  const own = join(root, 'slots', slot, 'runtime', 'bin', 'node');
  return existsSync(own) ? own : process.execPath;
}

function log(level: 30 | 50, event: string, msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ level, time: new Date().toISOString(), pid: process.pid, component: 'slot-entry', event, msg, ...fields }) + '\n');
}

/**
 * Resolves the active slot's CLI and runs it in this process. Resolves with an exit status when
 * it could not start it, with undefined once the CLI module is loaded (it then owns the process).
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  let opts: EntryArgs;
  try {
    opts = parseEntryArgs(argv);
  } catch (err) {
    log(50, 'usage', `slot-entry: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_USAGE;
  }
  let slot: SlotName;
  let version: string | undefined;
  try {
    const s = loadSlots(opts.root);
    slot = s.active;
    version = s.slots[slot].version;
  } catch (err) {
    const code = err instanceof SlotsError ? err.code : undefined;
    log(50, code === 'not-installed' ? 'not-installed' : 'slots-unusable', err instanceof Error ? err.message : String(err), { code, root: opts.root });
    return code === 'not-installed' ? EXIT_NOT_INSTALLED : 1;
  }
  const cli = slotCli(opts.root, slot);
  if (!existsSync(cli)) {
    log(50, 'no-entry-point', `slot ${slot} has no ${cli}`, { slot, root: opts.root });
    return 1;
  }
  if (opts.resolve) {
    // For ROOT/guard/bin/slot-exec (ota/slot-exec.ts): two lines, the runtime and the entry point.
    process.stdout.write(`${slotNode(opts.root, slot)}\n${cli}\n`);
    return 0;
  }
  log(30, 'start', `starting edge-agent ${opts.args[0] ?? ''} from slot ${slot}`, { slot, version, cli });
  process.argv = [process.argv[0] ?? process.execPath, cli, ...opts.args];
  // systemd names the first main PID in WATCHDOG_PID; a handover's successor (started by the
  // bridge, this environment inherited) must take the watchdog as its own once it is the main
  // PID, and without the variable it does (sd_watchdog_enabled(3); lib/sdnotify.ts).
  delete env.WATCHDOG_PID;
  await import(pathToFileURL(cli).href);
  return undefined;
}

/** True when node runs this file (also through the ROOT/guard symlink), not when a test imports it. */
function isEntry(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== undefined) process.exit(code);
    },
    (err: unknown) => {
      log(50, 'fatal', err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exit(70);
    },
  );
}
