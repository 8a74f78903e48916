/**
 * The built-in actions of the monthly and weekly reviews (docs/maintenance.md): `trend-report`
 * (health/perf-review.ts over the store's hour rollups and incidents), `security-review`
 * (maintenance/security-review.ts over the modes and owners stat'ed here) and `restore-test`
 * (recovery/restore-test.ts). The verdicts are pure and live below; this file only gathers what
 * they read. None of them changes anything but the restore test's own temporary directory.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { storePath, type AgentConfig } from '../core/config.js';
import type { Clock } from '../lib/clock.js';
import { secretValues } from '../lib/redact.js';
import type { Db } from '../lib/sqlite.js';
import { perfReview, readHourRollups } from '../health/perf-review.js';
import type { ActionImpls, ActionResult } from '../maintenance/actions.js';
import { shippedProceduresDir } from '../maintenance/catalog.js';
import { reviewFiles, reviewMessage, type FileFacts, type ReviewKind } from '../maintenance/security-review.js';
import { IncidentStore } from '../recovery/incidents.js';
import { restoreTestOffThread } from '../recovery/restore-test.js';

const DAY = 86_400_000;

export interface ReviewDeps {
  config: AgentConfig;
  configPath: string | undefined;
  db: Db;
  clock: Clock;
}

/** The stat facts of `path`, or undefined when it does not exist. */
function facts(path: string, what: string, kind: ReviewKind, secret: boolean): FileFacts | undefined {
  try {
    const st = statSync(path);
    return { path, what, kind, secret, mode: st.mode, uid: st.uid, gid: st.gid, isDirectory: st.isDirectory() };
  } catch {
    return undefined;
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).map((n) => join(dir, n));
  } catch {
    return [];
  }
}

/** Every file under `dir` (not following links), depth first. */
function walk(dir: string, depth = 3): string[] {
  if (depth < 0) return [];
  return list(dir).flatMap((p) => {
    try {
      return statSync(p).isDirectory() ? [p, ...walk(p, depth - 1)] : [p];
    } catch {
      return [];
    }
  });
}

const mentionsSecret = (path: string): boolean => {
  try {
    return /(password|secret|token|private key)\s*[:=-]/i.test(readFileSync(path, 'utf8'));
  } catch {
    return false;
  }
};

/** What the security review looks at: the configuration, keys, certificates, procedures and the data directory. */
export function reviewedFiles(config: AgentConfig, configPath: string | undefined): FileFacts[] {
  const out: (FileFacts | undefined)[] = [];
  const configSecret = secretValues(config).size > 0;
  if (configPath) out.push(facts(configPath, '--config', 'configuration', configSecret));
  const tls = config.mqtt.tls;
  if (tls.key) out.push(facts(tls.key, 'mqtt.tls.key', 'private-key', true));
  if (tls.cert) out.push(facts(tls.cert, 'mqtt.tls.cert', 'certificate', false));
  if (tls.ca) out.push(facts(tls.ca, 'mqtt.tls.ca', 'certificate', false));
  out.push(facts(config.ota.trustAnchors, 'ota.trustAnchors', 'certificate', false));
  if (config.plcBridge.config) out.push(facts(config.plcBridge.config, 'plcBridge.config', 'configuration', mentionsSecret(config.plcBridge.config)));
  // The gateway's own keys and certificates (agent/certificates.ts keeps them here).
  for (const p of list(join(config.dataDir, 'certs'))) out.push(/\.key$/.test(p) ? facts(p, 'certs', 'private-key', true) : facts(p, 'certs', 'certificate', false));
  // Known-good copies of the configuration hold what it holds.
  for (const p of walk(join(config.dataDir, 'known-good'))) {
    const f = facts(p, 'known-good copy', 'configuration', configSecret && !/\.sha256$|\/source$/.test(p));
    if (f && !f.isDirectory) out.push(f);
  }
  for (const dir of [config.maintenance.proceduresDir, shippedProceduresDir()]) {
    out.push(facts(dir, 'procedures directory', 'procedure', false));
    for (const p of list(dir).filter((x) => /\.ya?ml$/.test(x))) out.push(facts(p, 'procedure', 'procedure', false));
  }
  out.push(facts(config.dataDir, 'data directory', 'directory', false));
  for (const p of list(config.dataDir)) {
    const f = facts(p, 'data', 'data', false);
    if (f && !f.isDirectory) out.push(f);
  }
  return out.filter((f): f is FileFacts => f !== undefined);
}

export function reviewActions(d: ReviewDeps): ActionImpls {
  const ok = (message: string, details: Record<string, unknown>): ActionResult => ({ ok: true, message, details });
  return {
    'trend-report': async (a) => {
      const days = a.days as number;
      const now = d.clock.now();
      const rows = readHourRollups(d.db, now - 2 * days * DAY, now);
      const store = new IncidentStore(d.db);
      const incidents = store.available() ? store.list({ since: now - 2 * days * DAY, limit: 100_000 }).map((i) => ({ at: Date.parse(i.at), component: i.component, action: i.action })) : [];
      const review = perfReview(rows, incidents, days, now);
      const c = review.components.find((x) => x.component === 'agent');
      const mem = c?.rows.find((r) => r.measure === 'memory avg');
      return ok(
        `${days}-day review of ${review.hours.current} hours of history (${review.hours.previous} hours the ${days} days before), ${review.components.length} components${mem?.current !== null && mem?.current !== undefined ? `; agent memory avg ${mem.current} MB${mem.previous !== null ? ` (was ${mem.previous} MB)` : ''}` : ''}`,
        review as unknown as Record<string, unknown>,
      );
    },
    'security-review': async () => {
      const files = reviewedFiles(d.config, d.configPath);
      const s = reviewFiles(files, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
      return { ok: s.ok, message: reviewMessage(s), details: { ...s, files: files.map((f) => f.path) } };
    },
    'restore-test': async () => {
      const configs = [d.configPath, d.config.plcBridge.config].filter((p): p is string => typeof p === 'string');
      const r = await restoreTestOffThread({ dataDir: d.config.dataDir, livePath: storePath(d.config), live: d.db, configs });
      const tables = r.store?.tables.length ?? 0;
      const msg = r.ok
        ? `restored ${r.store?.backup ?? '?'} (${r.store?.bytes ?? 0} bytes, ${tables} tables) into a temporary directory: integrity_check ok; ${r.configs.filter((c) => c.copy).length} known-good configuration copies match their sha256; the directory is removed`
        : `the restore test failed: ${r.problems.slice(0, 3).join('; ')}`;
      return { ok: r.ok, message: msg, details: r as unknown as Record<string, unknown> };
    },
  };
}
