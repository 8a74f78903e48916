/**
 * `edge-agent history`: the slot transitions ROOT/slots.json remembers (its last HISTORY_MAX)
 * merged with the commands the state store remembers (opened read-only), newest first. Works
 * when the daemon is down; either source may be missing, not both.
 */
import { loadSlots, SlotsError, type HistoryEntry } from '../../ota/slots.js';
import { CommandStore, type CommandRecord } from '../command-store.js';
import { contextOrExit, limitOption, withStoreReadonly, type CliContext } from './context.js';
import { notInstalledMessage } from './slots.js';

type Values = Record<string, string | boolean | undefined>;

export const DEFAULT_LIMIT = 50;

export type HistoryItem =
  | { at: string; source: 'slots'; event: HistoryEntry['event']; slot: string; version: string | null; reason: string | null }
  | { at: string; source: 'commands'; id: string; op: string; status: string; reason: string | null; message: string | null; receivedAt: string };

export interface HistoryReport {
  root: string;
  dataDir: string;
  /** 'ok', or why the source gave nothing: 'not installed', 'no store', or the error. */
  sources: { slots: string; commands: string };
  entries: HistoryItem[];
}

function fromSlots(h: HistoryEntry): HistoryItem {
  return { at: h.at, source: 'slots', event: h.event, slot: h.slot, version: h.version ?? null, reason: h.reason ?? null };
}

function fromCommand(c: CommandRecord): HistoryItem {
  let reason: { code?: unknown; message?: unknown } | undefined;
  try {
    reason = (JSON.parse(c.lastMessage) as { reason?: { code?: unknown; message?: unknown } }).reason;
  } catch {
    reason = undefined;
  }
  return {
    at: new Date(c.updatedAt).toISOString(),
    source: 'commands',
    id: c.id,
    op: c.op,
    status: c.status,
    reason: typeof reason?.code === 'string' ? reason.code : null,
    message: typeof reason?.message === 'string' ? reason.message : null,
    receivedAt: new Date(c.receivedAt).toISOString(),
  };
}

/** Newest first; the sort is stable, so equal times keep each source's own order. Pure. */
export function mergeHistory(slots: readonly HistoryEntry[], commands: readonly CommandRecord[], limit: number): HistoryItem[] {
  const items = [...[...slots].reverse().map(fromSlots), ...commands.map(fromCommand)];
  return items.sort((a, b) => Date.parse(b.at) - Date.parse(a.at)).slice(0, limit);
}

export function formatHistory(r: HistoryReport): string {
  const lines = r.entries.map((e) =>
    e.source === 'slots'
      ? `${e.at}  slot ${e.slot}  ${e.event.padEnd(14)}  ${e.version ?? '-'}${e.reason ? `  reason: ${e.reason}` : ''}`
      : `${e.at}  cmd     ${e.op.padEnd(14)}  ${e.status}${e.reason ? ` ${e.reason}` : ''}  id ${e.id}`,
  );
  if (lines.length === 0) lines.push('no history yet');
  for (const [k, s] of Object.entries(r.sources)) if (s !== 'ok') lines.push(`(${k}: ${s})`);
  return lines.join('\n') + '\n';
}

function readCommands(ctx: CliContext, limit: number): { status: string; commands: CommandRecord[] } {
  return (
    withStoreReadonly(ctx.store, (db) => ({ status: 'ok', commands: new CommandStore(db).recent(limit) })) ?? {
      status: `no store (${ctx.store}): the agent has not run with this data directory`,
      commands: [],
    }
  );
}

export async function historyCommand(v: Values): Promise<number> {
  const name = 'edge-agent history';
  const limit = limitOption(name, v.limit, DEFAULT_LIMIT);
  if (limit === undefined) return 64;
  const ctx = contextOrExit(name, v);
  if (typeof ctx === 'number') return ctx;
  const root = ctx.config.ota.root;
  let exit = 0;
  let slotsHistory: HistoryEntry[] = [];
  let slotsStatus = 'ok';
  try {
    slotsHistory = loadSlots(root).history ?? [];
  } catch (err) {
    if (!(err instanceof SlotsError && err.code === 'not-installed')) {
      process.stderr.write(`${name}: ${err instanceof SlotsError ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}\n`);
      exit = 1;
    }
    slotsStatus = err instanceof SlotsError && err.code === 'not-installed' ? `not installed under ${root}` : 'unreadable';
  }
  let cmds: { status: string; commands: CommandRecord[] };
  try {
    cmds = readCommands(ctx, limit);
  } catch (err) {
    process.stderr.write(`${name}: cannot read the state store ${ctx.store}: ${err instanceof Error ? err.message : String(err)}\n`);
    cmds = { status: 'unreadable', commands: [] };
    exit = 1;
  }
  if (slotsStatus !== 'ok' && cmds.status !== 'ok' && exit === 0) {
    process.stderr.write(`${name}: nothing to show: no ${root}/slots.json and no ${ctx.store}. ${notInstalledMessage(root)}; give the daemon's --config or --data-dir\n`);
    return 3;
  }
  const report: HistoryReport = {
    root,
    dataDir: ctx.config.dataDir,
    sources: { slots: slotsStatus, commands: cmds.status },
    entries: mergeHistory(slotsHistory, cmds.commands, limit),
  };
  process.stdout.write(v.json ? JSON.stringify(report, null, 2) + '\n' : formatHistory(report));
  return exit;
}
