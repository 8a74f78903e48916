/**
 * The `command` step's executor with real child processes: no shell ever sees an argument,
 * exit codes map to outcomes, a timeout or a cancel ends the whole process group (SIGTERM, then
 * SIGKILL for what ignores it), nothing of the group outlives the step, output is bounded and
 * secrets are masked.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { groupAlive, runCommand, type CommandOptions } from '../../maintenance/command-step.js';
import { tempDir, waitFor } from '../helpers/util.js';

const NODE = process.execPath;
let dir: string;

before(() => {
  dir = tempDir('maint-cmd');
});
after(() => rmSync(dir, { recursive: true, force: true }));

function opts(script: string, extra: Partial<CommandOptions> = {}, args: string[] = []): CommandOptions {
  return { argv: [NODE, '-e', script, ...args], okExitCodes: [0], timeoutMs: 20_000, killGraceMs: 500, maxOutputBytes: 64 * 1024, ...extra };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('an ok command: exit 0, its output, and its own process group', async () => {
  const r = await runCommand(opts("console.log('hello'); console.error('on stderr'); console.log(process.pid === require('child_process').execSync('ps -o pgid= -p ' + process.pid).toString().trim() * 1 ? 'group leader' : 'not leader')"));
  assert.equal(r.outcome, 'ok', r.output + (r.error ?? ''));
  assert.equal(r.exitCode, 0);
  assert.match(r.output, /hello\n/);
  assert.match(r.output, /on stderr\n/);
  assert.match(r.output, /group leader/);
});

test('shell metacharacters are one literal argument each: nothing is interpreted', async () => {
  const marker = join(dir, 'pwned');
  const evil = ['; touch ' + marker, '$(touch ' + marker + ')', '`touch ' + marker + '`', '&& touch ' + marker, '| tee ' + marker, "'quoted' \"double\"", 'a b  c', '*'];
  const r = await runCommand(opts('console.log(JSON.stringify(process.argv.slice(1)))', {}, evil));
  assert.equal(r.outcome, 'ok', r.output);
  assert.deepEqual(JSON.parse(r.output) as string[], evil);
  assert.equal(existsSync(marker), false, 'no shell ran anything');
});

test('exit codes map to outcomes through okExitCodes', async () => {
  const three = await runCommand(opts('process.exit(3)'));
  assert.deepEqual([three.outcome, three.exitCode], ['failed', 3]);
  const allowed = await runCommand(opts('process.exit(3)', { okExitCodes: [0, 3] }));
  assert.deepEqual([allowed.outcome, allowed.exitCode], ['ok', 3]);
  const killed = await runCommand(opts("process.kill(process.pid, 'SIGKILL')"));
  assert.deepEqual([killed.outcome, killed.exitCode, killed.signal], ['failed', null, 'SIGKILL']);
});

test('a program that cannot be started is failed with the reason, never a throw', async () => {
  const r = await runCommand({ argv: [join(dir, 'no-such-program')], okExitCodes: [0], timeoutMs: 5000, killGraceMs: 100, maxOutputBytes: 1024 });
  assert.equal(r.outcome, 'failed');
  assert.equal(r.exitCode, null);
  assert.match(r.error ?? '', /ENOENT/);
});

/** A command that ignores SIGTERM and has a child that ignores it too; writes both pids. */
function stubborn(pidFile: string): string {
  return `
    const { spawn } = require('child_process');
    const fs = require('fs');
    process.on('SIGTERM', () => console.log('parent got SIGTERM'));
    const c = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: 'ignore' });
    fs.writeFileSync(${JSON.stringify(pidFile)}, JSON.stringify([process.pid, c.pid]));
    console.log('started');
    setInterval(() => {}, 1000);`;
}

test('a timeout: SIGTERM to the group, then SIGKILL for what ignores it; nothing is left', async () => {
  const pidFile = join(dir, 'timeout-pids.json');
  const r = await runCommand(opts(stubborn(pidFile), { timeoutMs: 1500, killGraceMs: 300 }));
  assert.equal(r.outcome, 'timeout');
  assert.equal(r.signal, 'SIGKILL');
  assert.match(r.output, /started\n[\s\S]*parent got SIGTERM/);
  const [parent, child] = JSON.parse(readFileSync(pidFile, 'utf8')) as [number, number];
  await waitFor(() => !alive(parent) && !alive(child) && !groupAlive(parent), { timeoutMs: 5000, what: 'the whole group gone' });
});

test('a cancel stops a running command the same way: outcome cancelled, group gone', async () => {
  const pidFile = join(dir, 'cancel-pids.json');
  const ac = new AbortController();
  const running = runCommand(opts(stubborn(pidFile), { signal: ac.signal, killGraceMs: 300 }));
  await waitFor(() => existsSync(pidFile), { timeoutMs: 10_000, what: 'the command started' });
  ac.abort();
  const r = await running;
  assert.equal(r.outcome, 'cancelled');
  const [parent, child] = JSON.parse(readFileSync(pidFile, 'utf8')) as [number, number];
  await waitFor(() => !alive(parent) && !alive(child), { timeoutMs: 5000, what: 'the whole group gone' });
  // Already aborted before it starts: cancelled too.
  const pre = new AbortController();
  pre.abort();
  assert.equal((await runCommand(opts('setInterval(() => {}, 1000)', { signal: pre.signal }))).outcome, 'cancelled');
});

test('what the command leaves in its group (holding its output open) does not outlive the step', async () => {
  const pidFile = join(dir, 'left-pids.json');
  const r = await runCommand(
    opts(`
      const { spawn } = require('child_process');
      const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'inherit', 'inherit'] });
      require('fs').writeFileSync(${JSON.stringify(pidFile)}, JSON.stringify([c.pid]));
      console.log('parent done');
      process.exit(0);`),
  );
  assert.equal(r.outcome, 'ok');
  assert.match(r.output, /parent done/);
  const [left] = JSON.parse(readFileSync(pidFile, 'utf8')) as [number];
  await waitFor(() => !alive(left), { timeoutMs: 5000, what: 'the leftover process killed' });
});

test('output: bounded (first and last halves kept), and secrets masked, also across writes', async () => {
  const big = await runCommand(opts("process.stdout.write('BEGIN' + 'x'.repeat(300000) + 'END\\n')", { maxOutputBytes: 4096 }));
  assert.equal(big.outcome, 'ok');
  assert.equal(big.truncated, true);
  assert.ok(big.output.length < 4096 + 100, `${big.output.length} chars`);
  assert.match(big.output, /^BEGIN/);
  assert.match(big.output, /\[\.\.\. \d+ bytes left out \.\.\.\]/);
  assert.match(big.output, /END\n$/);

  const secret = 'hunter2-S3cr3t';
  const r = await runCommand(
    opts(`process.stdout.write('user=alice pass=' + ${JSON.stringify(secret.slice(0, 6))}); setTimeout(() => { process.stdout.write(${JSON.stringify(secret.slice(6))} + '\\npassword=abc123 token: xyz\\n'); }, 100);`, { secrets: [secret] }),
  );
  assert.equal(r.outcome, 'ok');
  assert.doesNotMatch(r.output, /hunter2|S3cr3t|abc123|xyz/);
  assert.match(r.output, /pass=\[redacted\]/);
  assert.match(r.output, /password=\[redacted\]/);

  // A secret cut by the seam of a truncated output does not leak a part of it either.
  const seam = await runCommand(opts(`process.stdout.write('a'.repeat(2045) + ${JSON.stringify(secret)} + 'b'.repeat(10000))`, { maxOutputBytes: 4096, secrets: [secret] }));
  assert.equal(seam.truncated, true);
  assert.doesNotMatch(seam.output, /hun|ter2/);
});

test('the environment is minimal: the agent\'s own variables are not inherited', async () => {
  process.env.EDGE_AGENT_TEST_SECRET = 'do-not-pass';
  try {
    const r = await runCommand(opts('console.log(JSON.stringify(process.env))', { env: { EXTRA: '1' } }));
    const env = JSON.parse(r.output) as Record<string, string>;
    assert.equal(env.EDGE_AGENT_TEST_SECRET, undefined);
    assert.equal(env.EXTRA, '1');
    assert.ok(env.PATH);
  } finally {
    delete process.env.EDGE_AGENT_TEST_SECRET;
  }
});
