/**
 * deploy/polkit/50-edge-agent.rules: no polkitd runs here, so the rule is parsed as ECMAScript 5
 * (what polkit's engine takes) and run against a fake `polkit` with the action details systemd
 * passes for org.freedesktop.systemd1.manage-units (`unit`, `verb`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'acorn';

const RULE = fileURLToPath(new URL('../../../deploy/polkit/50-edge-agent.rules', import.meta.url));
const Result = { YES: 'yes', NO: 'no', AUTH_ADMIN: 'auth_admin', NOT_HANDLED: null } as const;
type Rule = (action: { id: string; lookup(k: string): string | undefined }, subject: { user: string }) => unknown;

function loadRule(): Rule {
  const rules: Rule[] = [];
  const polkit = { Result, addRule: (r: Rule) => rules.push(r) };
  // The rule file is ours; run as polkitd runs it, with `polkit` in scope.
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const run = new Function('polkit', readFileSync(RULE, 'utf8')) as (p: typeof polkit) => void;
  run(polkit);
  assert.equal(rules.length, 1, 'the file adds exactly one rule');
  return rules[0]!;
}

const ask = (rule: Rule, user: string, unit: string | undefined, verb: string | undefined, id = 'org.freedesktop.systemd1.manage-units'): unknown =>
  rule({ id, lookup: (k) => (k === 'unit' ? unit : k === 'verb' ? verb : undefined) }, { user });

test('the rule is ECMAScript 5 (polkit rejects let, const, arrows, template strings)', () => {
  assert.doesNotThrow(() => parse(readFileSync(RULE, 'utf8'), { ecmaVersion: 5 }));
  assert.throws(() => parse('const a = () => 1;', { ecmaVersion: 5 }), 'the ES5 check itself rejects ES2015');
});

test('edge-agent may start, restart and kill edge-plc-bridge.service', () => {
  const rule = loadRule();
  for (const verb of ['start', 'restart', 'kill']) assert.equal(ask(rule, 'edge-agent', 'edge-plc-bridge.service', verb), Result.YES, verb);
});

test('anything else is left to polkit defaults: other verbs, units, users, actions', () => {
  const rule = loadRule();
  for (const verb of ['stop', 'reload', 'enable', undefined]) assert.equal(ask(rule, 'edge-agent', 'edge-plc-bridge.service', verb), Result.NOT_HANDLED, String(verb));
  for (const unit of ['edge-agent.service', 'ssh.service', 'edge-plc-bridge.service.d', undefined]) assert.equal(ask(rule, 'edge-agent', unit, 'restart'), Result.NOT_HANDLED, String(unit));
  for (const user of ['root', 'nobody', 'edge-agent2']) assert.equal(ask(rule, user, 'edge-plc-bridge.service', 'restart'), Result.NOT_HANDLED, user);
  for (const id of ['org.freedesktop.systemd1.manage-unit-files', 'org.freedesktop.login1.reboot']) assert.equal(ask(rule, 'edge-agent', 'edge-plc-bridge.service', 'restart', id), Result.NOT_HANDLED, id);
});
