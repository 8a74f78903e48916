/**
 * `edge-agent maintenance list|show|validate`, spawned for real with no daemon running: real
 * procedure files in a temp directory (valid, invalid, unsafe, an override of a shipped one),
 * human and --json output, and the documented exit statuses.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { REPO, runCli } from '../helpers/agent.js';
import { tempDir } from '../helpers/util.js';

let dir: string;
let procs: string;
let config: string;
const SPOOL = readFileSync(join(REPO, 'docs', 'maintenance.md'), 'utf8').match(/^```yaml\n([\s\S]*?)^```$/m)![1]!;

function put(name: string, text: string, mode = 0o644): string {
  const f = join(procs, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

before(() => {
  dir = tempDir('cli-maint');
  chmodSync(dir, 0o755);
  procs = join(dir, 'procedures');
  mkdirSync(procs, { mode: 0o755 });
  chmodSync(procs, 0o755);
  mkdirSync(join(dir, 'data'));
  config = join(dir, 'config.yaml');
  writeFileSync(config, stringify({ gatewayId: 'gw-maint', dataDir: join(dir, 'data'), maintenance: { proceduresDir: procs } }));
  put('spool-repair.yaml', SPOOL);
  put('broken.yaml', stringify({ id: 'broken', name: 'Broken', steps: [{ id: 'a', type: 'command', argv: ['rm', '-rf', '{{params.path}}'] }, { id: 'a', type: 'wait' }] }));
  put('open.yaml', stringify({ id: 'open', name: 'Open to all', steps: [{ id: 'a', type: 'log', message: 'hi' }] }), 0o666);
  put('gateway-health-check.yaml', stringify({ id: 'gateway-health-check', name: 'Site health check', steps: [{ id: 'snap', type: 'snapshot' }] }));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('list: every procedure with its status and problems; exit 1 while one is invalid or unsafe', async () => {
  const r = await runCli(['maintenance', 'list', '--config', config]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^spool-repair\s+valid\s+operator\s+repair, medium, disruptive: Repair the label printer spool$/m);
  assert.match(r.stdout, /^broken\s+invalid\s+operator/m);
  assert.match(r.stdout, /^ {4}steps\[0\]\.argv\[0\]: the program must be an absolute path/m);
  assert.match(r.stdout, /^ {4}steps\[0\]\.argv\[2\]: \{\{params\.path\}\} names no declared parameter/m);
  assert.match(r.stdout, /^ {4}steps\[1\]\.id: the step id a is already used by steps\[0\]/m);
  assert.match(r.stdout, /^ {4}steps\[1\]\.seconds: /m);
  assert.match(r.stdout, /^open\s+unsafe\s+operator/m);
  assert.match(r.stdout, /writable by anyone \(mode 0666\)/);
  assert.match(r.stdout, /^gateway-health-check\s+valid\s+operator\s+.*Site health check\s+\(replaces the shipped one\)$/m);

  const j = await runCli(['maintenance', 'list', '--json', '--config', config]);
  assert.equal(j.code, 1);
  const doc = JSON.parse(j.stdout) as { proceduresDir: string; procedures: { id: string; status: string; source: string; definitionSha256: string; overrides?: string; problems: { file: string; path: string }[] }[] };
  assert.equal(doc.proceduresDir, procs);
  assert.deepEqual(doc.procedures.map((p) => [p.id, p.status]), [
    ['broken', 'invalid'],
    ['broker-triage', 'valid'],
    ['diagnostic-full', 'valid'],
    ['disk-pressure-repair', 'valid'],
    ['gateway-health-check', 'valid'],
    ['maintenance-daily', 'valid'],
    ['maintenance-monthly', 'valid'],
    ['maintenance-weekly', 'valid'],
    ['open', 'unsafe'],
    ['plc-bridge-repair', 'valid'],
    ['spool-repair', 'valid'],
    ['store-backup', 'valid'],
    ['store-check', 'valid'],
  ]);
  const spool = doc.procedures.find((p) => p.id === 'spool-repair')!;
  assert.equal(spool.definitionSha256, createHash('sha256').update(readFileSync(join(procs, 'spool-repair.yaml'))).digest('hex'));
  assert.match(doc.procedures.find((p) => p.id === 'gateway-health-check')!.overrides ?? '', /dist\/maintenance\/procedures\/gateway-health-check\.yaml$/);
  assert.ok(doc.procedures.find((p) => p.id === 'broken')!.problems.every((p) => p.file === join(procs, 'broken.yaml')));

  // Once the broken and open files are gone (or fixed), all is valid: exit 0.
  rmSync(join(procs, 'broken.yaml'));
  chmodSync(join(procs, 'open.yaml'), 0o644);
  const ok = await runCli(['maintenance', 'list', '--config', config]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  put('broken.yaml', 'id: broken\nname: [unclosed\n');
  chmodSync(join(procs, 'open.yaml'), 0o666);
});

test('show: a valid procedure in full; an invalid one with its problems (exit 1); an unknown id (exit 2)', async () => {
  const r = await runCli(['maintenance', 'show', 'spool-repair', '--config', config]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ {2}queue: string, pattern \^\[a-z0-9-\]\{1,32\}\$, length 0\.\.1024, default "labels"$/m);
  assert.match(r.stdout, /^ {7}\/usr\/local\/bin\/spool-clean --queue \{\{params\.queue\}\} --days \{\{params\.maxAgeDays\}\}$/m);
  assert.match(r.stdout, /^ {2}1\. stop {2}command {2}"Stop the spooler" {2}\[side effects, on failure: rollback, timeout 30 s\]$/m);
  assert.match(r.stdout, /^rollback:\n {2}1\. start-again/m);
  assert.match(r.stdout, /^schedule: 0 3 \* \* 0 \(Europe\/Madrid\)/m);
  const j = await runCli(['maintenance', 'show', 'spool-repair', '--json', '--config', config]);
  const doc = JSON.parse(j.stdout) as { status: string; procedure: { steps: unknown[]; params: Record<string, unknown> } };
  assert.equal(doc.status, 'valid');
  assert.equal(doc.procedure.steps.length, 4);
  assert.deepEqual(doc.procedure.params.maxAgeDays, { type: 'integer', min: 1, max: 365, default: 7 });

  const bad = await runCli(['maintenance', 'show', 'open', '--config', config]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /writable by anyone/);
  assert.match(bad.stderr, /unsafe-procedure/);
  const unknown = await runCli(['maintenance', 'show', 'no-such', '--config', config]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown-procedure: no procedure "no-such" on this gateway \(there are: broken, broker-triage, diagnostic-full, disk-pressure-repair, gateway-health-check, maintenance-daily, maintenance-monthly, maintenance-weekly, open, plc-bridge-repair, spool-repair, store-backup, store-check\)/);
});

test('validate: a file not installed; every problem on stderr with its key path; the exit statuses', async () => {
  const work = join(dir, 'drafts');
  mkdirSync(work);
  writeFileSync(join(work, 'spool-repair.yaml'), SPOOL);
  const ok = await runCli(['maintenance', 'validate', join(work, 'spool-repair.yaml')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /valid procedure spool-repair \(4 steps, sha256 [0-9a-f]{64}\)/);

  writeFileSync(join(work, 'draft.yaml'), SPOOL.replace('"{{params.queue}}"', '"--queue={{params.queue}}"').replace('maxDurationSec: 600', 'maxDurationSec: -1'));
  const bad = await runCli(['maintenance', 'validate', join(work, 'draft.yaml')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid-procedure: .*draft\.yaml \(3 problems\)/);
  assert.match(bad.stderr, /^ {2}id: the id "spool-repair" must be the file's name \(draft\.yaml\)$/m);
  assert.match(bad.stderr, /^ {2}maxDurationSec: /m);
  assert.match(bad.stderr, /^ {2}steps\[1\]\.argv\[2\]: a parameter is used only as a whole string/m);
  const j = await runCli(['maintenance', 'validate', join(work, 'draft.yaml'), '--json']);
  assert.equal(j.code, 1);
  const doc = JSON.parse(j.stdout) as { ok: boolean; problems: { path: string }[]; definitionSha256: string };
  assert.equal(doc.ok, false);
  assert.deepEqual(doc.problems.map((p) => p.path).sort(), ['id', 'maxDurationSec', 'steps[1].argv[2]']);
  assert.equal(doc.definitionSha256, createHash('sha256').update(readFileSync(join(work, 'draft.yaml'))).digest('hex'));

  const missing = await runCli(['maintenance', 'validate', join(work, 'nope.yaml')]);
  assert.equal(missing.code, 66);
  assert.match(missing.stderr, /cannot read/);
});

test('--help, usage errors, schedule and run with no daemon, and an invalid configuration', async () => {
  const help = await runCli(['maintenance', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /edge-agent maintenance validate FILE \[--json\]/);
  assert.match(help.stdout, /edge-agent maintenance run ID \[--dry-run\] \[--param K=V\]/);
  assert.equal((await runCli(['maintenance'])).code, 64);
  // schedule reads the files, the config and the store: it works with no daemon.
  const sched = await runCli(['maintenance', 'schedule', '--config', config]);
  assert.equal(sched.code, 0, sched.stderr);
  assert.match(sched.stdout, /^spool-repair\s+0 3 \* \* 0 Europe\/Madrid\s+\S+\s+-\s+never ran\s+\(disruptive\)$/m);
  // run asks the daemon: none runs here.
  const run = await runCli(['maintenance', 'run', 'spool-repair', '--config', config]);
  assert.equal(run.code, 3);
  assert.match(run.stderr, /the daemon is not running/);
  // reports read the store: none yet.
  const reps = await runCli(['maintenance', 'reports', '--json', '--config', config]);
  assert.equal(reps.code, 0, reps.stderr);
  assert.deepEqual(JSON.parse(reps.stdout), { reports: [] });
  assert.equal((await runCli(['maintenance', 'report', 'nope', '--config', config])).code, 2);
  assert.equal((await runCli(['maintenance', 'show', '--config', config])).code, 64);
  const badConfig = join(dir, 'bad-config.yaml');
  writeFileSync(badConfig, stringify({ gatewayId: 'gw', maintenance: { proceduresDir: 5 } }));
  const r = await runCli(['maintenance', 'list', '--config', badConfig]);
  assert.equal(r.code, 78);
  assert.match(r.stderr, /maintenance\.proceduresDir/);
});
