/**
 * A run's parameters: checked whole against the declaration before anything starts, then used
 * only as whole values. A value that tries to smuggle a shell stays one literal argv element.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MaintenanceError } from '../../maintenance/errors.js';
import { parseParamArgs, resolveParams, substituteStep } from '../../maintenance/params.js';
import { procedureSchema, type Procedure, type Step } from '../../maintenance/schema.js';

const proc: Procedure = procedureSchema.parse({
  id: 'spool-repair',
  name: 'Spool',
  params: {
    maxAgeDays: { type: 'integer', min: 1, max: 365, default: 7 },
    queue: { type: 'string', pattern: '^[a-z0-9-]{1,32}$', default: 'labels' },
    note: { type: 'string', maxLength: 64 },
    ratio: { type: 'number', min: 0, max: 1, default: 0.5 },
    force: { type: 'boolean', default: false },
    mode: { type: 'string', enum: ['fast', 'safe'], default: 'safe' },
  },
  steps: [
    { id: 'clean', type: 'command', argv: ['/usr/local/bin/spool-clean', '--queue', '{{params.queue}}', '--days', '{{params.maxAgeDays}}', '--note', '{{params.note}}'] },
    { id: 'act', type: 'action', action: 'cleanup-logs', with: { days: '{{params.maxAgeDays}}', force: '{{params.force}}', nested: ['{{params.ratio}}', 'literal'] } },
    { id: 'say', type: 'log', message: '{{params.note}}' },
    { id: 'guard', type: 'check', check: { metric: 'x', op: '<', value: '{{params.ratio}}' }, validate: { check: { metric: 'y', op: '==', value: '{{params.force}}' } } },
    { id: 'post', type: 'http', method: 'POST', url: 'http://127.0.0.1/x', headers: { 'X-Note': '{{params.note}}' }, body: { days: '{{params.maxAgeDays}}' } },
  ],
});

function codeAndPaths(fn: () => unknown): { code: string; paths: string[]; messages: string[] } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MaintenanceError, String(err));
    return { code: err.code, paths: err.problems.map((p) => p.path), messages: err.problems.map((p) => p.message) };
  }
  assert.fail('expected invalid-params');
}

test('defaults fill in; a parameter without a default is required', () => {
  assert.deepEqual(resolveParams(proc, { note: 'n' }), { maxAgeDays: 7, queue: 'labels', note: 'n', ratio: 0.5, force: false, mode: 'safe' });
  const e = codeAndPaths(() => resolveParams(proc, {}));
  assert.equal(e.code, 'invalid-params');
  assert.deepEqual(e.paths, ['params.note']);
  assert.match(e.messages[0]!, /required/);
});

test('wrong types, out of bounds, pattern, enum, length and unknown parameters: every problem at once', () => {
  const e = codeAndPaths(() =>
    resolveParams(proc, { maxAgeDays: '7', queue: 'Labels!', note: 'x'.repeat(65), ratio: 1.5, force: 'yes', mode: 'turbo', extra: 1 }),
  );
  assert.equal(e.code, 'invalid-params');
  assert.deepEqual(e.paths.sort(), ['params.extra', 'params.force', 'params.maxAgeDays', 'params.mode', 'params.note', 'params.queue', 'params.ratio']);
  const again = codeAndPaths(() => resolveParams(proc, { note: 'n', maxAgeDays: 0 }));
  assert.match(again.messages[0]!, /below the minimum 1/);
  assert.match(codeAndPaths(() => resolveParams(proc, { note: 'n', maxAgeDays: 366 })).messages[0]!, /above the maximum 365/);
  assert.match(codeAndPaths(() => resolveParams(proc, { note: 'n', maxAgeDays: 7.5 })).messages[0]!, /integer/);
  assert.match(codeAndPaths(() => resolveParams(proc, { note: 'n', extra: 1 })).messages[0]!, /unknown parameter/);
  assert.match(codeAndPaths(() => resolveParams(proc, { note: 'a\0b' })).messages[0]!, /NUL/);
  assert.equal(codeAndPaths(() => resolveParams(proc, [] as unknown as Record<string, unknown>)).code, 'invalid-params');
});

test('shell metacharacters stay one literal argv element: never split, never interpreted', () => {
  for (const evil of ['; rm -rf /', '$(touch /tmp/pwned)', '`reboot`', 'a b  c', "' \" \\ | & > < * ?", '--queue=other', '\n/bin/sh']) {
    const values = resolveParams(proc, { note: evil });
    const step = substituteStep(proc.steps[0]!, values);
    assert.equal(step.type, 'command');
    if (step.type !== 'command') return;
    assert.deepEqual(step.argv, ['/usr/local/bin/spool-clean', '--queue', 'labels', '--days', '7', '--note', evil]);
    const log = substituteStep(proc.steps[2]!, values);
    assert.equal(log.type === 'log' && log.message, evil);
  }
  // A pattern refuses what it does not allow before anything runs.
  assert.equal(codeAndPaths(() => resolveParams(proc, { note: 'n', queue: 'labels; rm -rf /' })).code, 'invalid-params');
});

test('JSON values keep their type where a whole value is a reference; the program and literals never change', () => {
  const values = resolveParams(proc, { note: 'n', maxAgeDays: 30, force: true, ratio: 0.25 });
  const act = substituteStep(proc.steps[1]!, values) as Extract<Step, { type: 'action' }>;
  assert.deepEqual(act.with, { days: 30, force: true, nested: [0.25, 'literal'] });
  const check = substituteStep(proc.steps[3]!, values) as Extract<Step, { type: 'check' }>;
  assert.deepEqual(check.check, { metric: 'x', op: '<', value: 0.25 });
  assert.deepEqual(check.validate?.check, { metric: 'y', op: '==', value: true });
  const http = substituteStep(proc.steps[4]!, values) as Extract<Step, { type: 'http' }>;
  assert.deepEqual(http.headers, { 'X-Note': 'n' });
  assert.deepEqual(http.body, { days: 30 });
  // The definition itself is untouched.
  assert.equal((proc.steps[1] as Extract<Step, { type: 'action' }>).with.days, '{{params.maxAgeDays}}');
});

test('--param K=V: text becomes the declared type; what does not convert is refused by resolveParams', () => {
  const given = parseParamArgs(proc, ['maxAgeDays=30', 'force=true', 'ratio=0.25', 'note=a=b; c', 'queue=007']);
  assert.deepEqual(given, { maxAgeDays: 30, force: true, ratio: 0.25, note: 'a=b; c', queue: '007' });
  assert.equal(resolveParams(proc, given).queue, '007');
  const bad = parseParamArgs(proc, ['maxAgeDays=seven', 'force=1']);
  const e = codeAndPaths(() => resolveParams(proc, { ...bad, note: 'n' }));
  assert.deepEqual(e.paths.sort(), ['params.force', 'params.maxAgeDays']);
  assert.throws(() => parseParamArgs(proc, ['novalue']), (err: unknown) => err instanceof MaintenanceError && err.code === 'invalid-params');
});
