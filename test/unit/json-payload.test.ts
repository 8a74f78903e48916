import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonDepth, MAX_JSON_DEPTH, parseJsonPayload } from '../../lib/json-payload.js';
import { redactDiagnosticsParams, redactSecretUrl } from '../../agent/ops/diagnostics.js';

test('jsonDepth counts nesting outside strings, escapes included, without recursion', () => {
  assert.equal(jsonDepth('1'), 0);
  assert.equal(jsonDepth('{"a":[1,{"b":[]}]}'), 4);
  assert.equal(jsonDepth('{"a":"[[[[{{{{"}'), 1, 'brackets in a string do not count');
  assert.equal(jsonDepth('{"a":"\\"[[[["}'), 1, 'an escaped quote does not end the string');
  assert.equal(jsonDepth('['.repeat(1_000_000)), 1_000_000, 'a million levels: no stack overflow');
  assert.equal(jsonDepth('['.repeat(1_000_000), 10), 11, 'stops counting past the limit');
});

test('parseJsonPayload rejects nesting past the bound too-large, with the id, and parses up to it', () => {
  const deep = (n: number): string => `{"id":"d-1","params":{"x":${'['.repeat(n)}${']'.repeat(n)}}}`;
  const over = parseJsonPayload(Buffer.from(deep(100_000)), 1 << 20);
  assert.equal(over.ok, false);
  assert.ok(!over.ok && over.code === 'too-large' && over.id === 'd-1' && /nested/.test(over.message));
  assert.equal(parseJsonPayload(Buffer.from(deep(MAX_JSON_DEPTH - 2)), 1 << 20).ok, true);
  assert.equal(parseJsonPayload(Buffer.from(deep(MAX_JSON_DEPTH - 1)), 1 << 20).ok, false);
  assert.equal(parseJsonPayload(Buffer.from(deep(10)), 1 << 20, { maxDepth: 8 }).ok, false);
});

test('diagnostics params as stored: header values, the query and user info redacted; nothing else changed', () => {
  assert.equal(redactSecretUrl('https://u:p@h.example/b/x.tgz?X-Amz-Signature=abc#f'), 'https://%5Bredacted%5D@h.example/b/x.tgz?[redacted]#f');
  assert.equal(redactSecretUrl('http://h/p'), 'http://h/p');
  const p = { upload: { url: 'https://h/p?sig=1', headers: { Authorization: 'Bearer s', 'X-Upload-Key': 'k' } }, note: 'x' };
  assert.deepEqual(redactDiagnosticsParams(p), { upload: { url: 'https://h/p?[redacted]', headers: { Authorization: '[redacted]', 'X-Upload-Key': '[redacted]' } }, note: 'x' });
  assert.deepEqual(redactDiagnosticsParams({}), {});
  assert.equal(p.upload.headers.Authorization, 'Bearer s', 'the params themselves are untouched');
});
