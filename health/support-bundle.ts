/**
 * The support bundle: one `.tar.gz` a person can send to whoever helps them, with what that
 * helper would otherwise have to ask for one by one: the diagnostics report (JSON and text),
 * the recent logs (the log ring), the configuration with secrets redacted (as written and as
 * in effect, and the PLC bridge's), slot states and history, commands, incidents, the audit
 * trail (its newest entries and the check of its whole chain), the health
 * history tables, and the daemon's live status when it runs.
 *
 * INVARIANTS
 * - No secret leaves: documents are redacted by key, then every file's text is scrubbed of
 *   every secret value the configuration holds (health/diag/redact.ts); private key files are
 *   never read; command parameters (which may hold signed URLs) are left out.
 * - Bounded: the logs are the ring (diag.logRing), tables are cut to their newest rows.
 * - The archive is written to a temp name and renamed, mode 0600: a half-written bundle is never
 *   at `out`. The staging directory is removed whatever happens.
 */
import { chmod, mkdtemp, readFile, rename, rm, writeFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { create } from 'tar';
import { AuditLog, auditAvailable, verifyChain } from '../core/audit.js';
import { systemClock } from '../lib/clock.js';
import { logRingDir, parseConfigText } from '../core/config.js';
import { readAgentInfo } from '../core/agent-info.js';
import { ringPaths } from '../lib/log-ring.js';
import type { Db } from '../lib/sqlite.js';
import { slotsPath } from '../ota/slots.js';
import { formatReport } from './diag/report.js';
import { redactDoc, scrub, secretValues } from '../lib/redact.js';
import type { DiagContext, DiagReport } from './diag/types.js';

const TABLE_ROWS = 5000;
const COMMANDS = 200;

export interface SupportBundle {
  path: string;
  bytes: number;
  files: string[];
}

async function readDoc(path: string | undefined): Promise<{ doc?: unknown; error?: string }> {
  if (!path) return {};
  try {
    return { doc: parseConfigText(await readFile(path, 'utf8'), path) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The newest rows: by rowid, or for a WITHOUT ROWID table by its time column (t, at, ts) when it has one. */
function tableRows(db: Db, table: string, limit: number): unknown[] {
  const q = `"${table.replace(/"/g, '""')}"`;
  const cols = (db.prepare(`PRAGMA table_info(${q})`).all() as { name: string }[]).map((c) => c.name);
  const withoutRowid = db.prepare('SELECT 1 FROM sqlite_master WHERE name = ? AND sql LIKE ?').get(table, '%WITHOUT ROWID%') !== undefined;
  const time = ['t', 'at', 'ts'].find((c) => cols.includes(c));
  const order = !withoutRowid ? 'ORDER BY rowid DESC' : time ? `ORDER BY "${time}" DESC` : '';
  return db.prepare(`SELECT * FROM ${q} ${order} LIMIT ?`).all(limit);
}

function tables(db: Db, like: string): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\' ORDER BY name").all(like) as { name: string }[]).map((r) => r.name);
}

/** Commands without their parameters: id, op, status, times and the reason of a failure. */
function commandHistory(ctx: DiagContext, db: Db): unknown[] {
  return ctx.storeReader.recentCommands(db, COMMANDS).map((c) => {
    let reason: unknown;
    try {
      reason = (JSON.parse(c.lastMessage) as { reason?: unknown }).reason;
    } catch {
      reason = undefined;
    }
    return { id: c.id, op: c.op, status: c.status, receivedAt: new Date(c.receivedAt).toISOString(), updatedAt: new Date(c.updatedAt).toISOString(), reason: reason ?? null };
  });
}

/** Writes the bundle to `out` (a .tar.gz); see the invariants above. */
export async function makeSupportBundle(opts: { ctx: DiagContext; report: DiagReport; out: string }): Promise<SupportBundle> {
  const { ctx, report } = opts;
  const config = ctx.config;
  const staging = await mkdtemp(join(tmpdir(), 'edge-agent-support-'));
  const files: string[] = [];
  try {
    const raw = await readDoc(ctx.configPath);
    const bridge = await readDoc(config?.plcBridge.config);
    const secrets = new Set([...secretValues(raw.doc), ...secretValues(bridge.doc), ...secretValues(config)]);
    const put = async (rel: string, content: unknown): Promise<void> => {
      const text = typeof content === 'string' ? content : JSON.stringify(content, null, 2) + '\n';
      await mkdir(dirname(join(staging, rel)), { recursive: true, mode: 0o700 });
      await writeFile(join(staging, rel), scrub(text, secrets), { mode: 0o600 });
      files.push(rel);
    };
    await put('diagnostics.json', report);
    await put('diagnostics.txt', formatReport(report, { color: false }));
    if (raw.doc !== undefined) await put('config/config.yaml', stringify(redactDoc(raw.doc)));
    const configError = ctx.configError?.message ?? raw.error;
    if (configError) await put('config/config-error.txt', configError + '\n');
    if (config) await put('config/effective.json', redactDoc(config));
    if (bridge.doc !== undefined) await put('config/plc-bridge.yaml', stringify(redactDoc(bridge.doc)));
    if (ctx.live) await put('status.json', redactDoc(ctx.live));
    if (config) {
      for (const p of ringPaths(logRingDir(config), config.diag.logRing.files)) {
        const text = await readFile(p, 'utf8').catch(() => undefined);
        if (text !== undefined) await put(`logs/${basename(p)}`, text);
      }
      const slots = await readFile(slotsPath(config.ota.root), 'utf8').catch(() => undefined);
      if (slots !== undefined) await put('slots/slots.json', slots);
    }
    const db = ctx.db;
    if (db) {
      await put('store/agent-info.json', redactDoc(readAgentInfo(db)));
      await put('store/commands.json', commandHistory(ctx, db));
      if (auditAvailable(db)) await put('store/audit.json', { verify: verifyChain(db), entries: new AuditLog(db, systemClock).tail(TABLE_ROWS) });
      for (const t of [...tables(db, 'incidents'), ...tables(db, 'health\\_%')]) await put(`store/${t}.json`, redactDoc(tableRows(db, t, TABLE_ROWS)));
    }
    await put('README.txt', `edge-agent support bundle, ${report.checkedAt}, gateway ${report.gatewayId ?? '?'}, version ${report.version}\nSecrets are redacted.\n\n${files.join('\n')}\n`);
    const tmp = join(dirname(opts.out), `.${basename(opts.out)}.${process.pid}.tmp`);
    await mkdir(dirname(opts.out), { recursive: true });
    try {
      await create({ gzip: true, file: tmp, cwd: staging, portable: true }, files);
      await chmod(tmp, 0o600);
      await rename(tmp, opts.out);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return { path: opts.out, bytes: (await stat(opts.out)).size, files };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
