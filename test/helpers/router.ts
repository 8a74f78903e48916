/**
 * A Router on a real SQLite store and outbox, whose published statuses are collected in order
 * (the outbox "publishes" by parsing the payload into `statuses`): for the router's own tests and
 * the update runner's stall tests.
 */
import { Outbox, OUTBOX_MIGRATIONS } from '../../agent/outbox.js';
import { CommandStore, COMMAND_MIGRATIONS } from '../../agent/command-store.js';
import { Router, type RouterOptions } from '../../agent/router.js';
import { openDatabase, type Db } from '../../lib/sqlite.js';
import { silentLogger } from '../../lib/log.js';
import { systemClock } from '../../lib/clock.js';

/** A command status as published on `~/res/{id}`. */
export interface Status {
  id: string;
  op: string;
  status: string;
  reason?: { code: string; message: string };
  result?: unknown;
  progress?: { step: string };
}

export interface RouterHarness {
  db: Db;
  router: Router;
  outbox: Outbox;
  statuses: Status[];
}

/** `opts` overrides the router's options; its clock defaults to the system's, results go to `r/{id}`. */
export function routerHarness(dbPath: string, opts: Pick<RouterOptions, 'limits'> & Partial<Omit<RouterOptions, 'db' | 'store' | 'outbox'>>): RouterHarness {
  const db = openDatabase(dbPath, { migrations: [OUTBOX_MIGRATIONS, COMMAND_MIGRATIONS] });
  const outbox = new Outbox({ db, logger: silentLogger(), clock: systemClock, limits: { maxMessages: 10_000, maxBytes: 1 << 24, inflight: 10_000 } });
  outbox.open();
  const statuses: Status[] = [];
  outbox.attach({
    publish: (_t, payload, _o, cb) => {
      statuses.push(JSON.parse(payload.toString()) as Status);
      cb();
    },
  });
  const router = new Router({ db, store: new CommandStore(db), outbox, logger: silentLogger(), clock: systemClock, resultTopic: (id) => `r/${id}`, ...opts });
  return { db, router, outbox, statuses };
}
