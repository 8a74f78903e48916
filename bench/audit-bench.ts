/**
 * `--only audit`: the audit trail's cost (core/audit.ts, docs/audit.md).
 *   - append rate: entries/s, each its own durable commit (synchronous = FULL) with the hash
 *     chain (read the head, hash, insert), against a plain INSERT of the same row, also one durable
 *     commit each, into the same schema in another file of the same directory, in the same run;
 *   - `edge-agent audit --verify` over 1,000,000 entries, spawn to exit (goal: under 10 s), against
 *     a plain scan of the same table (every row read, in-process) in the same run.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { openDatabase } from '../lib/sqlite.js';
import { systemClock } from '../lib/clock.js';
import { AUDIT_MIGRATIONS, AuditLog, GENESIS, entryHash } from '../core/audit.js';
import { DIST, spawnNode } from './proc.js';
import { measurement, type Measurement } from './report.js';

const CLI = join(DIST, 'agent', 'cli', 'index.js');

export interface AuditBenchOptions {
  runs: number;
  appends: number;
  entries: number;
}

export interface AuditPhase {
  append: { audit: number[]; plain: number[] };
  verify: { cli: number[]; scan: number[]; inProcess: number[]; exitCodes: number[] };
  entries: number;
}

function appendRate(dir: string, n: number): { audit: number; plain: number } {
  const a = openDatabase(join(dir, `a-${n}-${Math.random()}.db`), { migrations: [AUDIT_MIGRATIONS] });
  const p = openDatabase(join(dir, `p-${n}-${Math.random()}.db`), { migrations: [AUDIT_MIGRATIONS] });
  try {
    const log = new AuditLog(a, systemClock);
    const details = { command: 'c-0000', reason: 'invalid-params' };
    let t0 = performance.now();
    for (let i = 0; i < n; i++) log.append({ actor: `wms:c-${i}`, action: 'diagnostics', outcome: 'successful', details });
    const audit = n / ((performance.now() - t0) / 1000);
    const ins = p.prepare('INSERT INTO audit_log(seq, at, actor, action, target, outcome, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const dj = JSON.stringify(details);
    t0 = performance.now();
    for (let i = 0; i < n; i++) ins.run(i + 1, new Date().toISOString(), `wms:c-${i}`, 'diagnostics', null, 'successful', dj, GENESIS, GENESIS);
    const plain = n / ((performance.now() - t0) / 1000);
    return { audit, plain };
  } finally {
    a.close();
    p.close();
  }
}

/** A valid chain of `n` entries written in one transaction (the rows verify reads, made fast). */
function fill(path: string, n: number): void {
  const db = openDatabase(path, { migrations: [AUDIT_MIGRATIONS] });
  const ins = db.prepare('INSERT INTO audit_log(seq, at, actor, action, target, outcome, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const base = Date.parse('2026-01-01T00:00:00Z');
  db.transaction(() => {
    let prev = GENESIS;
    for (let seq = 1; seq <= n; seq++) {
      const at = new Date(base + seq * 1000).toISOString();
      const actor = `wms:cmd-${seq}`;
      const details = JSON.stringify({ command: `cmd-${seq}` });
      const hash = entryHash({ seq, at, actor, action: 'diagnostics', target: null, outcome: 'successful', details, prevHash: prev });
      ins.run(seq, at, actor, 'diagnostics', null, 'successful', details, prev, hash);
      prev = hash;
    }
  })();
  db.close();
}

export async function auditPhase(opts: AuditBenchOptions, log: (s: string) => void): Promise<AuditPhase> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-audit-'));
  const out: AuditPhase = { append: { audit: [], plain: [] }, verify: { cli: [], scan: [], inProcess: [], exitCodes: [] }, entries: opts.entries };
  try {
    for (let i = 0; i < opts.runs; i++) {
      const r = appendRate(dir, opts.appends);
      out.append.audit.push(r.audit);
      out.append.plain.push(r.plain);
      log(`audit append: ${r.audit.toFixed(0)} entries/s vs plain insert ${r.plain.toFixed(0)}/s`);
    }
    const dataDir = join(dir, 'data');
    log(`audit: writing a chain of ${opts.entries} entries`);
    fill(join(dataDir, 'agent.db'), opts.entries);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, stringify({ gatewayId: 'bench-audit', dataDir, mqtt: { url: 'mqtt://127.0.0.1:1' } }));
    for (let i = 0; i < opts.runs; i++) {
      const db = openDatabase(join(dataDir, 'agent.db'), { readonly: true });
      let t0 = performance.now();
      let rows = 0;
      let bytes = 0;
      for (const r of db.prepare<[], { hash: string }>('SELECT * FROM audit_log ORDER BY seq').iterate()) {
        rows++;
        bytes += r.hash.length;
      }
      if (bytes === 0 && rows > 0) throw new Error('audit bench: empty hashes');
      out.verify.scan.push(performance.now() - t0);
      t0 = performance.now();
      const ok = new AuditLog(db, systemClock).verify().ok;
      out.verify.inProcess.push(performance.now() - t0);
      db.close();
      if (rows !== opts.entries || !ok) throw new Error(`audit bench: ${rows} rows, verify ${ok}`);
      t0 = performance.now();
      const c = spawnNode(CLI, ['audit', '--verify', '--config', config]);
      const code = await c.exited;
      out.verify.cli.push(performance.now() - t0);
      out.verify.exitCodes.push(Number(code));
      log(`audit --verify over ${opts.entries}: ${out.verify.cli.at(-1)!.toFixed(0)} ms (exit ${code}) vs plain scan ${out.verify.scan.at(-1)!.toFixed(0)} ms`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

export function auditMeasurements(p: AuditPhase): Measurement[] {
  return [
    measurement({
      id: 'audit-append',
      title: 'audit append, one durable commit each (hash chain)',
      unit: 'entries/s',
      samples: p.append.audit,
      reference: { name: 'plain SQLite insert, one durable commit each', samples: p.append.plain },
    }),
    measurement({
      id: 'audit-verify',
      title: `edge-agent audit --verify over ${p.entries} entries (spawn to exit)`,
      unit: 'ms',
      samples: p.verify.cli,
      reference: { name: 'plain scan of the same table, in-process', samples: p.verify.scan },
      goal: { op: '<', value: 10_000 },
      details: { verifyInProcessMs: p.verify.inProcess, exitCode: p.verify.exitCodes },
    }),
  ];
}
