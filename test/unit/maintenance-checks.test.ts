/**
 * The check evaluator: pure, never throws; an unknown metric or a value of the wrong type is a
 * failed check with its reason, and `not` cannot turn such an unknown into a pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateCheck, type Check } from '../../maintenance/checks.js';

const m = { 'disk.data.usedPct': 42, 'service.cups.active': true, 'plc.link': 'up', 'agent.rssMB': null };

test('each op on numbers', () => {
  const v = (op: '<' | '<=' | '>' | '>=' | '==' | '!=', value: number): boolean => evaluateCheck({ metric: 'disk.data.usedPct', op, value }, m).ok;
  assert.deepEqual([v('<', 43), v('<', 42), v('<=', 42), v('>', 41), v('>', 42), v('>=', 42), v('==', 42), v('!=', 42), v('!=', 1)], [true, false, true, true, false, true, true, false, true]);
});

test('booleans and strings compare with == and !=, types never coerce', () => {
  assert.equal(evaluateCheck({ metric: 'service.cups.active', op: '==', value: true }, m).ok, true);
  assert.equal(evaluateCheck({ metric: 'plc.link', op: '==', value: 'up' }, m).ok, true);
  assert.equal(evaluateCheck({ metric: 'plc.link', op: '!=', value: 'up' }, m).ok, false);
  const r = evaluateCheck({ metric: 'service.cups.active', op: '==', value: 'true' }, m);
  assert.equal(r.ok, false);
  assert.equal(r.truth, 'unknown');
  assert.match(r.reason, /not comparable/);
  assert.equal(evaluateCheck({ metric: 'disk.data.usedPct', op: '==', value: '42' }, m).ok, false);
});

test('an unknown metric is a failed check with a clear reason, never a throw; nor does not() pass it', () => {
  const r = evaluateCheck({ metric: 'disk.dta.usedPct', op: '<', value: 95 }, m);
  assert.deepEqual([r.ok, r.truth], [false, 'unknown']);
  assert.match(r.reason, /unknown metric disk\.dta\.usedPct/);
  const n = evaluateCheck({ not: { metric: 'disk.dta.usedPct', op: '>=', value: 95 } }, m);
  assert.deepEqual([n.ok, n.truth], [false, 'unknown']);
  assert.match(n.reason, /unknown metric/);
  const nul = evaluateCheck({ metric: 'agent.rssMB', op: '<', value: 100 }, m);
  assert.deepEqual([nul.ok, nul.truth], [false, 'unknown']);
  assert.match(nul.reason, /no value/);
  // A string metric under < is unknown, not false.
  assert.equal(evaluateCheck({ metric: 'plc.link', op: '<', value: 3 }, m).truth, 'unknown');
});

test('all, any and not, three-valued', () => {
  const ok: Check = { metric: 'disk.data.usedPct', op: '<', value: 95 };
  const bad: Check = { metric: 'disk.data.usedPct', op: '>', value: 95 };
  const unk: Check = { metric: 'nope', op: '==', value: 1 };
  const t = (c: Check): string => evaluateCheck(c, m).truth;
  assert.equal(t({ all: [ok, ok] }), 'true');
  assert.equal(t({ all: [ok, bad, unk] }), 'false');
  assert.equal(t({ all: [ok, unk] }), 'unknown');
  assert.equal(t({ any: [bad, ok] }), 'true');
  assert.equal(t({ any: [unk, ok] }), 'true');
  assert.equal(t({ any: [bad, unk] }), 'unknown');
  assert.equal(t({ any: [bad, bad] }), 'false');
  assert.equal(t({ not: bad }), 'true');
  assert.equal(t({ not: { all: [ok, unk] } }), 'unknown');
  const r = evaluateCheck({ all: [ok, bad] }, m);
  assert.match(r.reason, /disk\.data\.usedPct > 95: disk\.data\.usedPct is 42/);
});

test('a malformed check that slipped past validation fails, it does not throw', () => {
  const r = evaluateCheck({ all: 'nope' } as unknown as Check, m);
  assert.equal(r.ok, false);
  assert.match(r.reason, /cannot be evaluated/);
  assert.equal(evaluateCheck({ metric: 'toString', op: '==', value: 1 }, m).reason, 'unknown metric toString');
});
