/**
 * Maintenance windows (maintenance/windows.ts, window-answer.ts) on a real SQLite store and a
 * controllable clock: inside/outside, the announcement before the window with its start and end,
 * defer and skip with their confirmations and rejections, all kept across a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { SCHEDULE_MIGRATIONS } from '../../maintenance/schedule-store.js';
import { MaintenanceWindows, type WindowDef, type WindowEvent } from '../../maintenance/windows.js';
import { answerWindow, WindowAnswerError, windowOpsPort } from '../../maintenance/window-answer.js';
import { fakeClock, type FakeClock } from '../helpers/fake-clock.js';

const T0 = Date.UTC(2026, 11, 6, 1, 0, 0);
const SEC = 1000;
const iso = (t: number): string => new Date(t).toISOString();

// Every minute at :30 for 20 s; announced 10 s before.
const DEFS: WindowDef[] = [{ id: 'w', cron: '30 * * * * *', durationSec: 20 }];

function open(path: string): Db {
  return openDatabase(path, { migrations: [SCHEDULE_MIGRATIONS] });
}

function windows(db: Db, clock: FakeClock, events: WindowEvent[], defs = DEFS, maxDeferSec = 60): MaintenanceWindows {
  return new MaintenanceWindows({ db, log: silentLogger(), windows: defs, announceSec: 10, maxDeferSec, emit: (e) => events.push(e), planned: () => ['maintenance-weekly'], clock });
}

function setup(): { path: string; db: Db; clock: FakeClock; events: WindowEvent[]; w: MaintenanceWindows } {
  const path = join(mkdtempSync(join(tmpdir(), 'windows-')), 'agent.db');
  const db = open(path);
  const clock = fakeClock(T0);
  const events: WindowEvent[] = [];
  return { path, db, clock, events, w: windows(db, clock, events) };
}

test('inside and outside a window; the next windows', () => {
  const { w } = setup();
  assert.equal(w.isInsideWindow(T0 + 29 * SEC), false);
  assert.equal(w.isInsideWindow(T0 + 30 * SEC), true);
  assert.equal(w.isInsideWindow(T0 + 49 * SEC), true);
  assert.equal(w.isInsideWindow(T0 + 50 * SEC), false);
  assert.deepEqual(w.insideWindow(T0 + 35 * SEC).window?.start, T0 + 30 * SEC);
  assert.deepEqual(w.insideWindow(T0 + 55 * SEC).next?.start, T0 + 90 * SEC);
  assert.deepEqual(w.nextWindows(T0, 2).map((o) => [o.start, o.end]), [[T0 + 30 * SEC, T0 + 50 * SEC], [T0 + 90 * SEC, T0 + 110 * SEC]]);
  const none = new MaintenanceWindows({ db: open(join(mkdtempSync(join(tmpdir(), 'windows-')), 'a.db')), log: silentLogger(), windows: [], announceSec: 10, maxDeferSec: 60, emit: () => undefined });
  assert.equal(none.isInsideWindow(T0), false, 'no window configured: never inside');
  assert.deepEqual(none.nextWindows(T0), []);
});

test('the window is announced announceSec before it opens, with its start, end and procedures; then started and ended', async () => {
  const { clock, events, w } = setup();
  w.start();
  await clock.advance(19 * SEC);
  assert.equal(events.length, 0, 'nothing before the announcement');
  await clock.advance(1 * SEC);
  assert.equal(events.length, 1);
  assert.deepEqual(
    { ...events[0], ts: undefined, message: undefined },
    { type: 'maintenance-window', severity: 'info', code: 'window-announced', message: undefined, ts: undefined, id: 'w', start: iso(T0 + 30 * SEC), end: iso(T0 + 50 * SEC), procedures: ['maintenance-weekly'], action: 'announced' },
  );
  assert.equal(events[0]?.ts, iso(T0 + 20 * SEC));
  await clock.advance(30 * SEC);
  w.stop();
  assert.deepEqual(events.map((e) => [e.action, e.ts]), [['announced', iso(T0 + 20 * SEC)], ['started', iso(T0 + 30 * SEC)], ['ended', iso(T0 + 50 * SEC)]]);
});

test('defer moves the window and is confirmed with deferred; a restart keeps it and announces nothing twice', async () => {
  const { path, db, clock, events, w } = setup();
  w.start();
  await clock.advance(22 * SEC);
  const r = answerWindow(w, { window: { id: 'w', action: 'defer', bySec: 15 } });
  assert.deepEqual(r, { ok: true, result: { id: 'w', action: 'defer', start: iso(T0 + 45 * SEC), end: iso(T0 + 65 * SEC), deferredSec: 15 } });
  assert.deepEqual(events.map((e) => [e.action, e.start, e.end]), [['announced', iso(T0 + 30 * SEC), iso(T0 + 50 * SEC)], ['deferred', iso(T0 + 45 * SEC), iso(T0 + 65 * SEC)]]);
  // Restart: the deferral holds.
  w.stop();
  db.close();
  const db2 = open(path);
  const w2 = windows(db2, clock, events);
  w2.start();
  await clock.advance(10 * SEC); // T0+32
  assert.equal(w2.isInsideWindow(), false, 'not at the old start');
  await clock.advance(13 * SEC); // T0+45
  assert.equal(w2.isInsideWindow(), true, 'inside from the new start');
  await clock.advance(20 * SEC); // T0+65
  w2.stop();
  assert.deepEqual(
    events.map((e) => [e.action, e.ts]),
    [
      ['announced', iso(T0 + 20 * SEC)],
      ['deferred', iso(T0 + 22 * SEC)],
      ['started', iso(T0 + 45 * SEC)],
      ['ended', iso(T0 + 65 * SEC)],
    ],
  );
  // Beyond the maximum (60 s in total): 15 already, 50 more is too much.
  await clock.advance(15 * SEC); // T0+80: the next occurrence (T0+90) is announced
  const w3 = windows(db2, clock, events);
  w3.start();
  assert.equal(events.at(-1)?.action, 'announced');
  assert.equal(events.at(-1)?.start, iso(T0 + 90 * SEC));
  const tooFar = answerWindow(w3, { window: { id: 'w', action: 'defer', bySec: 61 } });
  assert.equal(tooFar.ok ? 'ok' : tooFar.code, 'window-defer-beyond-max');
  assert.equal(answerWindow(w3, { window: { id: 'w', action: 'defer', bySec: 40 } }).ok, true);
  const again = answerWindow(w3, { window: { id: 'w', action: 'defer', bySec: 21 } });
  assert.equal(again.ok ? 'ok' : again.code, 'window-defer-beyond-max', 'deferrals add up');
  w3.stop();
});

test('skip is confirmed with skipped: the window never opens, even after a restart', async () => {
  const { path, db, clock, events, w } = setup();
  w.start();
  await clock.advance(25 * SEC);
  const r = answerWindow(w, { window: { id: 'w', action: 'skip' } });
  assert.equal(r.ok, true);
  w.stop();
  db.close();
  const w2 = windows(open(path), clock, events);
  w2.start();
  await clock.advance(10 * SEC); // T0+35
  assert.equal(w2.isInsideWindow(), false);
  assert.equal(w2.insideWindow().next?.start, T0 + 90 * SEC, 'the next window is the following one');
  await clock.advance(20 * SEC);
  w2.stop();
  assert.deepEqual(events.map((e) => e.action), ['announced', 'skipped']);
  assert.equal(events[1]?.start, iso(T0 + 30 * SEC));
});

test('answers are rejected with their codes and change nothing', async () => {
  const { clock, events, w } = setup();
  w.start();
  const code = (p: unknown): string => {
    const r = answerWindow(w, p);
    return r.ok ? 'ok' : r.code;
  };
  assert.equal(code({ window: { id: 'w', action: 'skip' } }), 'window-not-announced', 'before the announcement');
  await clock.advance(20 * SEC);
  assert.equal(code({ window: { id: 'nope', action: 'skip' } }), 'unknown-window');
  assert.equal(code({ window: { id: 'w', action: 'postpone' } }), 'invalid-window-answer');
  assert.equal(code({ window: { id: 'w', action: 'defer', bySec: 1.5 } }), 'invalid-window-answer');
  assert.equal(code({ window: { id: 'w', action: 'skip', bySec: 5 } }), 'invalid-window-answer');
  assert.equal(code({ window: { id: 'w', action: 'skip' }, procedure: 'x' }), 'invalid-window-answer');
  assert.equal(code(null), 'invalid-window-answer');
  assert.equal(code({ window: { id: 'w', action: 'defer', bySec: 61 } }), 'window-defer-beyond-max');
  await clock.advance(10 * SEC);
  assert.equal(code({ window: { id: 'w', action: 'defer', bySec: 5 } }), 'window-not-announced', 'once started');
  w.stop();
  assert.deepEqual(events.map((e) => e.action), ['announced', 'started'], 'no rejected answer changed anything');
});

test('windowOpsPort: the shape the maintenance operation takes; a refusal throws its code', async () => {
  const { clock, w } = setup();
  const port = windowOpsPort(w);
  assert.equal(port.knows('w'), true);
  assert.equal(port.knows('nope'), false);
  assert.equal(port.inside(T0 + 35 * SEC), true);
  assert.equal(port.inside(T0 + 55 * SEC), false);
  assert.throws(() => port.answer({ id: 'w', action: 'skip' }), (err: unknown) => err instanceof WindowAnswerError && err.code === 'window-not-announced');
  w.start();
  await clock.advance(20 * SEC);
  assert.deepEqual(port.answer({ id: 'w', action: 'defer', bySec: 5 }), { id: 'w', action: 'defer', start: iso(T0 + 35 * SEC), end: iso(T0 + 55 * SEC), deferredSec: 5 });
  w.stop();
});
