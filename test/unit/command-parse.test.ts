import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommand, salvageId } from '../../agent/command-parse.js';

const NOW = Date.parse('2026-11-25T10:00:00Z');
const p = (op: string, text: string, max = 1024): ReturnType<typeof parseCommand> => parseCommand(op, Buffer.from(text), max, NOW);

test('a well-formed command parses with defaults', () => {
  assert.deepEqual(p('diagnostics', '{"id":"a-1"}'), { kind: 'command', cmd: { id: 'a-1', op: 'diagnostics', params: {}, expiresAt: undefined, priority: 'normal' } });
  const hi = p('update', '{"id":"h","priority":"high"}');
  assert.equal(hi.kind === 'command' && hi.cmd.priority, 'high');
  const bad = p('update', '{"id":"b","priority":"urgent"}');
  assert.equal(bad.kind === 'reject' && bad.code, 'invalid-params');
  const v = p('update', '{"id":"u:1","params":{"url":"x"},"expiresAt":"2026-11-25T11:00:00Z"}');
  assert.equal(v.kind, 'command');
  if (v.kind === 'command') assert.equal(v.cmd.expiresAt, Date.parse('2026-11-25T11:00:00Z'));
});

test('each kind of bad input gets its code, or is dropped when no id can be read', () => {
  const cases: [string, string, string][] = [
    ['x', '{"id":"j1", oops', 'reject:invalid-json'],
    ['x', 'not json at all', 'drop:no-id'],
    ['x', '[1,2]', 'drop:not-an-object'],
    ['x', '"a string"', 'drop:not-an-object'],
    ['x', '{"params":{}}', 'drop:no-id'],
    ['x', '{"id":42}', 'drop:invalid-id'],
    ['x', '{"id":"a/b#"}', 'drop:invalid-id'],
    ['x', `{"id":"${'a'.repeat(129)}"}`, 'drop:invalid-id'],
    ['x', '{"id":"e1","expiresAt":"2020-01-01T00:00:00Z"}', 'reject:expired'],
    ['x', '{"id":"e2","expiresAt":"tomorrow"}', 'reject:invalid-params'],
    ['x', '{"id":"e3","expiresAt":12}', 'reject:invalid-params'],
    ['x', '{"id":"p1","params":[1]}', 'reject:invalid-params'],
    ['x', '{"id":"p2","params":null}', 'reject:invalid-params'],
    ['Bad/Op', '{"id":"o1"}', 'reject:unknown-op'],
  ];
  for (const [op, text, want] of cases) {
    const v = p(op, text);
    const got = v.kind === 'reject' ? `reject:${v.code}` : v.kind === 'drop' ? `drop:${v.reason}` : 'command';
    assert.equal(got, want, text);
  }
});

test('an oversized payload is rejected too-large when its id is near the start, else dropped', () => {
  const big = `{"id":"big-1","params":{"pad":"${'x'.repeat(5000)}"}}`;
  const v = p('x', big, 1024);
  assert.equal(v.kind, 'reject');
  if (v.kind === 'reject') assert.deepEqual([v.id, v.code], ['big-1', 'too-large']);
  assert.equal(p('x', `{"pad":"${'x'.repeat(5000)}","id":"late"}`, 1024).kind, 'drop');
});

test('salvageId only returns ids that are safe as a topic level', () => {
  assert.equal(salvageId('{"id": "ok.1:2_3-4", x'), 'ok.1:2_3-4');
  assert.equal(salvageId('{"id": "a/b", x'), undefined);
  assert.equal(salvageId('{"id": "+", x'), undefined);
});
