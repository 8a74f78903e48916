/**
 * Keeps docs/asyncapi.yaml true to the contract and to the code: it is valid YAML, an AsyncAPI
 * 3 document, has every channel of CONTRACT.md sections 2 and 3 with its QoS and retain flag,
 * names every code of the "commands" domain and every `plc` code a write or a value can carry,
 * and every local $ref in it resolves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ERROR_CODE_TABLES } from '../../lib/errors.js';
import { COMMAND_CODES } from '../../agent/command-parse.js';
import { PLC_CODES } from '../../plc-bridge/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TEXT = readFileSync(join(ROOT, 'docs', 'asyncapi.yaml'), 'utf8');

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `${what} is not a mapping`);
  return v as Obj;
}

const doc = obj(parse(TEXT, { uniqueKeys: true }) as unknown, 'the document');

/** Topic (relative to the root `~`) -> direction from the agent's side, QoS, retained. */
const CONTRACT: Record<string, { action: 'send' | 'receive'; qos: 0 | 1; retain: boolean }> = {
  status: { action: 'send', qos: 1, retain: true },
  'cmd/{op}': { action: 'receive', qos: 1, retain: false },
  'res/{id}': { action: 'send', qos: 1, retain: true },
  events: { action: 'send', qos: 1, retain: false },
  health: { action: 'send', qos: 0, retain: false },
  // Section 3, the PLC bridge (data QoS is configurable: 1 by default).
  'plc/status': { action: 'send', qos: 1, retain: true },
  'plc/{device}/{group}': { action: 'send', qos: 1, retain: false },
  'plc/{device}/set': { action: 'receive', qos: 1, retain: false },
};

/** `plc` codes that never reach the WMS: the bridge's own process and configuration. */
const PLC_PROCESS_CODES = ['handover-failed', 'handover-refused', 'handover-stalled', 'upgrade-refused', 'not-active', 'config-not-found', 'config-unreadable', 'config-syntax', 'config-invalid'];

function channelFor(suffix: string): [string, Obj] | undefined {
  const channels = obj(doc.channels, 'channels');
  for (const [name, ch] of Object.entries(channels)) {
    if (obj(ch, `channel ${name}`).address === `{prefix}/{gatewayId}/${suffix}`) return [name, ch as Obj];
  }
  return undefined;
}

test('docs/asyncapi.yaml is an AsyncAPI 3 document', () => {
  assert.match(String(doc.asyncapi), /^3\.\d+\.\d+$/);
  assert.equal(typeof obj(doc.info, 'info').title, 'string');
});

for (const [suffix, want] of Object.entries(CONTRACT)) {
  test(`channel ~/${suffix} is present with QoS ${want.qos}, retain ${String(want.retain)}`, () => {
    const found = channelFor(suffix);
    assert.ok(found, `no channel with address {prefix}/{gatewayId}/${suffix}`);
    const [name] = found;
    const ops = Object.values(obj(doc.operations, 'operations')).map((o) => obj(o, 'operation'));
    const op = ops.find((o) => obj(o.channel, 'operation channel').$ref === `#/channels/${name}`);
    assert.ok(op, `no operation on channel ${name}`);
    assert.equal(op.action, want.action);
    const mqtt = obj(obj(op.bindings, 'bindings').mqtt, 'mqtt binding');
    assert.equal(mqtt.qos, want.qos);
    assert.equal(mqtt.retain, want.retain);
  });
}

test('the command channel lists the operations this release offers', () => {
  const found = channelFor('cmd/{op}');
  assert.ok(found);
  const op = obj(obj(found[1].parameters, 'parameters').op, 'op parameter');
  assert.deepEqual([...(op.enum as string[])].sort(), ['cancel', 'certificate', 'config', 'confirm', 'diagnostics', 'maintenance', 'pause', 'restart', 'resume', 'trust']);
  const messages = obj(found[1].messages, 'messages');
  for (const name of op.enum as string[]) assert.ok(messages[name], `no message for the ${name} operation`);
});

test('every code of the "commands" domain is a documented reason code', () => {
  const codes = ERROR_CODE_TABLES.commands;
  assert.ok(codes && codes.length > 0, 'the commands domain registered no codes');
  assert.deepEqual([...codes], [...COMMAND_CODES]);
  const schemas = obj(obj(doc.components, 'components').schemas, 'schemas');
  const reasonCode = obj(schemas.ReasonCode, 'ReasonCode');
  const consts = (reasonCode.anyOf as Obj[]).map((s) => s.const).filter((c): c is string => typeof c === 'string');
  const missing = codes.filter((c) => !consts.includes(c));
  assert.deepEqual(missing, [], `commands codes missing from ReasonCode in docs/asyncapi.yaml: ${missing.join(', ')}`);
});

test('every plc code a write status or a value can carry is a documented PlcReasonCode', () => {
  const schemas = obj(obj(doc.components, 'components').schemas, 'schemas');
  const listed = obj(schemas.PlcReasonCode, 'PlcReasonCode').enum as string[];
  assert.deepEqual(listed, PLC_CODES.filter((c) => !PLC_PROCESS_CODES.includes(c)));
  // A PLC write is answered on ~/res/{id} like a command: the reply of receivePlcSet.
  const ops = obj(doc.operations, 'operations');
  const reply = obj(obj(ops.receivePlcSet, 'receivePlcSet').reply, 'reply');
  assert.equal(obj(reply.channel, 'reply channel').$ref, '#/channels/result');
});

test('the status lifecycle is complete', () => {
  const schemas = obj(obj(doc.components, 'components').schemas, 'schemas');
  const status = obj(obj(obj(schemas.CommandStatus, 'CommandStatus').properties, 'properties').status, 'status');
  assert.deepEqual(status.enum, ['accepted', 'executing', 'successful', 'failed', 'cancelled', 'rejected']);
});

test('every local $ref resolves', () => {
  const refs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v as Obj)) {
        if (k === '$ref' && typeof x === 'string') refs.push(x);
        else walk(x);
      }
    }
  };
  walk(doc);
  assert.ok(refs.length > 10);
  const broken = refs.filter((ref) => {
    if (!ref.startsWith('#/')) return true;
    let cur: unknown = doc;
    for (const part of ref.slice(2).split('/')) {
      const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
      if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, key)) return true;
      cur = (cur as Obj)[key];
    }
    return false;
  });
  assert.deepEqual(broken, []);
});

test('the maintenance report schema has every field of the contract\'s report (CONTRACT.md section 6)', () => {
  const schemas = obj(obj(doc.components, 'components').schemas, 'schemas');
  const props = obj(obj(schemas.MaintenanceReport, 'MaintenanceReport').properties, 'MaintenanceReport.properties');
  const contract = ['runId', 'procedure', 'name', 'definitionSha256', 'trigger', 'startedBy', 'dryRun', 'params', 'state', 'ok', 'startedAt', 'endedAt', 'elapsedMs', 'stepsTotal', 'stepsOk', 'stepsFailed', 'stepsSkipped', 'steps', 'successCriteriaOk', 'rollback'];
  assert.deepEqual(contract.filter((k) => !(k in props)), []);
  const step = obj(obj(schemas.MaintenanceStepReport, 'MaintenanceStepReport').properties, 'MaintenanceStepReport.properties');
  assert.deepEqual(obj(step.outcome, 'outcome').enum, ['ok', 'failed', 'skipped', 'would-run', 'timeout', 'cancelled']);
  assert.deepEqual(obj(props.state, 'state').enum, ['succeeded', 'failed', 'rolled-back', 'cancelled', 'interrupted']);
});
