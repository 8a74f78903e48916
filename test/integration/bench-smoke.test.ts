/**
 * Smoke test for the benchmark harness: `node dist/bench/run.js --quick` runs end to end
 * against a real broker (and the OTA install of a 32 MiB bundle, an update and a rollback
 * through the boot guard), reports every measurement with its reference, and leaves nothing in
 * its temp dir. No thresholds on the numbers themselves (STYLE.md: targets are ratios in
 * bench/, never timed assertions).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchResults } from '../../bench/report.js';

const RUN = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const IDS = ['startup', 'idle-rss', 'outbox-memory', 'enqueue-rate', 'drain-rate', 'ota-install-time', 'ota-peak-rss-512m', 'activation-downtime', 'rollback-time'];

test('bench --quick exits 0 and reports every measurement with a positive value and a reference', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  const out = join(dir, 'results.json');
  try {
    // TMPDIR: the bench's temp dirs (bundles, slots, outbox databases) land here, so we can see they are gone.
    const env = { ...process.env, TMPDIR: dir };
    const { stdout } = await promisify(execFile)(process.execPath, [RUN, '--quick', '--out', out], { env, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 }).catch(
      (err: Error & { code?: unknown; stderr?: string }) => {
        throw new Error(`bench exited with ${String(err.code)}: ${err.message}\n${err.stderr ?? ''}`);
      },
    );
    const results = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
    assert.deepEqual(readdirSync(dir), ['results.json'], 'the bench removed its temp dirs');

    assert.equal(results.quick, true);
    assert.ok(['mosquitto', 'aedes'].includes(results.broker.kind), `broker kind ${results.broker.kind}`);
    if (results.broker.kind === 'aedes') assert.match(stdout, /aedes/);
    assert.deepEqual(
      results.measurements.map((m) => m.id),
      IDS,
    );
    for (const m of results.measurements) {
      const what = `${m.id}: ${JSON.stringify(m)}`;
      assert.ok(Number.isFinite(m.value) && m.value > 0, `value of ${what}`);
      assert.ok(m.samples.length > 0 && m.samples.every((s) => s > 0), `samples of ${what}`);
      assert.ok(m.reference.name.length > 0, `reference name of ${what}`);
      assert.ok(Number.isFinite(m.reference.value) && m.reference.value > 0, `reference value of ${what}`);
      assert.equal(m.reference.samples.length, m.samples.length, `reference samples of ${what}`);
      assert.ok(Number.isFinite(m.ratio) && m.ratio > 0, `ratio of ${what}`);
      assert.match(stdout, new RegExp(`^${m.id}: `, 'm'), `${m.id} printed`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
