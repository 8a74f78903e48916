/** Secrets out of the support bundle and the report (health/diag/redact.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSecretKey, REDACTED, redactDoc, scrub, secretValues } from '../../lib/redact.js';
import { safeUrl } from '../../health/diag/upload.js';

const config = {
  gatewayId: 'gw-1',
  mqtt: { url: 'mqtts://user:url-pass-77@wms:8883', username: 'gw', password: 'S3cr3t"pa\\ss', tls: { key: '/etc/edge-agent/device.key', cert: '/etc/c.pem' } },
  services: [{ name: 'x', env: { API_TOKEN: 'tok-123456', other: 'fine' } }],
  inline: '-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n',
};

test('secret keys are recognised whatever their case and separators; key file paths are not secrets', () => {
  for (const k of ['password', 'PASSWORD', 'api_key', 'apiKey', 'client-secret', 'Authorization', 'privateKey', 'token']) assert.ok(isSecretKey(k), k);
  for (const k of ['key', 'cert', 'username', 'url', 'tokens_per_second_limit']) assert.equal(isSecretKey(k), false, k);
});

test('redactDoc replaces values under secret keys, URL passwords and inline private keys, and keeps the rest', () => {
  const r = redactDoc(config) as typeof config;
  assert.equal(r.mqtt.password, REDACTED);
  assert.equal(r.mqtt.url, 'mqtts://[redacted]@wms:8883');
  assert.equal(r.mqtt.tls.key, '/etc/edge-agent/device.key');
  assert.equal(r.services[0]!.env.API_TOKEN, REDACTED);
  assert.equal(r.services[0]!.env.other, 'fine');
  assert.equal(r.inline, REDACTED);
  assert.equal(config.mqtt.password, 'S3cr3t"pa\\ss', 'the input is not changed');
});

test('secretValues lists every secret; scrub removes each, also as it appears inside JSON and URLs', () => {
  const secrets = secretValues(config);
  assert.deepEqual([...secrets].sort(), ['S3cr3t"pa\\ss', 'tok-123456', 'url-pass-77'].sort());
  const text = `a ${JSON.stringify({ p: config.mqtt.password })} b tok-123456 c ${encodeURIComponent('S3cr3t"pa\\ss')} d url-pass-77`;
  const out = scrub(text, secrets);
  for (const s of secrets) assert.ok(!out.includes(s), `${s} is gone`);
  assert.ok(!out.includes(JSON.stringify(config.mqtt.password).slice(1, -1)));
  assert.ok(!out.includes(encodeURIComponent('S3cr3t"pa\\ss')));
  assert.match(out, /^a \{"p":"\[redacted\]"\} b \[redacted\] c \[redacted\] d \[redacted\]$/);
});

test('an upload URL is reported without its query string or user info', () => {
  assert.equal(safeUrl('https://u:p@bucket.example/x/b.tar.gz?X-Amz-Signature=abc#f'), 'https://bucket.example/x/b.tar.gz');
});
