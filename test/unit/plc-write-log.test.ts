/**
 * The bridge's write log (plc-bridge/store.ts) and the agent's reading of it
 * (agent/plc-write-audit.ts entriesFor): one row per claimed write at its terminal status, in
 * seq order across two store handles on one file (a handover), and the entries an audit pull
 * makes of a page, with a gap and a new log recorded rather than passed over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ForwardStore } from '../../plc-bridge/store.js';
import { entriesFor } from '../../agent/plc-write-audit.js';
import { controlWrite } from '../../plc-bridge/main.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir } from '../helpers/util.js';

function openStore(path: string): ForwardStore {
  const s = new ForwardStore({ path, maxBytes: 1 << 20, maxAgeSec: 3600, logger: silentLogger() });
  s.open();
  return s;
}

const msg = (id: string, status: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ id, op: 'set', status, ts: 'x', ...extra });

test('a write gets its log row at its terminal status, with origin, values, reason and result; two handles share one sequence', () => {
  const path = join(tempDir('plc-write-log'), 'b.db');
  const a = openStore(path);
  const b = openStore(path);
  a.claimWrites([
    { id: 'w1', device: 'plc0', lastMessage: msg('w1', 'accepted'), terminal: false, origin: 'wms:w1', request: JSON.stringify({ sp: 4 }) },
    { id: 'w2', device: 'plc0', lastMessage: msg('w2', 'rejected', { reason: { code: 'read-only', message: 'no' } }), terminal: true, origin: 'console:s-1', request: JSON.stringify({ speed: 1 }) },
  ]);
  assert.deepEqual(a.writeLog(0, 10).records.map((r) => [r.id, r.status, r.origin]), [['w2', 'rejected', 'console:s-1']], 'only terminal writes are in the log');
  a.recordWrite('w1', msg('w1', 'executing'), false);
  assert.equal(a.writeLog(0, 10).records.length, 1);
  a.recordWrite('w1', msg('w1', 'successful', { result: { readBack: { sp: 4 } } }), true);
  // The successor of a handover opens the same file: its rows continue the sequence.
  b.claimWrites([{ id: 'w3', device: 'plc0', lastMessage: msg('w3', 'accepted'), terminal: false, origin: 'wms:w3', request: JSON.stringify({ sp: 5 }) }]);
  assert.equal(b.closeUnfinishedWrites((w) => msg(w.id, 'failed', { reason: { code: 'interrupted' } })).length, 1);
  const page = b.writeLog(0, 10);
  assert.equal(page.log, a.writeLog(0, 1).log);
  assert.match(page.log, /^[0-9a-f]{32}$/);
  assert.deepEqual(
    page.records.map((r) => [r.seq, r.id, r.status, r.reason?.code ?? null, r.tags]),
    [
      [1, 'w2', 'rejected', 'read-only', { speed: 1 }],
      [2, 'w1', 'successful', null, { sp: 4 }],
      [3, 'w3', 'failed', 'interrupted', { sp: 5 }],
    ],
  );
  assert.deepEqual(page.records[1]?.result, { readBack: { sp: 4 } });
  assert.deepEqual(b.writeLog(2, 10).records.map((r) => r.id), ['w3'], 'read from a cursor');
  assert.deepEqual([page.first, page.last], [1, 3]);
  a.close();
  b.close();
});

test('a pull records its page from the cursor; rows dropped before they were read become a gap entry; a new log a reset', () => {
  const rec = (seq: number): { seq: number; id: string; device: string; origin: string; tags: Record<string, unknown>; status: string; at: string } => ({
    seq,
    id: `w${seq}`,
    device: 'plc0',
    origin: `wms:w${seq}`,
    tags: { sp: seq },
    status: 'successful',
    at: '2026-01-01T00:00:00.000Z',
  });
  const first = entriesFor(undefined, { log: 'L1', first: 1, last: 2, records: [rec(1), rec(2)] });
  assert.deepEqual(first.entries.map((e) => [e.actor, e.action, e.target, e.outcome]), [
    ['wms:w1', 'plc-write', 'plc0', 'successful'],
    ['wms:w2', 'plc-write', 'plc0', 'successful'],
  ]);
  assert.deepEqual(first.next, { log: 'L1', seq: 2 });
  const gap = entriesFor({ log: 'L1', seq: 2 }, { log: 'L1', first: 6, last: 6, records: [rec(6)] });
  assert.deepEqual(gap.entries[0]?.details, { log: 'L1', fromSeq: 3, toSeq: 5 });
  assert.equal(gap.entries[0]?.action, 'plc-write-gap');
  assert.equal(gap.entries[1]?.actor, 'wms:w6');
  const reset = entriesFor({ log: 'L1', seq: 6 }, { log: 'L2', first: 1, last: 1, records: [] });
  assert.deepEqual(reset.entries.map((e) => e.action), ['plc-write-log-reset']);
  assert.deepEqual(reset.next, { log: 'L2', seq: 0 });
  assert.deepEqual(entriesFor({ log: 'L2', seq: 0 }, { log: 'L2', first: 0, last: 0, records: [] }).entries, []);
  const failed = entriesFor(undefined, { log: 'L', first: 1, last: 1, records: [{ ...rec(1), status: 'failed', reason: { code: 'readback-mismatch', message: 'differs' }, result: { readBack: { sp: 0 } } }] });
  assert.equal(failed.entries[0]?.outcome, 'failed/readback-mismatch');
  assert.deepEqual(failed.entries[0]?.details?.readBack, { sp: 0 });
});

test("the control socket's write: an id, a device, tags and who asked, or invalid-params before anything is claimed", () => {
  assert.deepEqual(controlWrite({ id: 'console-1-ab', device: 'plc0', tags: { sp: 1 }, origin: 'console:s-1a2b' }), { id: 'console-1-ab', device: 'plc0', tags: { sp: 1 }, origin: 'console:s-1a2b' });
  for (const bad of [
    { device: 'plc0', tags: {}, origin: 'console:s' },
    { id: 'a b', device: 'plc0', tags: {}, origin: 'console:s' },
    { id: 'x', tags: {}, origin: 'console:s' },
    { id: 'x', device: 'plc0', tags: [1], origin: 'console:s' },
    { id: 'x', device: 'plc0', tags: {} },
    { id: 'x', device: 'plc0', tags: {}, origin: 'console:<script>' },
  ]) {
    assert.throws(() => controlWrite(bad), (e: unknown) => (e as { code?: string }).code === 'invalid-params', JSON.stringify(bad));
  }
});
