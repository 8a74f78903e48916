/**
 * The logs group's pure part: warnings and errors grouped by component and code with counts and
 * first/last seen (health/diag/logs.ts), and the bounded log ring it reads (lib/log-ring.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { groupLogLines, logsVerdict, MAX_GROUPS, type LogGroup } from '../../health/diag/logs.js';
import { LogRing, readRing, ringPaths } from '../../lib/log-ring.js';
import { createLogger } from '../../lib/log.js';
import { tempDir } from '../helpers/util.js';

const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const line = (o: Record<string, unknown>): string => JSON.stringify({ pid: 1, name: 'edge-agent', ...o });
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();

test('repeated errors are grouped by component and code, with count, first and last seen and the latest message', () => {
  const lines = [
    line({ level: 50, time: at(10), component: 'wms-link', code: 'ECONNREFUSED', msg: 'connect failed 1' }),
    line({ level: 30, time: at(11), component: 'wms-link', msg: 'reconnecting' }),
    line({ level: 50, time: at(20), component: 'wms-link', err: { code: 'ECONNREFUSED', message: 'x' }, msg: 'connect failed 2' }),
    line({ level: 40, time: at(5), component: 'outbox', code: 'outbox-full', msg: 'dropping' }),
    line({ level: 50, time: at(30), component: 'ota', code: 'ECONNREFUSED', msg: 'download failed' }),
    line({ level: 50, time: at(40), component: 'wms-link', code: 'ECONNREFUSED', msg: 'connect failed 3' }),
    line({ level: 40, time: at(41), component: 'outbox', code: 'outbox-full', msg: 'dropping again' }),
  ];
  const groups = groupLogLines(lines, T0);
  const wms = groups.find((g) => g.component === 'wms-link');
  assert.deepEqual(wms, { component: 'wms-link', code: 'ECONNREFUSED', level: 'error', count: 3, firstSeen: at(10), lastSeen: at(40), message: 'connect failed 3' });
  // The same code in another component is another group.
  assert.equal(groups.find((g) => g.component === 'ota')?.count, 1);
  const outbox = groups.find((g) => g.component === 'outbox');
  assert.deepEqual([outbox?.level, outbox?.count, outbox?.firstSeen, outbox?.lastSeen], ['warn', 2, at(5), at(41)]);
  assert.equal(groups.length, 3, 'info lines are not grouped');
  // Errors before warnings, the most frequent first.
  assert.deepEqual(
    groups.map((g) => g.component),
    ['wms-link', 'ota', 'outbox'],
  );
});

test('lines without a code are grouped by message; old, malformed and info lines are ignored', () => {
  const lines = [
    line({ level: 40, time: at(1), component: 'router', msg: 'duplicate command id' }),
    line({ level: 40, time: at(2), component: 'router', msg: 'duplicate command id' }),
    line({ level: 40, time: at(3), component: 'router', msg: 'command expired' }),
    line({ level: 60, time: at(-100), component: 'router', msg: 'too old' }),
    'not json at all',
    JSON.stringify([1, 2]),
    line({ level: 40, component: 'router', msg: 'no time' }),
  ];
  const groups = groupLogLines(lines, T0);
  assert.deepEqual(
    groups.map((g) => [g.message, g.code, g.count]),
    [
      ['duplicate command id', null, 2],
      ['command expired', null, 1],
    ],
  );
});

test('the logs verdict: errors in the last hour warn, older ones do not; the groups shown are bounded', () => {
  const g = (lastSeen: number, level: LogGroup['level'] = 'error', n = 1): LogGroup => ({ component: `c${n}`, code: 'x', level, count: 2, firstSeen: new Date(lastSeen).toISOString(), lastSeen: new Date(lastSeen).toISOString(), message: 'm' });
  const now = T0 + 10 * 3600_000;
  assert.equal(logsVerdict([g(now - 60_000)], now).status, 'warning');
  assert.equal(logsVerdict([g(now - 2 * 3600_000)], now).status, 'ok');
  assert.equal(logsVerdict([g(now - 60_000, 'warn')], now).status, 'ok');
  assert.equal(logsVerdict([], now).status, 'ok');
  const many = Array.from({ length: MAX_GROUPS + 5 }, (_, i) => g(now, 'warn', i));
  const d = logsVerdict(many, now).details as { groups: unknown[]; more: number };
  assert.equal(d.groups.length, MAX_GROUPS);
  assert.equal(d.more, 5);
});

test('the log ring rotates at maxBytes and keeps the number of files asked for', () => {
  const dir = tempDir('ring');
  const ring = new LogRing({ dir, maxBytes: 1024, files: 2 });
  for (let i = 0; i < 200; i++) ring.write(`${JSON.stringify({ i, pad: 'x'.repeat(40) })}\n`);
  ring.close();
  const [cur, old, none] = ringPaths(dir, 3);
  assert.ok(statSync(cur!).size <= 1024 && statSync(old!).size <= 1024, 'each file is within its bound');
  assert.throws(() => statSync(none!), /ENOENT/, 'no third file');
  const lines = readRing(dir, 2);
  assert.equal(JSON.parse(lines.at(-1)!).i, 199, 'the newest line is last');
  const is = lines.map((l) => (JSON.parse(l) as { i: number }).i);
  assert.deepEqual(is, [...is].sort((a, b) => a - b), 'oldest first, in order');
  assert.ok(is.length < 200, 'old lines are gone');
});

test('readRing reads at most maxBytes and drops the partial first line', () => {
  const dir = tempDir('ring-read');
  writeFileSync(join(dir, 'agent.log'), 'aaaa\nbbbb\ncccc\n');
  assert.deepEqual(readRing(dir, 2, 8), ['cccc']);
});

test('createLogger with a ring tees info and above into it, redacted, and keeps debug out of it', () => {
  const dir = tempDir('ring-logger');
  const out: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void out.push(s) }, ring: { dir, maxBytes: 64 * 1024, files: 2 } });
  logger.debug('debug line');
  logger.warn({ component: 'x', password: 'hunter2-secret' }, 'warn line');
  logger.info('info line');
  const ring = readFileSync(join(dir, 'agent.log'), 'utf8');
  assert.equal(out.length, 3, 'stdout gets every level the logger lets through');
  assert.match(ring, /warn line/);
  assert.match(ring, /info line/);
  assert.doesNotMatch(ring, /debug line/);
  assert.doesNotMatch(ring, /hunter2-secret/);
});
