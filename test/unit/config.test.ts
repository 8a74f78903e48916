import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfigText, validateConfig } from '../../core/config.js';

test('defaults fill a minimal config', () => {
  const c = validateConfig({ gatewayId: 'gw-1' });
  assert.equal(c.mqtt.url, 'mqtt://localhost:1883');
  assert.equal(c.mqtt.prefix, 'edge');
  assert.equal(c.outbox.inflight, 256);
});

test('every error is reported at once with its key path', () => {
  try {
    validateConfig({ gatewayId: 'bad id!', mqtt: { url: 'http://x', keepaliveSec: 1 }, outbox: { inflight: 0 }, bogus: 1 });
    assert.fail('expected ConfigError');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'config-invalid');
    const joined = err.problems.join('\n');
    for (const p of ['gatewayId:', 'mqtt.url:', 'mqtt.keepaliveSec:', 'outbox.inflight:']) assert.match(joined, new RegExp(p.replace('.', '\\.')));
    assert.ok(err.problems.length >= 5, joined);
  }
});

test('flags override the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const f = join(dir, 'c.yaml');
  writeFileSync(f, 'gatewayId: from-file\nmqtt:\n  url: mqtt://file:1883\n');
  const { config } = loadConfig({ path: f, overrides: { gatewayId: 'from-flag', broker: 'mqtt://flag:1' }, env: {} });
  assert.equal(config.gatewayId, 'from-flag');
  assert.equal(config.mqtt.url, 'mqtt://flag:1');
});

test('syntax errors and missing explicit files have their own codes', () => {
  assert.throws(() => parseConfigText('a: [1, 2\nb: :', 'x.yaml'), (e: unknown) => e instanceof ConfigError && e.code === 'config-syntax');
  assert.throws(() => loadConfig({ path: '/nonexistent/c.yaml', env: {} }), (e: unknown) => e instanceof ConfigError && e.code === 'config-not-found');
});
