/**
 * The daily cleanup of {dataDir}/quarantine/ (recovery/quarantine.ts cleanQuarantine, used by
 * maintenance-daily's files-cleanup): what was quarantined more than a day ago goes (by its
 * stamp: a moved file keeps its old mtime, which says nothing of when it was quarantined), the
 * oldest beyond the kept number go, and everything else stays, on real files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { cleanQuarantine, quarantineDir, quarantineFile } from '../../recovery/quarantine.js';

const DAY = 86_400_000;

test('quarantined files older than a day are removed, by their quarantine stamp; fresh ones stay', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'quarantine-clean-'));
  const now = Date.now();
  const src = (name: string, mtime?: number): string => {
    const p = join(dataDir, name);
    writeFileSync(p, `content of ${name}`);
    if (mtime !== undefined) utimesSync(p, mtime / 1000, mtime / 1000);
    return p;
  };
  // Quarantined three days ago (a fresh mtime: the store was in use until then).
  const old = quarantineFile(dataDir, src('agent.db'), now - 3 * DAY);
  // Quarantined an hour ago, a configuration last edited long ago (old mtime): it stays.
  const fresh = quarantineFile(dataDir, src('config.yaml', now - 90 * DAY), now - 3600_000);
  // Names without a stamp (put there by hand): their mtime decides.
  const q = quarantineDir(dataDir);
  writeFileSync(join(q, 'by-hand-old.yaml'), 'x');
  utimesSync(join(q, 'by-hand-old.yaml'), (now - 2 * DAY) / 1000, (now - 2 * DAY) / 1000);
  writeFileSync(join(q, 'by-hand-new.yaml'), 'y');
  mkdirSync(join(q, 'not-a-file'));
  const removed = cleanQuarantine(dataDir, now - DAY);
  assert.deepEqual(removed.map((r) => basename(r.path)).sort(), [basename(old), 'by-hand-old.yaml'].sort());
  assert.equal(removed.find((r) => r.path === old)?.bytes, 'content of agent.db'.length);
  assert.deepEqual(readdirSync(q).sort(), [basename(fresh), 'by-hand-new.yaml', 'not-a-file'].sort(), 'everything else stays');
});

test('beyond the kept number the oldest go, however fresh', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'quarantine-keep-'));
  const now = Date.now();
  for (let i = 0; i < 23; i++) {
    writeFileSync(join(dataDir, 'c.yaml'), String(i));
    quarantineFile(dataDir, join(dataDir, 'c.yaml'), now - 60_000 + i * 1000, { keep: 100 });
  }
  const removed = cleanQuarantine(dataDir, now - DAY);
  assert.equal(removed.length, 3);
  assert.equal(readdirSync(quarantineDir(dataDir)).length, 20);
  const left = readdirSync(quarantineDir(dataDir)).sort();
  for (const r of removed) assert.ok(basename(r.path) < left[0]!, 'the oldest went');
});
