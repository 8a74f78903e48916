/**
 * The procedure watcher on real files and a real store, without the rest of the agent: the
 * periodic re-scan finds a directory made after start (no watch could see it), a directory
 * removed and made again is watched anew, and stop() leaves nothing behind (no timer, no watch:
 * nothing is announced after it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { silentLogger } from '../../lib/log.js';
import { openDatabase } from '../../lib/sqlite.js';
import { AGENT_INFO_MIGRATIONS, readAgentInfo } from '../../core/agent-info.js';
import type { AgentEvent } from '../../core/ports.js';
import { ProcedureWatch } from '../../agent/procedure-watch.js';
import { tempDir, waitFor } from '../helpers/util.js';

const BROKEN = stringify({ id: 'broken', name: 'Broken', steps: [] });

function setup(rescanMs: number): { watch: ProcedureWatch; events: AgentEvent[]; procs: string; root: string; put: (name: string, text: string) => void; db: ReturnType<typeof openDatabase> } {
  const root = tempDir('proc-watch-');
  chmodSync(root, 0o755);
  const procs = join(root, 'procedures');
  const db = openDatabase(join(root, 'state.db'), { migrations: [AGENT_INFO_MIGRATIONS] });
  const events: AgentEvent[] = [];
  const watch = new ProcedureWatch({ dir: procs, shippedDir: undefined, agentUid: process.getuid?.() ?? 0, db, event: (ev) => void events.push(ev), logger: silentLogger(), debounceMs: 20, rescanMs });
  const put = (name: string, text: string): void => {
    const f = join(procs, name);
    writeFileSync(f, text);
    chmodSync(f, 0o644);
  };
  return { watch, events, procs, root, put, db };
}

test('a directory made after start is found by the re-scan; one removed and made again is watched anew', async () => {
  const { watch, events, procs, root, put, db } = setup(150);
  await watch.start();
  try {
    assert.equal(events.length, 0);
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    put('broken.yaml', BROKEN);
    await waitFor(() => events.length === 1, { timeoutMs: 10_000, what: 'the re-scan announces broken.yaml' });
    assert.equal(events[0]?.file, join(procs, 'broken.yaml'));
    assert.match(readAgentInfo(db).proceduresAnnounced ?? '', /broken\.yaml/);

    rmSync(procs, { recursive: true });
    await waitFor(() => readAgentInfo(db).proceduresAnnounced === '{}', { timeoutMs: 10_000, what: 'the removed file forgotten' });
    mkdirSync(procs, { mode: 0o755 });
    chmodSync(procs, 0o755);
    put('broken.yaml', BROKEN);
    await waitFor(() => events.length === 2, { timeoutMs: 10_000, what: 'announced again after it was gone' });
  } finally {
    await watch.stop();
    db.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('stop() clears the watch and the timers: nothing is announced after it', async () => {
  const { watch, events, procs, root, put, db } = setup(50);
  mkdirSync(procs, { mode: 0o755 });
  chmodSync(procs, 0o755);
  await watch.start();
  await watch.stop();
  put('broken.yaml', BROKEN);
  // The same change with a second watcher running is seen: so the first one's silence is stop()'s doing.
  const second = new ProcedureWatch({ dir: procs, shippedDir: undefined, agentUid: process.getuid?.() ?? 0, db, event: (ev) => void events.push({ ...ev, by: 'second' }), logger: silentLogger(), debounceMs: 20, rescanMs: 50 });
  await second.start();
  try {
    put('also.yaml', stringify({ id: 'also', steps: [] }));
    await waitFor(() => events.filter((e) => e.file === join(procs, 'also.yaml')).length === 1, { timeoutMs: 10_000, what: 'the second watcher sees also.yaml' });
    assert.ok(events.every((e) => e.by === 'second'), JSON.stringify(events));
  } finally {
    await second.stop();
    db.close();
    rmSync(root, { recursive: true, force: true });
  }
});
