/** The text of `edge-agent status`: components with their alarm and active alerts are shown, not only in --json. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatStatus } from '../../agent/cli/status.js';

test('status text shows each component, its alarm, and every active alert', () => {
  const text = formatStatus({
    daemon: 'running',
    pid: 42,
    version: '1.0.0',
    slot: 'A',
    gatewayId: 'gw',
    broker: { connected: true, url: 'mqtt://b:1883' },
    outbox: { depth: 0, bytes: 0 },
    operations: [],
    components: [{ name: 'plc-bridge', state: 'backoff', restarts: 9, alarm: { since: '2026-11-25T10:00:00.000Z', message: 'crash loop: retrying every 300 s' } }],
    alerts: [
      { code: 'memory-high', severity: 'warning', metric: 'memory.usedPct', value: 93, threshold: 90, since: '2026-11-25T10:01:00.000Z' },
      { code: 'disk-degradation', severity: 'warning', metric: 'disk.data.usedPct', value: 71, threshold: 95, since: '2026-11-25T10:02:00.000Z', predictedAt: '2026-11-25T16:00:00.000Z' },
    ],
  });
  assert.match(text, /plc-bridge\s+backoff\s+restarts 9/);
  assert.match(text, /ALARM since 2026-11-25T10:00:00.000Z: crash loop/);
  assert.match(text, /alerts\s+2 active/);
  assert.match(text, /WARNING\s+memory-high: memory.usedPct 93 \(threshold 90\)/);
  assert.match(text, /disk-degradation: .*predicted to cross 95 at 2026-11-25T16:00:00.000Z/);
});

test('no alerts line when none is active', () => {
  assert.doesNotMatch(formatStatus({ daemon: 'running', alerts: [] }), /alerts/);
});
