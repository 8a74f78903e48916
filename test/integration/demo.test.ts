/**
 * `npm run demo` end to end: the real demo script, as a child process, with its embedded broker,
 * a simulated PLC in a child process, the agent installed into a temp A/B root and run by the
 * real boot guard, the PLC bridge its watchdog starts, its restart through the guard, the admin
 * CLI, a signed self-update that commits and one that fails its health gate and rolls back.
 * Checks the exit status, the statuses the WMS saw, the PLC data and writes, the bridge handed
 * over to each release with no seq gap, that the logs went through pino-pretty, that neither the
 * guard, any agent, any bridge nor the PLC outlives the demo, and that its temp dir is gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { alive } from '../helpers/ota-root.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DEMO = join(REPO, 'dist', 'demo', 'run.js');
/** The demo updates this release to the next minor version, then tries the one after. */
const V1 = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const V2 = semver.inc(V1, 'minor')!;
const V3 = semver.inc(V2, 'minor')!;
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Run {
  code: number | string | null;
  stdout: string;
  stderr: string;
}

function runDemo(timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env, NO_COLOR: '1' };
    execFile(process.execPath, [DEMO], { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err.code ?? err.signal ?? null), stdout, stderr });
    });
  });
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  // alive(): a zombie waiting for a parent that is not ours to reap counts as gone.
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

test('npm run demo: every expected status arrives, the agent restarts and updates itself, PLC data flows without a gap, and everything stops', { timeout: 120_000 }, async () => {
  const run = await runDemo(110_000);
  const out = run.stdout;
  const why = `exit ${String(run.code)}\n--- stdout ---\n${out}\n--- stderr ---\n${run.stderr}`;
  assert.equal(run.code, 0, why);
  assert.doesNotMatch(run.stderr, /DEMO FAILED/, why);

  // The terminal statuses, as the WMS printed them.
  assert.match(out, /WMS <- res\/d-1\s+diagnostics\s+successful\s+\{daemon: running/, why);
  assert.match(out, /WMS <- res\/d-1\s+diagnostics\s+successful .*\(sent again\)/, why);
  assert.match(out, /WMS <- res\/u-1\s+teleport\s+rejected\s+unknown-op:/, why);
  assert.match(out, /WMS <- res\/j-1\s+diagnostics\s+rejected\s+invalid-json:/, why);
  assert.match(out, /WMS <- res\/x-1\s+diagnostics\s+rejected\s+expired:/, why);
  assert.match(out, /WMS <- events\s+note\/info\s+demo-note: /, why);
  assert.match(out, /cli\s+│ daemon\s+running \(pid \d+\)/, why);

  // The restart: reported successful by a different process, which answered d-2.
  const restart = /WMS <- res\/r-1\s+restart\s+successful\s+\{component: agent, previousPid: (\d+), pid: (\d+)\}/.exec(out);
  assert.ok(restart, why);
  const [, oldPid, newPid] = restart;
  assert.notEqual(oldPid, newPid);
  assert.match(out, new RegExp(`WMS <- res/d-2\\s+diagnostics\\s+successful\\s+\\{daemon: running, pid: ${newPid},`), why);
  // ... and the restart went through the boot guard: exit 75, started again at once.
  assert.match(out, new RegExp(`old pid ${oldPid} exited with 75 \\(restart-requested\\) -> the guard started pid ${newPid}`), why);

  // The update to the next version: every step, the right result, the agent back online from slot B.
  assert.match(out, new RegExp(`WMS <- res/up-1\\s+update\\s+successful\\s+\\{fromVersion: ${esc(V1)}, toVersion: ${esc(V2)}, slot: B, rolledBack: false\\}`), why);
  assert.match(out, /progress: download \d+% → verify → install( \d+%)* → activate → health-check → commit\n/, why);
  assert.match(out, /guard: agent of slot A exited 75 \(restart-requested\) → pid \d+ started from slot B on trial → slot B committed/, why);
  assert.match(out, new RegExp(`cli\\s+│ B  ${esc(V2)}  committed, active`), why);

  // The unhealthy release: activated on trial in slot A, its gate failed, rolled back to V2 in B.
  assert.match(out, new RegExp(`WMS <- res/up-2\\s+update\\s+failed\\s+rolled-back: ${esc(V3)}: health gate failed`), why);
  assert.match(out, new RegExp(`result: \\{fromVersion: ${esc(V2)}, toVersion: ${esc(V3)}, slot: B, rolledBack: true\\}`), why);
  assert.match(out, /progress: download \d+% → verify → install( \d+%)* → activate → health-check → rollback\n/, why);
  assert.match(out, new RegExp(`WMS <- status\\s+updating\\s+v${esc(V3)} slot A`), why);
  assert.doesNotMatch(out, new RegExp(`WMS <- status\\s+online\\s+v${esc(V3)}`), why);
  assert.match(out, new RegExp(`cli\\s+│ A  ${esc(V3)}  bad  \\(.*reason: health gate failed`), why);
  assert.match(out, new RegExp(`cli\\s+│ \\S+  slot A  fail-trial\\s+${esc(V3)}`), why);
  assert.match(out, /cli\s+│ \S+  cmd\s+update\s+failed rolled-back\s+id up-2/, why);
  // The last status before the demo stopped it: V2 online in slot B.
  const states = [...out.matchAll(/WMS <- status\s+(\w+)\s+v(\S+) slot (\w)/g)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
  assert.deepEqual(states.slice(-2), [`online ${V2} B`, `offline ${V2} B`], why);

  // The agent's pino JSON was made readable, not passed through raw.
  assert.match(out, /agent │ \[[\d:.]+\] INFO \(\d+\): agent ready/, why);
  assert.match(out, /guard │ \[[\d:.]+\] INFO \(\d+\): agent of slot A started/, why);
  assert.doesNotMatch(out, /"level":\d+/, why);

  // The PLC bridge, started by the agent's watchdog: its status, values of both groups, summed up once a second.
  assert.match(out, new RegExp(`WMS <- plc/status\\s+online\\s+v${esc(V1)} session \\S+ sorter1 up`), why);
  assert.match(out, /WMS <- plc\/sorter1\s+fast #\d+ speed=-?[\d.]+ ramp=\d+ │ slow #\d+ counter=\d+ running=(true|false) jam=(true|false) setpoint=\d+ enable=(true|false) label="[^"]*"\s+\(\d+ msgs/, why);
  // A write with its read-back, then the same values in the data; a write to a read-only tag rejected.
  assert.match(out, /WMS <- res\/w-1\s+set\s+successful\s+read back setpoint=1200 enable=true jam=true label="LANE-7"/, why);
  assert.match(out, /slow #\d+ counter=\d+ running=\w+ jam=true setpoint=1200 enable=true label="LANE-7"/, why);
  assert.match(out, /WMS <- res\/w-2\s+set\s+rejected\s+read-only: /, why);
  // Values keep arriving while the updates restart the agent.
  const updates = out.slice(out.indexOf('== 10.'), out.indexOf('== PLC data report'));
  assert.ok((updates.match(/WMS <- plc\/sorter1 /g) ?? []).length >= 5, `values shown during the updates\n${why}`);
  // The bridge handed over to 1.1.0 in slot B, then to the unhealthy 1.2.0 in A, then back to B.
  assert.match(out, new RegExp(`bridge│ handed over: pid \\d+ \\(slots/A\\) → pid \\d+ \\(slots/B, v${esc(V2)}\\)`), why);
  assert.match(out, new RegExp(`PLC bridge handovers: pid \\d+ \\(slot B, v${esc(V2)}\\) → pid \\d+ \\(slot A, v${esc(V3)}\\) → pid \\d+ \\(slot B, v${esc(V2)}\\)`), why);
  // The data report: both groups, no seq gap and no bridge restart through all of it.
  for (const group of ['fast', 'slow']) {
    const row = new RegExp(`plc/sorter1/${group}\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\.\\.(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+\\d+ ms`).exec(out);
    assert.ok(row, `data report row for ${group}\n${why}`);
    const [, messages, , first, last, gaps, restarts] = row.map(Number);
    assert.ok(messages! >= (group === 'fast' ? 50 : 10), `${group}: ${messages} messages`);
    assert.equal(first, 1, `${group}: one session from seq 1`);
    assert.ok(last! >= messages! - 2, `${group}: seq ${first}..${last} for ${messages} messages`);
    assert.equal(gaps, 0, `${group}: seq gaps`);
    assert.equal(restarts, 0, `${group}: bridge restarts`);
  }

  assert.match(out, /== summary/, why);
  assert.match(out, /WMS <- status\s+offline/, why);
  // Neither the guard nor any agent it started outlives the demo; the temp install root is gone.
  const stopped = /guard pid (\d+) exited with 0; agent pids ([\d, ]+): all exited/.exec(out);
  assert.ok(stopped, why);
  const spawned = [...out.matchAll(/"event":"spawned","slot":"[AB]","childPid":(\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(stopped[2]!.split(', ').map(Number), spawned, why);
  assert.ok(spawned.length >= 5, `expected at least 5 agent starts (first, restart, 1.1.0, 1.2.0, back): ${spawned.join(', ')}`);
  for (const pid of [Number(stopped[1]), ...spawned]) assert.equal(await waitGone(pid, 5000), true, `pid ${pid} still runs after the demo exited`);
  // Nor any bridge process (the first, and each successor of a handover), nor the simulated PLC.
  const bridges = /bridge pids ([\d, ]+): all exited/.exec(out);
  assert.ok(bridges, why);
  const bridgePids = bridges[1]!.split(', ').map(Number);
  assert.ok(bridgePids.length >= 4, `expected at least 4 bridge processes (first, 1.1.0, 1.2.0, back): ${bridgePids.join(', ')}`);
  const plcPid = /PLC simulator pid (\d+) exited/.exec(out);
  assert.ok(plcPid, why);
  for (const pid of [...bridgePids, Number(plcPid[1])]) assert.equal(await waitGone(pid, 5000), true, `pid ${pid} still runs after the demo exited`);
  assert.match(out, /WMS <- plc\/status\s+offline/, why);
  const work = /installed into (\S+)\/root:/.exec(out)?.[1];
  assert.ok(work, why);
  assert.equal(existsSync(work), false, `the demo left ${work} behind`);
});
