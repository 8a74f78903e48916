/** Broker failover order and the first reconnect's delay (lib/broker-list.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerList, firstReconnectDelay } from '../../lib/broker-list.js';

test('url alone is a list of one; urls replace it and are tried round-robin', () => {
  const one = new BrokerList('mqtt://a:1', undefined);
  one.failed();
  assert.equal(one.current(), 'mqtt://a:1');
  const l = new BrokerList('mqtt://ignored:1', ['mqtt://a:1', 'mqtt://b:1', 'mqtt://c:1']);
  const seen = [l.current()];
  for (let i = 0; i < 3; i++) {
    l.failed();
    seen.push(l.current());
  }
  assert.deepEqual(seen, ['mqtt://a:1', 'mqtt://b:1', 'mqtt://c:1', 'mqtt://a:1']);
  assert.equal(new BrokerList('mqtt://x:1', []).current(), 'mqtt://x:1');
});

test('the first reconnect waits a fraction of the initial backoff, from 0 up to it', () => {
  assert.equal(firstReconnectDelay(1000, () => 0), 0);
  assert.equal(firstReconnectDelay(1000, () => 0.5), 500);
  assert.ok(firstReconnectDelay(1000, () => 0.9999) < 1000);
});
