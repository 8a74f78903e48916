/**
 * After a rollback (by the WMS, the health gate or the boot guard) the older release runs on the
 * store the newer one migrated. lib/sqlite.ts skips versions it does not know, so that works as
 * long as every migration only adds (docs/architecture.md, Updates). This keeps it so: each
 * statement of STORE_MIGRATIONS creates a table or an index, or adds a column.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STORE_MIGRATIONS } from '../../agent/main.js';

const ADDITIVE = /^(CREATE (TABLE|(UNIQUE )?INDEX)( IF NOT EXISTS)? |ALTER TABLE \S+ ADD (COLUMN )?)/i;

/** The SQL statements of a migration, comments and blank ones dropped. */
function statements(sql: string): string[] {
  return sql
    .replace(/--[^\n]*/g, '')
    .split(';')
    .map((s) => s.trim().replace(/\s+/g, ' '))
    .filter((s) => s !== '');
}

test('every store migration only adds tables, indexes or columns (an older release can run on the newer store)', () => {
  const bad: string[] = [];
  for (const set of STORE_MIGRATIONS) {
    for (const m of set.migrations) {
      const where = `${set.domain} v${m.version}`;
      if (typeof m.up !== 'string') {
        bad.push(`${where}: a function migration; make it SQL that only adds, or show that the previous release still runs on its result and list it here`);
        continue;
      }
      for (const st of statements(m.up)) if (!ADDITIVE.test(st)) bad.push(`${where}: ${st.slice(0, 80)}`);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(STORE_MIGRATIONS.length >= 5, 'the store migrations are all listed');
});

test('the check itself refuses what an older release could not run on', () => {
  for (const sql of ['DROP TABLE commands', 'ALTER TABLE outbox RENAME COLUMN seq TO n', 'ALTER TABLE outbox DROP COLUMN kind', 'UPDATE commands SET status = 1']) {
    assert.equal(statements(sql).every((s) => ADDITIVE.test(s)), false, sql);
  }
  assert.equal(statements('CREATE TABLE x (a INTEGER); -- note\nCREATE INDEX x_a ON x(a); ALTER TABLE x ADD COLUMN b TEXT').every((s) => ADDITIVE.test(s)), true);
});
