/**
 * The real `edge-agent` binary with invalid configuration (CONTRACT.md section 5): `run` exits 78
 * (EX_CONFIG) naming every problem on stderr and starts nothing; `--help` works everywhere;
 * usage errors exit 64 (EX_USAGE) with a message.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/agent.js';
import { tempDir } from '../helpers/util.js';

/** A temp dir with `config.yaml` holding `text`, and the data dir that text may name (not created). */
function configFile(text: (dataDir: string) => string): { path: string; dataDir: string } {
  const dir = tempDir('agent-config-');
  const dataDir = join(dir, 'data');
  const path = join(dir, 'config.yaml');
  writeFileSync(path, text(dataDir));
  return { path, dataDir };
}

function assertNothingStarted(dataDir: string, r: { stdout: string; stderr: string }): void {
  assert.equal(existsSync(join(dataDir, 'agent.db')), false, 'no state store was created');
  assert.equal(existsSync(join(dataDir, 'agent.sock')), false, 'no admin socket was created');
  assert.equal(r.stdout, '', `nothing was logged: the daemon did not start\n${r.stdout}`);
}

describe('edge-agent run with an invalid configuration', () => {
  test('several bad values at once: exit 78 and every key path on stderr', async () => {
    const { path, dataDir } = configFile(
      (d) => `gatewayId: 'bad id!'
dataDir: ${JSON.stringify(d)}
mqtt:
  url: 'http://x'
  keepaliveSec: 1
outbox:
  inflight: 0
bogusKey: 1
`,
    );
    const r = await runCli(['run', '--config', path]);
    assert.equal(r.code, 78, r.stderr);
    for (const key of ['gatewayId', 'mqtt.url', 'mqtt.keepaliveSec', 'outbox.inflight', 'bogusKey']) {
      assert.ok(r.stderr.includes(key), `stderr names ${key}:\n${r.stderr}`);
    }
    assert.match(r.stderr, /5 problems/);
    assertNothingStarted(dataDir, r);
  });

  test('invalid YAML syntax: exit 78 and the message names the file', async () => {
    const { path, dataDir } = configFile((d) => `dataDir: ${JSON.stringify(d)}\nmqtt: {url: "mqtt://127.0.0.1:1"\n`);
    const r = await runCli(['run', '--config', path]);
    assert.equal(r.code, 78, r.stderr);
    assert.ok(r.stderr.includes(path), `stderr names ${path}:\n${r.stderr}`);
    assert.match(r.stderr, /YAML/);
    assertNothingStarted(dataDir, r);
  });

  test('a YAML list instead of a mapping: exit 78', async () => {
    const { path, dataDir } = configFile(() => '- gatewayId\n- dataDir\n');
    const r = await runCli(['run', '--config', path, '--data-dir', dataDir]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /mapping/);
    assertNothingStarted(dataDir, r);
  });

  test('a missing explicit --config file: exit 78 and "does not exist"', async () => {
    const missing = join(tempDir('agent-config-'), 'nope.yaml');
    const r = await runCli(['run', '--config', missing]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /does not exist/);
    assert.ok(r.stderr.includes(missing), r.stderr);
    assert.equal(r.stdout, '');
  });

  test('a client certificate without its key: exit 78 naming mqtt.tls.cert', async () => {
    const { path, dataDir } = configFile(
      (d) => `gatewayId: gw-cfg
dataDir: ${JSON.stringify(d)}
mqtt:
  url: mqtts://127.0.0.1:8883
  tls:
    cert: /nonexistent/client.pem
`,
    );
    const r = await runCli(['run', '--config', path]);
    assert.equal(r.code, 78, r.stderr);
    assert.ok(r.stderr.includes('mqtt.tls.cert'), r.stderr);
    assertNothingStarted(dataDir, r);
  });

  test('a bad --gateway-id flag with no file: exit 78 naming gatewayId', async () => {
    const dataDir = join(tempDir('agent-config-'), 'data');
    // No --config: the default path does not exist on a test machine, so flags and defaults apply.
    const r = await runCli(['run', '--gateway-id', 'bad id!', '--broker', 'mqtt://127.0.0.1:1', '--data-dir', dataDir], { EDGE_AGENT_CONFIG: '' });
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /gatewayId/);
    assertNothingStarted(dataDir, r);
  });
});

describe('edge-agent usage', () => {
  test('--help of the program and of run, status and event: exit 0 with usage', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /Usage: edge-agent <command>/);
    for (const sub of ['run', 'status', 'event']) assert.match(top.stdout, new RegExp(`^  ${sub} `, 'm'), `--help lists ${sub}`);
    for (const sub of ['run', 'status', 'event']) {
      const r = await runCli([sub, '--help']);
      assert.equal(r.code, 0, `${sub} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: edge-agent ${sub}`), `${sub} --help prints its usage`);
      assert.match(r.stdout, /--config FILE/);
      assert.equal(r.stderr, '');
    }
  });

  test('an unknown subcommand: exit 64 with a message', async () => {
    const r = await runCli(['frobnicate']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /unknown command "frobnicate"/);
  });

  test('an unknown flag: exit 64 with a message naming it', async () => {
    for (const sub of ['run', 'status']) {
      const r = await runCli([sub, '--bogus-flag']);
      assert.equal(r.code, 64, `${sub}: ${r.stderr}`);
      assert.match(r.stderr, /--bogus-flag/);
      assert.match(r.stderr, new RegExp(`Usage: edge-agent ${sub}`));
    }
  });
});
