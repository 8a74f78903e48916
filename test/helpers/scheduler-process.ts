/**
 * A process that runs the maintenance scheduler the way the daemon will (the real catalog, the
 * real store file with every table of the agent, the real clock) against a fake runner port, for tests that kill -9 it and
 * start it again. `node scheduler-process.js CONFIG RUNS_FILE DURATIONS_JSON`: each run's start
 * and end is appended to RUNS_FILE as a JSON line; DURATIONS_JSON maps a procedure id to how long
 * its runs take (ms, default 100). SIGTERM stops it cleanly.
 */
import { appendFileSync } from 'node:fs';
import { STORE_MIGRATIONS } from '../../agent/main.js';
import { loadConfig, storePath } from '../../core/config.js';
import { silentLogger } from '../../lib/log.js';
import { openDatabase } from '../../lib/sqlite.js';
import { loadCatalog, shippedProceduresDir } from '../../maintenance/catalog.js';
import { Scheduler, type StartResult } from '../../maintenance/scheduler.js';
import { MaintenanceWindows } from '../../maintenance/windows.js';

const [configPath = '', runsFile = '', durationsJson = '{}'] = process.argv.slice(2);
// `node --test dist/test/` runs every file here once without arguments: nothing to do then.
if (!configPath) process.exit(0);
const durations = JSON.parse(durationsJson) as Record<string, number>;
const { config } = loadConfig({ path: configPath });
const db = openDatabase(storePath(config), { migrations: STORE_MIGRATIONS });
const log = silentLogger();
const line = (x: Record<string, unknown>): void => appendFileSync(runsFile, JSON.stringify({ pid: process.pid, ...x }) + '\n');
const m = config.maintenance;
const windows = new MaintenanceWindows({ db, log, windows: m.windows, announceSec: m.announceSec, maxDeferSec: m.maxDeferSec, emit: (e) => line({ ev: 'window', action: e.action, id: e.id, start: e.start, end: e.end }) });
const catalog = loadCatalog({ shippedDir: shippedProceduresDir(), operatorDir: m.proceduresDir, agentUid: process.getuid?.() ?? 0 });
let n = 0;
const scheduler = new Scheduler({
  db,
  log,
  windows,
  overrides: m.schedules,
  procedures: catalog.entries.flatMap((e) => (e.status === 'valid' && e.procedure ? [e.procedure] : [])),
  runner: {
    start(procedure, opts): Promise<StartResult> {
      const slot = Date.parse(opts.startedBy.slice(opts.startedBy.indexOf('@') + 1));
      const runId = `${process.pid}-${++n}`;
      line({ ev: 'start', procedure, slot, at: Date.now(), runId, inside: windows.isInsideWindow() });
      const done = new Promise<{ state: string }>((resolve) =>
        setTimeout(() => {
          line({ ev: 'end', procedure, slot, at: Date.now(), runId });
          resolve({ state: 'succeeded' });
        }, durations[procedure] ?? 100),
      );
      return Promise.resolve({ ok: true, runId, done });
    },
  },
});
line({ ev: 'ready', at: Date.now() });
windows.start();
scheduler.start();
// The windows' timer is unref'd (the daemon has other work keeping it up): this keeps the process up.
const keepAlive = setInterval(() => undefined, 60_000);
process.on('SIGTERM', () => {
  scheduler.stop();
  windows.stop();
  void scheduler.idle().then(() => {
    clearInterval(keepAlive);
    db.close();
    process.exit(0);
  });
});
