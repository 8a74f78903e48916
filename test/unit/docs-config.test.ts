/**
 * Keeps docs/configuration.md true: its example (the first ```yaml block) validates against the
 * schema, ships unchanged as deploy/config.example.yaml, and names every key of the schema, so
 * a new config key cannot land without being documented.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { z } from 'zod';
import { configSchema, parseConfigText, validateConfig } from '../../core/config.js';

// dist/test/unit/docs-config.test.js -> the repository root.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOC = join(ROOT, 'docs', 'configuration.md');
const EXAMPLE = join(ROOT, 'deploy', 'config.example.yaml');

function firstYamlBlock(markdown: string): string {
  const m = /^```yaml[ \t]*\n([\s\S]*?)^```[ \t]*$/m.exec(markdown);
  assert.ok(m?.[1] !== undefined, 'docs/configuration.md has no ```yaml block');
  return m[1];
}

/** Dotted paths of every leaf value (non-object, or array) of a plain object. */
function leafPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return prefix === '' ? [] : [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => leafPaths(v, prefix === '' ? k : `${prefix}.${k}`));
}

/** Dotted paths of every leaf key the schema declares, optional ones and ones without defaults included. */
function schemaPaths(schema: z.ZodType, prefix = ''): string[] {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else break;
  }
  if (!(s instanceof z.ZodObject)) return [prefix];
  return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => schemaPaths(v, prefix === '' ? k : `${prefix}.${k}`));
}

function has(doc: unknown, path: string): boolean {
  let cur: unknown = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return false;
    cur = (cur as Record<string, unknown>)[part];
  }
  return true;
}

const block = firstYamlBlock(readFileSync(DOC, 'utf8'));

test('the example in docs/configuration.md is valid YAML that validates', () => {
  const raw = parseConfigText(block, 'docs/configuration.md');
  const config = validateConfig(raw);
  assert.equal(config.gatewayId, (raw as { gatewayId?: unknown }).gatewayId);
});

test('deploy/config.example.yaml is the example of docs/configuration.md', () => {
  assert.equal(readFileSync(EXAMPLE, 'utf8'), block);
});

test('the example sets every key that has a default', () => {
  const raw = parseConfigText(block, 'docs/configuration.md');
  const defaults = leafPaths(validateConfig({ gatewayId: 'x' }));
  assert.ok(defaults.length > 20, `suspiciously few defaults: ${defaults.join(', ')}`);
  const missing = defaults.filter((p) => !has(raw, p));
  assert.deepEqual(missing, [], `keys missing from the example in docs/configuration.md: ${missing.join(', ')}`);
});

test('the example sets every key of the schema, optional ones included', () => {
  const raw = parseConfigText(block, 'docs/configuration.md');
  const paths = schemaPaths(configSchema);
  assert.ok(paths.includes('mqtt.tls.ca') && paths.includes('admin.socket'), `schema walk found: ${paths.join(', ')}`);
  const missing = paths.filter((p) => !has(raw, p));
  assert.deepEqual(missing, [], `keys missing from the example in docs/configuration.md: ${missing.join(', ')}`);
});

test('every key of the schema is named in docs/configuration.md outside the example', () => {
  const doc = readFileSync(DOC, 'utf8').replace(block, '');
  const missing = schemaPaths(configSchema).filter((p) => !doc.includes(`\`${p}\``));
  assert.deepEqual(missing, [], `keys without a description in docs/configuration.md: ${missing.join(', ')}`);
});
