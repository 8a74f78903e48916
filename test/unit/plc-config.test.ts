/**
 * The bridge's configuration (plc-bridge/config.ts): the examples of docs/plc-bridge.md and
 * deploy/plc-bridge.example.yaml validate, defaults, every validation rule with its key path,
 * address resolution, and the load errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { z } from 'zod';
import { bridgeSchema, deviceTags, loadBridgeConfig, parseBridgeConfig, parseBridgeConfigText, type BridgeConfig } from '../../plc-bridge/config.js';
import { PlcError } from '../../plc-bridge/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function firstYamlBlock(markdown: string): string {
  const m = /^```yaml[ \t]*\n([\s\S]*?)^```[ \t]*$/m.exec(markdown);
  assert.ok(m?.[1] !== undefined, 'no ```yaml block');
  return m[1];
}

/** Key paths the schema declares; arrays as `[]`, e.g. devices[].groups[].tags[].bit. */
function schemaPaths(schema: z.ZodType, prefix = ''): string[] {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else break;
  }
  if (s instanceof z.ZodArray) return schemaPaths(s.element as z.ZodType, `${prefix}[]`);
  if (!(s instanceof z.ZodObject)) return [prefix];
  return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => schemaPaths(v, prefix === '' ? k : `${prefix}.${k}`));
}

/** Whether some element along the path has the key (`[]` = any element of an array). */
function has(doc: unknown, path: string): boolean {
  const parts = path.split('.').flatMap((p) => (p.endsWith('[]') ? [p.slice(0, -2), '[]'] : [p]));
  const walk = (cur: unknown, i: number): boolean => {
    if (i === parts.length) return true;
    const part = parts[i]!;
    if (part === '[]') return Array.isArray(cur) && cur.some((x) => walk(x, i + 1));
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return false;
    return walk((cur as Record<string, unknown>)[part], i + 1);
  };
  return walk(doc, 0);
}

function problemsOf(raw: unknown): string[] {
  try {
    parseBridgeConfig(raw);
  } catch (err) {
    assert.ok(err instanceof PlcError, `not a PlcError: ${String(err)}`);
    assert.equal(err.code, 'config-invalid');
    const problems = err.detail?.problems as string[];
    for (const p of problems) assert.ok(err.message.includes(p), 'the message lists every problem');
    return problems;
  }
  return [];
}

type RawTag = Record<string, unknown>;
function withTags(tags: RawTag[], device: Record<string, unknown> = {}): unknown {
  return { gatewayId: 'gw', devices: [{ name: 'd1', host: 'h', ...device, groups: [{ name: 'g', tags }] }] };
}

function expectProblem(raw: unknown, path: string, pattern: RegExp): void {
  const problems = problemsOf(raw);
  assert.ok(
    problems.some((p) => p.startsWith(`${path}: `) && pattern.test(p)),
    `expected a problem at ${path} matching ${String(pattern)}, got:\n  ${problems.join('\n  ')}`,
  );
}

const T = 'devices[0].groups[0].tags[0]';

test('the example in docs/plc-bridge.md validates', () => {
  const block = firstYamlBlock(readFileSync(join(ROOT, 'docs', 'plc-bridge.md'), 'utf8'));
  const config = parseBridgeConfig(parseBridgeConfigText(block, 'docs/plc-bridge.md'));
  assert.equal(config.gatewayId, 'gw-01');
  const tags = deviceTags(config.devices[0]!);
  assert.deepEqual([...tags.keys()], ['speed', 'running', 'jam', 'label']);
  assert.equal(tags.get('label')?.count, 8);
});

const example = parseBridgeConfigText(readFileSync(join(ROOT, 'deploy', 'plc-bridge.example.yaml'), 'utf8'), 'deploy/plc-bridge.example.yaml');

test('deploy/plc-bridge.example.yaml validates and resolves its addresses', () => {
  const config = parseBridgeConfig(example);
  const sorter = deviceTags(config.devices[0]!);
  assert.equal(sorter.get('counter')?.start, 99, 'a tag overriding the device addressing with 1');
  assert.equal(sorter.get('speed')?.start, 0);
  const pal = deviceTags(config.devices[1]!);
  assert.equal(pal.get('count')?.start, 0, '1-based device: address 1 is wire 0');
  assert.equal(pal.get('state')?.count, 2);
  assert.equal(config.devices[0]!.groups[0]!.staleAfterMs, 500);
  assert.equal(config.devices[0]!.groups[1]!.staleAfterMs, 15_000, '0 in the file: 3 × the group interval');
});

test('deploy/plc-bridge.example.yaml sets every key of the schema (clientId is commented out on purpose)', () => {
  const paths = schemaPaths(bridgeSchema);
  assert.ok(paths.includes('devices[].groups[].tags[].bit') && paths.includes('mqtt.tls.ca'), paths.join(', '));
  const missing = paths.filter((p) => !has(example, p) && p !== 'mqtt.clientId');
  assert.deepEqual(missing, []);
});

test('defaults fill a minimal file', () => {
  const config: BridgeConfig = parseBridgeConfig(withTags([{ name: 't', area: 'holding', address: 3, type: 'int16' }]));
  const d = config.devices[0]!;
  assert.deepEqual(
    { port: d.port, unitId: d.unitId, timeoutMs: d.timeoutMs, addressing: d.addressing, maxGap: d.maxGap, maxTimeouts: d.maxTimeouts },
    { port: 502, unitId: 1, timeoutMs: 1000, addressing: 0, maxGap: 0, maxTimeouts: 3 },
  );
  assert.deepEqual(d.groups[0]!.tags[0], {
    name: 't', area: 'holding', start: 3, count: 1, type: 'int16', order: 'ABCD', scale: 1, offset: 0, access: 'read', deadband: 0,
  });
  assert.equal(d.groups[0]!.intervalMs, 1000);
  assert.equal(d.groups[0]!.staleAfterMs, 3000);
  assert.equal(config.fullEveryMs, 60_000);
  assert.equal(config.maxSetBytes, 65_536);
  assert.equal(config.handover.timeoutMs, 30_000);
  assert.equal(config.heartbeat.intervalMs, 1000);
  assert.equal(config.mqtt.qos, 1);
  assert.equal(config.store.maxBytes, 64 * 1024 * 1024);
});

test('overrides win over the file', () => {
  const config = parseBridgeConfig({ ...(withTags([{ name: 't', area: 'coil', address: 0, type: 'bool' }]) as object), mqtt: { url: 'mqtt://a:1' } }, {
    broker: 'mqtt://b:2', gatewayId: 'other', dataDir: '/tmp/x',
  });
  assert.equal(config.mqtt.url, 'mqtt://b:2');
  assert.equal(config.gatewayId, 'other');
  assert.equal(config.dataDir, '/tmp/x');
});

test('sizes by type: 32-bit two registers, float64 four, string its length', () => {
  const config = parseBridgeConfig(
    withTags([
      { name: 'a', area: 'input', address: 0, type: 'uint32' },
      { name: 'b', area: 'input', address: 0, type: 'float32' },
      { name: 'c', area: 'input', address: 0, type: 'float64' },
      { name: 'd', area: 'input', address: 0, type: 'string', length: 5 },
      { name: 'e', area: 'discrete', address: 0, type: 'bool' },
      { name: 'f', area: 'input', address: 0, type: 'bool', bit: 15 },
    ]),
  );
  assert.deepEqual(config.devices[0]!.groups[0]!.tags.map((t) => t.count), [2, 2, 4, 5, 1, 1]);
});

test('every problem of the file is listed at once, with its key path', () => {
  const problems = problemsOf({
    gatewayId: 'bad id',
    mqtt: { qos: 2, bogus: 1 },
    devices: [
      { name: 'd1', host: 'h', groups: [{ name: 'g', intervalMs: 50, tags: [{ name: 't', area: 'coil', address: 0, type: 'int16' }] }] },
      { name: 'd1', host: '', groups: [] },
    ],
  });
  for (const path of ['gatewayId', 'mqtt.qos', 'mqtt', 'devices[0].groups[0].intervalMs', `${T}.type`, 'devices[1].host', 'devices[1].groups', 'devices[1].name']) {
    assert.ok(problems.some((p) => p.startsWith(`${path}: `)), `no problem at ${path}:\n  ${problems.join('\n  ')}`);
  }
  assert.ok(problems.some((p) => p.startsWith('mqtt: ') && /bogus/.test(p)), 'unknown keys are rejected');
  assert.equal(problems.length, 8);
});

test('names are [A-Za-z0-9_-]{1,64}', () => {
  expectProblem(withTags([{ name: 'a/b', area: 'coil', address: 0, type: 'bool' }]), `${T}.name`, /A-Za-z0-9/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }], { name: 'x+' }), 'devices[0].name', /A-Za-z0-9/);
  expectProblem(withTags([{ name: 'x'.repeat(65), area: 'coil', address: 0, type: 'bool' }]), `${T}.name`, /A-Za-z0-9/);
  expectProblem(
    { gatewayId: 'gw', devices: [{ name: 'd', host: 'h', groups: [{ name: 'set', tags: [{ name: 'a', area: 'coil', address: 0, type: 'bool' }] }] }] },
    'devices[0].groups[0].name',
    /reserved/,
  );
});

test('tag names are unique per device, across its groups; group and device names are unique', () => {
  const t = { name: 'same', area: 'coil', address: 0, type: 'bool' };
  const raw = {
    gatewayId: 'gw',
    devices: [
      { name: 'd', host: 'h', groups: [{ name: 'g', tags: [t] }, { name: 'g', tags: [t] }] },
      { name: 'e', host: 'h', groups: [{ name: 'g', tags: [t] }] },
    ],
  };
  const problems = problemsOf(raw);
  assert.ok(problems.some((p) => p.startsWith('devices[0].groups[1].tags[0].name: ') && /already a tag/.test(p)), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('devices[0].groups[1].name: ')), problems.join('\n'));
  assert.ok(!problems.some((p) => p.startsWith('devices[1]')), 'the same tag name on another device is fine');
  expectProblem({ gatewayId: 'gw', devices: [raw.devices[1], raw.devices[1]] }, 'devices[1].name', /already the name/);
});

test('intervalMs is at least 100', () => {
  expectProblem({ gatewayId: 'gw', devices: [{ name: 'd', host: 'h', groups: [{ name: 'g', intervalMs: 99, tags: [{ name: 'a', area: 'coil', address: 0, type: 'bool' }] }] }] }, 'devices[0].groups[0].intervalMs', />=100/);
});

test('addresses: 1-based address 1 is wire 0, address 0 is an error there, and every tag fits in 0..65535', () => {
  const one = parseBridgeConfig(withTags([{ name: 'a', area: 'holding', address: 1, type: 'uint16' }, { name: 'b', area: 'holding', address: 65536, type: 'uint16' }], { addressing: 1 }));
  assert.deepEqual(one.devices[0]!.groups[0]!.tags.map((t) => t.start), [0, 65535]);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'uint16' }], { addressing: 1 }), `${T}.address`, /1-based/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 65536, type: 'uint16' }]), `${T}.address`, /past the last address/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 65535, type: 'float32' }]), `${T}.address`, /run past/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 65530, type: 'string', length: 7 }]), `${T}.address`, /7 registers run past/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: -1, type: 'uint16' }]), `${T}.address`, />=0/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 1.5, type: 'uint16' }]), `${T}.address`, /expected int/);
  // The tag's own addressing overrides the device's.
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, addressing: 1, type: 'uint16' }]), `${T}.address`, /1-based/);
  const own = parseBridgeConfig(withTags([{ name: 'a', area: 'holding', address: 0, addressing: 0, type: 'uint16' }], { addressing: 1 }));
  assert.equal(own.devices[0]!.groups[0]!.tags[0]!.start, 0);
});

test('type rules: bits in coil/discrete, bit for a bool in registers, length for strings', () => {
  expectProblem(withTags([{ name: 'a', area: 'discrete', address: 0, type: 'uint16' }]), `${T}.type`, /must be bool/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool', bit: 1 }]), `${T}.bit`, /not in coil/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'bool' }]), `${T}.bit`, /needs bit/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'bool', bit: 16 }]), `${T}.bit`, /<=15/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', bit: 1 }]), `${T}.bit`, /only for type bool/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'string' }]), `${T}.length`, /needs length/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int32', length: 2 }]), `${T}.length`, /only for type string/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'string', length: 126 }]), `${T}.length`, /<=125/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'bool', bit: 0, order: 'DCBA' }]), `${T}.order`, /no meaning for bool/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int32', order: 'ADCB' }]), `${T}.order`, /ABCD/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int64' }]), `${T}.type`, /float64/);
  // 16-bit types take every order (BADC/DCBA swap the bytes): valid.
  parseBridgeConfig(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', order: 'DCBA' }]));
});

test('write access only in holding and coil; a writable string fits one FC16', () => {
  expectProblem(withTags([{ name: 'a', area: 'input', address: 0, type: 'int16', access: 'read-write' }]), `${T}.access`, /read-only/);
  expectProblem(withTags([{ name: 'a', area: 'discrete', address: 0, type: 'bool', access: 'write' }]), `${T}.access`, /read-only/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'string', length: 124, access: 'write' }]), `${T}.length`, /123/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', access: 'rw' }]), `${T}.access`, /read-write/);
});

test('scale, offset, deadband, min and max: numeric types only, scale not 0, min <= max', () => {
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', scale: 0 }]), `${T}.scale`, /not be 0/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool', scale: 2 }]), `${T}.scale`, /numeric/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'string', length: 1, offset: 2 }]), `${T}.offset`, /numeric/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool', deadband: 1 }]), `${T}.deadband`, /numeric/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool', min: 0 }]), `${T}.min`, /numeric/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', deadband: -1 }]), `${T}.deadband`, />=0/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', min: 5, max: 4 }]), `${T}.max`, /at least min/);
  expectProblem(withTags([{ name: 'a', area: 'holding', address: 0, type: 'int16', color: 'red' }]), T, /color/);
});

test('device and file bounds', () => {
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }], { port: 70000 }), 'devices[0].port', /65535/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }], { unitId: 256 }), 'devices[0].unitId', /255/);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }], { addressing: 2 }), 'devices[0].addressing', /./);
  expectProblem(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }], { maxGap: 124 }), 'devices[0].maxGap', /123/);
  expectProblem({ gatewayId: 'gw', devices: [] }, 'devices', />=1/);
  expectProblem({ gatewayId: 'gw' }, 'devices', /array/);
  expectProblem({ ...(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }]) as object), staleAfterMs: 50 }, 'staleAfterMs', /at least 100/);
  expectProblem({ ...(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }]) as object), mqtt: { tls: { cert: 'x' } } }, 'mqtt.tls.cert', /together/);
  expectProblem([], '(top level)', /mapping/);
});

test('a file-wide staleAfterMs applies to groups without their own', () => {
  const config = parseBridgeConfig({ ...(withTags([{ name: 'a', area: 'coil', address: 0, type: 'bool' }]) as object), staleAfterMs: 2500 });
  assert.equal(config.devices[0]!.groups[0]!.staleAfterMs, 2500);
});

test('loadBridgeConfig: missing file, unreadable, bad YAML, duplicate keys, then valid', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plc-config-'));
  try {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (err) {
        return err instanceof PlcError ? err.code : `not a PlcError: ${String(err)}`;
      }
      return undefined;
    };
    assert.equal(code(() => loadBridgeConfig(join(dir, 'nope.yaml'))), 'config-not-found');
    assert.equal(code(() => loadBridgeConfig(dir)), 'config-unreadable');
    const file = join(dir, 'b.yaml');
    writeFileSync(file, 'devices: [\n');
    assert.equal(code(() => loadBridgeConfig(file)), 'config-syntax');
    writeFileSync(file, 'gatewayId: a\ngatewayId: b\n');
    assert.equal(code(() => loadBridgeConfig(file)), 'config-syntax');
    // The problem names where it is.
    assert.throws(
      () => loadBridgeConfig(file),
      (e: unknown) => e instanceof PlcError && /duplicated mapping key at line 2, column 1/.test(String((e.detail as { problems: string[] }).problems[0])) && e.message.includes(file),
    );
    writeFileSync(file, 'gatewayId: a\n---\ngatewayId: b\n');
    assert.equal(code(() => loadBridgeConfig(file)), 'config-syntax', 'two documents in one file');
    // The YAML 1.2 core schema, as the agent's file: no timestamps, no yes/no booleans.
    assert.deepEqual(parseBridgeConfigText('a: 2001-12-14\nb: yes\nc: 0x10\nd: ~\n', 'x'), { a: '2001-12-14', b: 'yes', c: 16, d: null });
    assert.equal(parseBridgeConfigText('', 'x'), null);
    writeFileSync(file, 'gatewayId: a\n');
    assert.equal(code(() => loadBridgeConfig(file)), 'config-invalid');
    writeFileSync(file, readFileSync(join(ROOT, 'deploy', 'plc-bridge.example.yaml')));
    assert.equal(loadBridgeConfig(file, { gatewayId: 'zz' }).gatewayId, 'zz');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
