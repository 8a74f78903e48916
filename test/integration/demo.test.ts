/**
 * `npm run demo` end to end: the real demo script, as a child process, with its embedded broker,
 * the real daemon, its self-restart and the admin CLI. Checks the exit status, the statuses the
 * WMS saw, that the agent's log went through pino-pretty, and that no agent outlives the demo.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEMO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo', 'run.js');

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

/** Gone, or a zombie waiting for a parent that is not ours to reap. */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!gone(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

test('npm run demo: every expected status arrives, the agent restarts, and everything stops', { timeout: 70_000 }, async () => {
  const run = await runDemo(60_000);
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

  // The agent's pino JSON was made readable, not passed through raw.
  assert.match(out, /agent │ \[[\d:.]+\] INFO \(\d+\): agent ready/, why);
  assert.doesNotMatch(out, /"level":\d+/, why);

  assert.match(out, /== summary/, why);
  assert.match(out, /WMS <- status\s+offline/, why);
  // The detached replacement must not outlive the demo.
  assert.equal(await waitGone(Number(newPid), 5000), true, `replacement agent pid ${newPid} still runs after the demo exited`);
  assert.equal(await waitGone(Number(oldPid), 5000), true, `first agent pid ${oldPid} still runs after the demo exited`);
});
