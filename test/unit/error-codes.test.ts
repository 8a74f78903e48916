/**
 * Every error code a domain registers (lib/errors.ts ERROR_CODE_TABLES) is documented in
 * docs/errors.md, as `code`, in the section whose heading names the domain. Importing the
 * modules only registers their tables; importing never starts work (STYLE.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ERROR_CODE_TABLES } from '../../lib/errors.js';
import '../../core/config.js';
import '../../agent/command-parse.js';
import '../../core/admin.js';
import '../../lib/rpc.js';
import '../../certs/trust.js';
import '../../ota/errors.js';
// The A/B slot state machine (ota/slots.ts; the boot guard runs it too).
import '../../ota/slots.js';
// The PLC bridge is its own process: agent/main.ts does not import it.
import '../../plc-bridge/errors.js';
// Not wired into the daemon yet (issue 13).
import '../../maintenance/errors.js';
// The composition root imports every module that registers codes, today and later.
import '../../agent/main.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOC = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');

interface Section {
  heading: string;
  level: number;
  body: string;
}

/** Splits markdown into sections at ATX headings; a section ends at the next heading of its level or above. */
function sections(markdown: string): Section[] {
  const lines = markdown.split('\n');
  const heads = lines.flatMap((line, i) => {
    const m = /^(#{1,6})\s+(.*)$/.exec(line);
    return m?.[1] && m[2] !== undefined ? [{ i, level: m[1].length, heading: m[2] }] : [];
  });
  return heads.map((h) => {
    const end = heads.find((o) => o.i > h.i && o.level <= h.level)?.i ?? lines.length;
    return { heading: h.heading, level: h.level, body: lines.slice(h.i + 1, end).join('\n') };
  });
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The text of the sections whose heading names the domain as a word. */
function domainText(domain: string): string {
  const word = new RegExp(`(^|[^A-Za-z0-9-])${escape(domain)}($|[^A-Za-z0-9-])`);
  return sections(DOC)
    .filter((s) => word.test(s.heading))
    .map((s) => s.body)
    .join('\n');
}

test('the code tables of the core domains are registered', () => {
  for (const d of ['config', 'commands', 'admin', 'trust', 'ota']) assert.ok(ERROR_CODE_TABLES[d]?.length, `no codes registered for ${d}`);
});

for (const [domain, codes] of Object.entries(ERROR_CODE_TABLES)) {
  test(`docs/errors.md documents every "${domain}" code under a heading naming the domain`, () => {
    const text = domainText(domain);
    assert.notEqual(text, '', `docs/errors.md has no heading naming the domain "${domain}"`);
    const missing = codes.filter((c) => !text.includes(`\`${c}\``));
    assert.deepEqual(missing, [], `codes of "${domain}" missing from docs/errors.md: ${missing.join(', ')}`);
  });
}
