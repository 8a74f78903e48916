/**
 * The pure part of the `config` operation (core/config-edit.ts): RFC 7396 merge patches, secrets
 * kept through "[redacted]", changed key paths, and every schema problem at its own key path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changedPaths, keepSecrets, mergePatch, redacted, schemaProblems } from '../../core/config-edit.js';
import { configSchema } from '../../core/config.js';

test('merge patch: the examples of RFC 7396 appendix A', () => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) assert.deepEqual(mergePatch(target, patch), want, JSON.stringify([target, patch]));
});

test('secrets: redacted on the way out, kept when sent back as "[redacted]", refused where there is none', () => {
  const cur = { mqtt: { url: 'mqtt://u:pw@h:1883', password: 'hunter2', username: 'u' } };
  const shown = redacted(cur) as typeof cur;
  assert.equal(shown.mqtt.password, '[redacted]');
  assert.ok(!JSON.stringify(shown).includes('hunter2') && !JSON.stringify(shown).includes(':pw@'));
  const back = keepSecrets(shown, cur);
  assert.deepEqual(back, { doc: cur, problems: [] });
  const ask = keepSecrets({ mqtt: { username: '[redacted]', password: '[redacted]' }, log: { level: '[redacted]' } }, { mqtt: {} });
  assert.deepEqual(ask.problems.map((p) => p.path), ['mqtt.username', 'mqtt.password', 'log.level']);
});

test('changed key paths: leaves, sections added whole, arrays as one value', () => {
  assert.deepEqual(changedPaths({ a: 1, b: { c: 2 } }, { a: 1, b: { c: 3 }, d: { e: { f: 1 } } }), ['b.c', 'd.e.f']);
  assert.deepEqual(changedPaths({ s: [1, 2] }, { s: [1, 3] }), ['s']);
  assert.deepEqual(changedPaths({ x: { y: 1 } }, {}), ['x.y']);
  assert.deepEqual(changedPaths({ a: 1 }, { a: 1 }), []);
});

test('schema problems: every one, unknown keys each at their own path', () => {
  const p = schemaProblems(configSchema, { gatewayId: 'g', bogus: 1, mqtt: { url: 'http://x', nope: true }, log: { level: 3 } });
  assert.deepEqual(p.map((x) => x.path).sort(), ['bogus', 'log.level', 'mqtt.nope', 'mqtt.url']);
});
