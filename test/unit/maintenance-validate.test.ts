/**
 * Procedure files (CONTRACT.md section 6): the contract's own example validates with the
 * defaults it states; each kind of schema error and each extra rule is reported with its file
 * and dotted key path, all of them in one pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { validateProcedureText } from '../../maintenance/validate.js';
import { stepHasSideEffects, type Step } from '../../maintenance/schema.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The example of CONTRACT.md section 6, as docs/maintenance.md quotes it (its first yaml block). */
function contractExample(): string {
  const md = readFileSync(join(ROOT, 'docs', 'maintenance.md'), 'utf8');
  const m = /^```yaml[ \t]*\n([\s\S]*?)^```[ \t]*$/m.exec(md);
  assert.ok(m?.[1], 'docs/maintenance.md has no ```yaml block');
  return m[1];
}

const minimal = { id: 'x', name: 'X', steps: [{ id: 'a', type: 'log', message: 'hi' }] };

function problemsOf(doc: unknown, expectedId = 'x'): string[] {
  const r = validateProcedureText(typeof doc === 'string' ? doc : stringify(doc), 'x.yaml', expectedId);
  for (const p of r.problems) assert.equal(p.file, 'x.yaml');
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}

function assertProblem(list: string[], path: string, fragment: RegExp): void {
  assert.ok(
    list.some((l) => l.startsWith(`${path}: `) && fragment.test(l)),
    `expected a problem at ${path} matching ${String(fragment)}; got:\n  ${list.join('\n  ')}`,
  );
}

test('the example of the contract (docs/maintenance.md) is valid, and hashes to the sha256 of its bytes', () => {
  const text = contractExample();
  const r = validateProcedureText(Buffer.from(text), 'spool-repair.yaml', 'spool-repair');
  assert.deepEqual(r.problems, []);
  assert.equal(r.procedure?.id, 'spool-repair');
  assert.equal(r.procedure?.steps.length, 4);
  assert.equal(r.definitionSha256, createHash('sha256').update(text).digest('hex'));
  // One byte more (a comment) is another definition.
  assert.notEqual(validateProcedureText(text + '# x\n', 'f', 'spool-repair').definitionSha256, r.definitionSha256);
});

test('the example with every step type (docs/maintenance.md) is valid', () => {
  const md = readFileSync(join(ROOT, 'docs', 'maintenance.md'), 'utf8');
  const blocks = [...md.matchAll(/^```yaml[ \t]*\n([\s\S]*?)^```[ \t]*$/gm)].map((m) => m[1] ?? '');
  const every = blocks.find((b) => b.startsWith('id: broker-triage'));
  assert.ok(every, 'docs/maintenance.md has the broker-triage example');
  const r = validateProcedureText(every, 'broker-triage.yaml', 'broker-triage');
  assert.deepEqual(r.problems, []);
  assert.deepEqual([...new Set(r.procedure!.steps.map((s) => s.type))].sort(), ['action', 'check', 'command', 'confirm', 'http', 'log', 'notify', 'snapshot', 'wait']);
});

test('the defaults are those of the contract', () => {
  const r = validateProcedureText(stringify(minimal), 'x.yaml', 'x');
  assert.deepEqual(r.problems, []);
  const p = r.procedure!;
  assert.equal(p.category, 'maintenance');
  assert.equal(p.severity, 'low');
  assert.equal(p.disruptive, false);
  assert.equal(p.onInterrupt, 'fail');
  assert.equal(p.maxDurationSec, 3600);
  assert.deepEqual([p.prerequisites, p.rollback, p.successCriteria, p.params], [[], [], [], {}]);
  assert.equal(p.schedule, undefined);
  assert.equal(p.triggers, undefined);
  const step = p.steps[0]!;
  assert.equal(step.onFailure, 'abort');
  assert.equal(step.retries, 0);
  const cmd = validateProcedureText(stringify({ ...minimal, steps: [{ id: 'c', type: 'command', argv: ['/bin/true'] }] }), 'x.yaml', 'x').procedure!.steps[0]!;
  assert.deepEqual(cmd.type === 'command' && cmd.okExitCodes, [0]);
});

test('required keys: id, name and at least one step', () => {
  const list = problemsOf({ description: 'nothing else' });
  assertProblem(list, 'id', /expected string/);
  assertProblem(list, 'name', /expected string/);
  assertProblem(list, 'steps', /expected array/);
  assertProblem(problemsOf({ ...minimal, steps: [] }), 'steps', /at least one step/);
});

test('wrong types, values out of their set or bounds, unknown keys: each with its key path, all in one pass', () => {
  const list = problemsOf({
    id: 'x',
    name: 'X',
    colour: 'red',
    category: 'fixing',
    severity: 'urgent',
    disruptive: 'yes',
    maxDurationSec: 0,
    onInterrupt: 'retry',
    steps: [{ id: 'a', type: 'log', message: 'hi', retries: 11, onFailure: 'ignore', timeoutSec: 1.5 }],
  });
  assertProblem(list, '(top level)', /Unrecognized key: "colour"/);
  assertProblem(list, 'category', /repair/);
  assertProblem(list, 'severity', /critical/);
  assertProblem(list, 'disruptive', /expected boolean/);
  assertProblem(list, 'maxDurationSec', />=1/);
  assertProblem(list, 'onInterrupt', /rollback/);
  assertProblem(list, 'steps[0].retries', /<=10/);
  assertProblem(list, 'steps[0].onFailure', /abort/);
  assertProblem(list, 'steps[0].timeoutSec', /int/);
  assert.equal(list.length, 9, list.join('\n'));
});

test('ids: the procedure and step id patterns, and the id is the file name', () => {
  assertProblem(problemsOf({ ...minimal, id: 'Bad_Id' }, 'Bad_Id'), 'id', /\[a-z0-9\]/);
  assertProblem(problemsOf({ ...minimal, id: 'other' }), 'id', /must be the file's name \(x\.yaml\)/);
  assertProblem(problemsOf({ ...minimal, steps: [{ id: '-a', type: 'log', message: 'm' }] }), 'steps[0].id', /\[a-z0-9\]/);
  assertProblem(problemsOf({ ...minimal, id: 'a'.repeat(65) }, 'a'.repeat(65)), 'id', /\{0,63\}/);
});

test('step types: an unknown type, each type with its own keys, a key of another type', () => {
  const list = problemsOf({
    ...minimal,
    steps: [
      { id: 'a', type: 'frobnicate' },
      { id: 'b', type: 'command' },
      { id: 'c', type: 'command', argv: ['/bin/x'], seconds: 5 },
      { id: 'd', type: 'wait', seconds: 0 },
      { id: 'e', type: 'http', url: 'http://x/', method: 'TRACE', expectStatus: 99 },
      { id: 'f', type: 'notify', code: 'Bad Code', message: 'm', severity: 'loud' },
      { id: 'g', type: 'confirm', message: 'ok?', ttlSec: 0 },
      { id: 'h', type: 'action', action: 'Restart Component' },
      { id: 'i', type: 'log' },
      { id: 'j', type: 'snapshot', metrics: ['bad metric'] },
      { id: 'k', type: 'command', argv: ['/bin/x'], okExitCodes: [256] },
      { id: 'l', type: 'check' },
      { id: 'm', type: 'http', url: 'file:///etc/shadow' },
      { id: 'n', type: 'http', url: 'not a url' },
      { id: 'o', type: 'http', url: '{{params.u}}' },
    ],
    params: { u: { type: 'string', pattern: '^https://' } },
  });
  assertProblem(list, 'steps[0].type', /Expected 'action' \| 'command'/);
  assertProblem(list, 'steps[1].argv', /expected array/);
  assertProblem(list, 'steps[2]', /Unrecognized key: "seconds"/);
  assertProblem(list, 'steps[3].seconds', />0/);
  assertProblem(list, 'steps[4].method', /GET/);
  assertProblem(list, 'steps[4].expectStatus', /./);
  assertProblem(list, 'steps[5].code', /\[a-z\]/);
  assertProblem(list, 'steps[5].severity', /warning/);
  assertProblem(list, 'steps[6].ttlSec', />=1/);
  assertProblem(list, 'steps[7].action', /built-in action/);
  assertProblem(list, 'steps[8].message', /expected string/);
  assertProblem(list, 'steps[9].metrics[0]', /metric name/);
  assertProblem(list, 'steps[10].okExitCodes[0]', /<=255/);
  assertProblem(list, 'steps[11].check', /expected a check/);
  assertProblem(list, 'steps[12].url', /http:\/\/ or https:\/\//);
  assertProblem(list, 'steps[13].url', /http:\/\/ or https:\/\//);
  assert.ok(!list.some((l) => l.startsWith('steps[14]')), 'a whole reference is a URL decided at run time');
});

test('checks: structured only, with metric, op and value; all, any and not nest', () => {
  const list = problemsOf({
    ...minimal,
    prerequisites: [{ check: 'disk.data.usedPct < 95' }],
    steps: [
      { id: 'a', type: 'check', check: { metric: 'x', op: '=~', value: 1 } },
      { id: 'b', type: 'check', check: { metric: 'x', op: '==', value: 1, extra: true } },
      { id: 'c', type: 'check', check: { all: [] } },
      { id: 'd', type: 'check', check: { any: [{ metric: 'x', op: '<', value: 'high' }] } },
      { id: 'e', type: 'check', check: { not: { metric: 'x', op: '==' } } },
      { id: 'f', type: 'check', check: { all: [{ metric: 'x', op: '==', value: 1 }], any: [] } },
      { id: 'g', type: 'check', check: { metric: 'has space', op: '==', value: [1] } },
      { id: 'h', type: 'check', check: { all: [{ any: [{ not: { metric: 'disk.data.usedPct', op: '>=', value: 90 } }] }] } },
    ],
    successCriteria: [{ check: { metric: 'x', op: '==', value: true }, note: 1 }],
  });
  assertProblem(list, 'prerequisites[0].check', /never|expected a check/);
  assertProblem(list, 'steps[0].check.op', /< <= > >= == !=/);
  assertProblem(list, 'steps[1].check', /unknown key extra/);
  assertProblem(list, 'steps[2].check.all', /non-empty/);
  assertProblem(list, 'steps[3].check.any[0].value', /compares numbers/);
  assertProblem(list, 'steps[4].check.not.value', /number, a boolean or a string/);
  assertProblem(list, 'steps[5].check', /exactly one of/);
  assertProblem(list, 'steps[6].check.metric', /metric name/);
  assertProblem(list, 'steps[6].check.value', /number, a boolean or a string/);
  assertProblem(list, 'successCriteria[0]', /Unrecognized key: "note"/);
  assert.ok(!list.some((l) => l.startsWith('steps[7]')), 'a deep well-formed check is fine');
});

test('params: types, bounds in order, a pattern that compiles, defaults that fit, names', () => {
  const list = problemsOf({
    ...minimal,
    params: {
      n: { type: 'integer', min: 5, max: 1 },
      d: { type: 'integer', min: 1, max: 10, default: 11 },
      f: { type: 'integer', default: 1.5 },
      s: { type: 'string', pattern: '([' },
      q: { type: 'string', pattern: '^[a-z]+$', default: 'UPPER' },
      e: { type: 'string', enum: ['a', 'b'], maxLength: 1, default: 'c' },
      t: { type: 'strin' },
      b: { type: 'boolean', default: 'yes' },
      'bad-name': { type: 'boolean' },
      u: { type: 'integer', unit: 'days' },
    },
  });
  assertProblem(list, 'params.n.min', /above max/);
  assertProblem(list, 'params.d.default', /above the maximum 10/);
  assertProblem(list, 'params.f.default', /expected int/);
  assertProblem(list, 'params.s.pattern', /not a valid regular expression/);
  assertProblem(list, 'params.q.default', /does not match/);
  assertProblem(list, 'params.e.default', /one of/);
  assertProblem(list, 'params.t.type', /Expected 'integer'/);
  assertProblem(list, 'params.b.default', /expected boolean/);
  assertProblem(list, 'params.bad-name', /parameter name/);
  assertProblem(list, 'params.u', /Unrecognized key: "unit"/);
});

test('parameter references: declared, whole strings only; the program is never a parameter', () => {
  const list = problemsOf({
    ...minimal,
    params: { q: { type: 'string', default: 'labels' }, level: { type: 'string', default: 'x' } },
    steps: [
      { id: 'a', type: 'command', argv: ['/bin/echo', '--queue={{params.q}}', '{{params.q}}', '{{params.nope}}', '{{ params.q }}'] },
      { id: 'b', type: 'command', argv: ['{{params.q}}'] },
      { id: 'c', type: 'command', argv: ['rm', '-rf', '/tmp/x'] },
      { id: 'd', type: 'action', action: 'cleanup-logs', with: { deep: { list: ['{{params.gone}}'] } } },
      { id: 'e', type: 'log', message: 'queue {{params.q}} cleaned' },
      { id: 'f', type: 'check', check: { metric: 'x', op: '>', value: '{{params.level}}' } },
    ],
  });
  assertProblem(list, 'steps[0].argv[1]', /only as a whole string/);
  assertProblem(list, 'steps[0].argv[3]', /names no declared parameter/);
  assertProblem(list, 'steps[0].argv[4]', /only as a whole string/);
  assert.ok(!list.some((l) => l.startsWith('steps[0].argv[2]')), 'a whole reference to a declared parameter is fine');
  assertProblem(list, 'steps[1].argv[0]', /never a parameter/);
  assertProblem(list, 'steps[2].argv[0]', /absolute path/);
  assertProblem(list, 'steps[3].with.deep.list[0]', /names no declared parameter/);
  assertProblem(list, 'steps[4].message', /only as a whole string/);
  assertProblem(list, 'steps[5].check.value', /parameter level is a string/);
});

test('step ids are unique across steps and rollback; a rollback step cannot roll back', () => {
  const list = problemsOf({
    ...minimal,
    steps: [
      { id: 'a', type: 'log', message: 'm' },
      { id: 'a', type: 'log', message: 'm' },
    ],
    rollback: [{ id: 'a', type: 'log', message: 'm', onFailure: 'rollback' }],
  });
  assertProblem(list, 'steps[1].id', /already used by steps\[0\]/);
  assertProblem(list, 'rollback[0].id', /already used by steps\[0\]/);
  assertProblem(list, 'rollback[0].onFailure', /cannot roll back/);
});

test('schedule and triggers', () => {
  const list = problemsOf({
    ...minimal,
    schedule: { cron: 'every sunday', timezone: 'Mars/Olympus', jitterSec: -1 },
    triggers: { incidents: [{ cause: 'exited' }], alerts: ['disk usage'], cooldownSec: 'hourly', extra: 1 },
  });
  assertProblem(list, 'schedule.cron', /cron expression/);
  assertProblem(list, 'schedule.timezone', /IANA/);
  assertProblem(list, 'schedule.jitterSec', />=0/);
  assertProblem(list, 'triggers.incidents[0].component', /expected string/);
  assertProblem(list, 'triggers.alerts[0]', /metric name/);
  assertProblem(list, 'triggers.cooldownSec', /expected number/);
  assertProblem(list, 'triggers', /Unrecognized key: "extra"/);
  assert.deepEqual(problemsOf({ ...minimal, schedule: { cron: '0 3 * * 0', timezone: 'Europe/Madrid' }, triggers: { alerts: ['disk.data.usedPct'] } }), []);
});

test('YAML: a syntax error, a duplicate key, and a document that is no mapping', () => {
  assertProblem(problemsOf('id: x\nname: [unclosed\n'), '(file)', /not valid YAML/);
  assertProblem(problemsOf('id: x\nid: y\nname: X\n'), '(file)', /not valid YAML/);
  assertProblem(problemsOf('- just\n- a list\n'), '(top level)', /mapping/);
  assertProblem(problemsOf(''), '(top level)', /mapping/);
});

test('side effects: a command has them unless it says not; actions and notify always; http by method', () => {
  const s = (step: object): boolean => stepHasSideEffects(step as Step);
  assert.equal(s({ type: 'command', argv: ['/bin/true'] }), true);
  assert.equal(s({ type: 'command', argv: ['/bin/true'], sideEffects: false }), false);
  assert.equal(s({ type: 'action', action: 'x', sideEffects: false }), true);
  assert.equal(s({ type: 'notify', sideEffects: false }), true);
  assert.equal(s({ type: 'http', method: 'GET' }), false);
  assert.equal(s({ type: 'http', method: 'POST' }), true);
  assert.equal(s({ type: 'check' }), false);
  assert.equal(s({ type: 'wait', sideEffects: true }), true);
});
