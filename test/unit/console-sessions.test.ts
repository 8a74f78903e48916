/**
 * The console's pairing codes, sessions, request checks and event ring (console/sessions.ts,
 * guard.ts, stream.ts), with a fake clock: expiry (code, idle, absolute), single use, the rate
 * limit, revocation, Host and Origin rules, and resume by Last-Event-ID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fakeClock } from '../helpers/fake-clock.js';
import { DEFAULT_LIMITS, SessionStore, sameSecret } from '../../console/sessions.js';
import { allowedHosts, hostAllowed, originAllowed, readCookie, streamOriginAllowed } from '../../console/guard.js';
import { EventRing, formatEvent } from '../../console/stream.js';

test('a code is single-use and lasts 10 minutes', async () => {
  const clock = fakeClock();
  const s = new SessionStore(clock);
  const a = s.pair('operator');
  assert.match(a.code, /^[A-HJ-NP-Z2-9]{10}$/);
  const r = s.redeem(a.code.toLowerCase(), 'c1');
  assert.ok(r.ok && r.session.role === 'operator' && r.id.length === 43);
  assert.ok(!JSON.stringify(r.session).includes(r.id), 'the store keeps only a digest of the id');
  assert.deepEqual(s.redeem(a.code, 'c1'), { ok: false, reason: 'wrong-code' });
  const b = s.pair('viewer');
  await clock.advance(10 * 60_000);
  assert.deepEqual(s.redeem(b.code, 'c2'), { ok: false, reason: 'wrong-code' });
});

test('sessions end when idle and at their absolute expiry, and on revocation', async () => {
  const clock = fakeClock();
  const s = new SessionStore(clock, { ...DEFAULT_LIMITS, idleMs: 60_000, absoluteMs: 150_000 });
  const r = s.redeem(s.pair('viewer').code, 'c');
  assert.ok(r.ok);
  const id = r.id;
  await clock.advance(59_000);
  assert.ok(s.get(id), 'used within the idle time');
  await clock.advance(59_000);
  assert.ok(s.get(id));
  await clock.advance(40_000);
  assert.equal(s.get(id), undefined, 'past the absolute expiry although used');
  const r2 = s.redeem(s.pair('viewer').code, 'c');
  assert.ok(r2.ok);
  await clock.advance(60_000);
  assert.equal(s.get(r2.id), undefined, 'idle');
  const r3 = s.redeem(s.pair('viewer').code, 'c');
  assert.ok(r3.ok);
  assert.equal(s.list().length, 1);
  assert.equal(s.revoke(r3.session.label), 1);
  assert.equal(s.get(r3.id), undefined);
  assert.equal(s.get(undefined), undefined);
  assert.equal(s.get(''), undefined);
  assert.equal(s.get(`${r3.id}x`), undefined);
});

test('sessions persist as digests and come back after a restart', async () => {
  const clock = fakeClock();
  let saved: unknown[] = [];
  const persist = { load: () => saved as never[], save: (l: readonly unknown[]) => void (saved = JSON.parse(JSON.stringify(l)) as unknown[]) };
  const s = new SessionStore(clock, DEFAULT_LIMITS, persist);
  const r = s.redeem(s.pair('operator').code, 'c');
  assert.ok(r.ok);
  assert.equal(saved.length, 1, 'written at pairing');
  assert.ok(!JSON.stringify(saved).includes(r.id));
  const again = new SessionStore(clock, DEFAULT_LIMITS, persist);
  assert.equal(again.get(r.id)?.role, 'operator');
  again.revoke('all');
  assert.equal(saved.length, 0, 'written at revocation');
});

test('wrong codes are rate-limited per client and in total', async () => {
  const clock = fakeClock();
  const s = new SessionStore(clock);
  for (let i = 0; i < 5; i++) assert.equal(s.redeem('NOPE', 'a').ok, false);
  const code = s.pair('viewer').code;
  assert.deepEqual(s.redeem(code, 'a'), { ok: false, reason: 'rate-limited' });
  assert.ok(s.redeem(code, 'b').ok, 'another client is not limited by the first');
  for (let i = 0; i < 15; i++) s.redeem('NOPE', `x${i % 3}`);
  assert.deepEqual(s.redeem(s.pair('viewer').code, 'fresh'), { ok: false, reason: 'rate-limited' }, 'the total limit');
  await clock.advance(60_000);
  assert.ok(s.redeem(s.pair('viewer').code, 'a').ok, 'a minute later');
});

test('constant-time comparison of secrets of any length', () => {
  assert.ok(sameSecret('abc', 'abc'));
  assert.ok(!sameSecret('abc', 'abd'));
  assert.ok(!sameSecret('abc', 'abcd'));
});

test('Host, Origin and cookie checks', () => {
  const hosts = allowedHosts('127.0.0.1', ['gw.local']);
  for (const h of ['127.0.0.1:8080', 'localhost:8080', 'LOCALHOST', 'gw.local:8443', '[::1]:8080']) assert.ok(hostAllowed(h, hosts), h);
  for (const h of [undefined, '', 'evil.example', '127.0.0.2:8080', 'gw.local.evil:80', '127.0.0.1.nip.io']) assert.ok(!hostAllowed(h, hosts), String(h));
  assert.ok(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080', false));
  assert.ok(!originAllowed('https://127.0.0.1:8080', '127.0.0.1:8080', false));
  assert.ok(!originAllowed('http://localhost:8080', '127.0.0.1:8080', false));
  assert.ok(!originAllowed(undefined, '127.0.0.1:8080', false));
  assert.ok(!originAllowed('null', '127.0.0.1:8080', false));
  assert.ok(streamOriginAllowed(undefined, 'same-origin', '127.0.0.1:1', false));
  assert.ok(streamOriginAllowed(undefined, undefined, '127.0.0.1:1', false));
  assert.ok(!streamOriginAllowed('http://evil', undefined, '127.0.0.1:1', false));
  assert.ok(!streamOriginAllowed(undefined, 'cross-site', '127.0.0.1:1', false));
  assert.equal(readCookie('a=1; edge_console=xyz; b=2', 'edge_console'), 'xyz');
  assert.equal(readCookie('edge_consolex=1', 'edge_console'), undefined);
});

test('the ring numbers events, replays after an id it still holds, and refuses others', () => {
  const ring = new EventRing(3);
  const e1 = ring.publish('status', { a: 1 });
  const e2 = ring.publish('plc', { values: [] });
  assert.deepEqual(ring.since(e1.id)?.map((e) => e.id), [e2.id]);
  assert.deepEqual(ring.since(e2.id), []);
  ring.publish('status', {});
  ring.publish('status', {});
  ring.publish('status', {});
  assert.equal(ring.since(e1.id), undefined, 'fell out of the ring: a snapshot instead');
  assert.equal(ring.since(`00000000-1`), undefined);
  assert.equal(ring.since('garbage'), undefined);
  assert.equal(ring.since(`${ring.epoch}-999`), undefined);
  const small = new EventRing(1000, 250);
  const first = small.publish('plc', { v: 'x'.repeat(100) });
  for (let i = 0; i < 5; i++) small.publish('plc', { v: 'x'.repeat(100) });
  assert.equal(small.since(first.id), undefined, 'bounded by bytes too');
  assert.equal(small.since(`${small.epoch}-5`)?.length, 1);
  assert.equal(formatEvent(e1), `id: ${e1.id}\nevent: status\ndata: {"a":1}\n\n`);
});

test('a change nobody listened to is not kept: an id from before it gets a snapshot, not a replay without it', () => {
  const ring = new EventRing();
  const before = ring.publish('status', { a: 1 });
  ring.skip();
  assert.equal(ring.since(before.id), undefined, 'a snapshot instead');
  const snapshotId = ring.lastId();
  assert.deepEqual(ring.since(snapshotId), [], 'a snapshot taken after it resumes');
  const next = ring.publish('plc', { device: 'd', group: 'g', values: {} });
  assert.deepEqual(ring.since(snapshotId)?.map((e) => e.id), [next.id]);
});
