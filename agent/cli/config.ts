/**
 * `edge-agent config show|diff FILE|apply FILE`: the `config` operation from the gateway's console
 * (docs/config-apply.md). `show` and `diff` read the running configuration over the admin socket
 * (`config-get`: secrets redacted, with its hash); `apply` sends FILE as a whole document based on
 * that hash, as if the WMS had sent it (admin method `command`), and waits for the outcome like
 * `edge-agent rollback`: the agent restarts on the way, so the status is polled over the socket,
 * or from the store while no daemon answers.
 */
import { readFileSync } from 'node:fs';
import { adminRequest } from '../../core/admin.js';
import { parseConfigText } from '../../core/config.js';
import { changedPaths, isDoc, redacted, type Doc } from '../../core/config-edit.js';
import { stringify } from 'yaml';
import { consoleCommandId, daemonAway, latest, type Status } from './rollback.js';
import { contextOrExit, fail, type CliContext } from './context.js';

type Values = Record<string, string | boolean | undefined>;

const TERMINAL = new Set(['successful', 'failed', 'cancelled', 'rejected']);
const POLL_MS = 250;

interface Got {
  target: string;
  hash: string;
  config: Doc;
}

function usage(msg: string): number {
  process.stderr.write(`edge-agent config: ${msg}\n`);
  return 64;
}

function readFileDoc(path: string): Doc {
  const raw = parseConfigText(readFileSync(path, 'utf8'), path);
  if (!isDoc(raw)) throw new Error(`${path} must hold a mapping of keys to values`);
  return raw;
}

async function current(ctx: CliContext, target: string): Promise<Got> {
  return (await adminRequest(ctx.socket, 'config-get', { target })) as Got;
}

function notRunning(ctx: CliContext, err: unknown): number | undefined {
  if (!daemonAway(err)) return undefined;
  process.stderr.write(`edge-agent config: the daemon is not running (no admin socket at ${ctx.socket}); start it and try again\n`);
  return 3;
}

export async function configCommand(v: Values, positionals: string[]): Promise<number> {
  const [action, file, ...extra] = positionals;
  if (action !== 'show' && action !== 'diff' && action !== 'apply') return usage(`say show, diff FILE or apply FILE (got ${JSON.stringify(action ?? '')})`);
  if (action === 'show' ? file !== undefined : file === undefined || extra.length > 0) return usage(action === 'show' ? 'show takes no FILE' : `${action} takes one FILE`);
  const target = typeof v.target === 'string' ? v.target : 'agent';
  if (target !== 'agent' && target !== 'plc-bridge') return usage(`--target is agent or plc-bridge, got ${JSON.stringify(target)}`);
  const confirmSec = typeof v['confirm-sec'] === 'string' ? Number(v['confirm-sec']) : 60;
  if (!Number.isInteger(confirmSec) || confirmSec < 1 || confirmSec > 3600) return usage(`--confirm-sec must be a whole number from 1 to 3600, got ${JSON.stringify(v['confirm-sec'])}`);
  const ctx = contextOrExit('edge-agent config', v);
  if (typeof ctx === 'number') return ctx;
  const json = v.json === true;

  let got: Got;
  let wanted: Doc | undefined;
  try {
    if (file !== undefined) wanted = readFileDoc(file);
    got = await current(ctx, target);
  } catch (err) {
    return notRunning(ctx, err) ?? fail('edge-agent config', err);
  }

  if (action === 'show') {
    process.stdout.write(json ? `${JSON.stringify(got, null, 2)}\n` : `# ${got.target} configuration, hash ${got.hash} (secrets redacted)\n${stringify(got.config)}`);
    return 0;
  }
  const changed = changedPaths(got.config, wanted);
  if (action === 'diff') {
    if (json) process.stdout.write(`${JSON.stringify({ target, hash: got.hash, changed }, null, 2)}\n`);
    else if (changed.length === 0) process.stdout.write('no differences\n');
    else {
      // Values as `get` shows them: a secret in FILE is not printed either.
      const shown = redacted(wanted) as Doc;
      const at = (d: unknown, path: string): unknown => path.split('.').reduce<unknown>((o, k) => (isDoc(o) ? o[k] : undefined), d);
      for (const p of changed) process.stdout.write(`~ ${p}: ${JSON.stringify(at(got.config, p)) ?? '(absent)'} -> ${JSON.stringify(at(shown, p)) ?? '(absent)'}\n`);
    }
    return changed.length === 0 ? 0 : 1;
  }
  return apply(ctx, { target, config: wanted!, baseHash: got.hash, confirmSec }, json, typeof v.timeout === 'string' ? Number(v.timeout) : confirmSec + 60);
}

async function apply(ctx: CliContext, params: Record<string, unknown>, json: boolean, timeoutSec: number): Promise<number> {
  const name = 'edge-agent config apply';
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) return usage(`--timeout must be a positive number of seconds`);
  const id = consoleCommandId();
  try {
    await adminRequest(ctx.socket, 'command', { op: 'config', params: { action: 'apply', ...params }, id });
  } catch (err) {
    return notRunning(ctx, err) ?? fail(name, err);
  }
  if (!json) process.stdout.write(`config apply requested as command ${id}\n`);
  const deadline = Date.now() + timeoutSec * 1000;
  let shown = '';
  for (;;) {
    let s: Status | undefined;
    try {
      s = (await latest(ctx, id)).status;
    } catch (err) {
      return fail(name, err);
    }
    const now = s ? (s.status === 'executing' && s.progress?.step ? `executing (${s.progress.step})` : s.status) : '';
    if (s && now !== shown && !json) process.stdout.write(`${now}\n`);
    shown = now || shown;
    if (s && TERMINAL.has(s.status)) return outcome(s, json);
    if (Date.now() >= deadline) {
      process.stderr.write(`${name}: no outcome within ${timeoutSec} s (last status: ${shown || 'none'}); see \`edge-agent history\` for command ${id} later\n`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function outcome(s: Status, json: boolean): number {
  if (json) process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
  const r = s.result as { fromHash?: string; toHash?: string; changed?: string[] } | undefined;
  if (s.status === 'successful') {
    if (!json) process.stdout.write(`applied and confirmed: ${r?.changed?.length ? r.changed.join(', ') : 'nothing changed'} (${r?.fromHash?.slice(0, 12) ?? '?'} -> ${r?.toHash?.slice(0, 12) ?? '?'})\n`);
    return 0;
  }
  const reason = s.reason;
  if (!json) {
    process.stderr.write(`edge-agent config apply: ${s.status}: ${reason?.code ?? 'unknown'}: ${reason?.message ?? 'no reason given'}\n`);
    for (const d of reason?.details ?? []) process.stderr.write(`  ${d.path}: ${d.message}\n`);
  }
  return 1;
}
