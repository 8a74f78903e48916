/**
 * Configuration keys of earlier releases that now mean something else, mapped so that an
 * existing configuration file keeps working (docs/configuration.md, "Restore").
 *
 * `restore.integrityCheckIntervalMs` and `restore.backupIntervalMs` were the periods of the store
 * keeper's own timers. The store checks and backups are now the built-in procedures `store-check`
 * and `store-backup` on schedules (docs/maintenance.md). A value other than the key's default
 * moves that procedure's schedule to the cron expression nearest to the period (never a longer
 * one), unless `maintenance.schedules.{id}.cron` says otherwise, which wins; a value equal to the
 * default changes nothing (the procedure's own schedule has the same period). Each mapping has a
 * note, logged at start and shown by `edge-agent maintenance schedule`.
 *
 * Pure: applied by validateConfig (core/config.ts) to the parsed configuration, so the daemon,
 * the command line and diag all see the same schedules.
 */
import type { AgentConfig } from './config-schema.js';

export const DEFAULT_INTEGRITY_CHECK_INTERVAL_MS = 3_600_000;
export const DEFAULT_BACKUP_INTERVAL_MS = 6 * 3_600_000;

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Periods a cron expression repeats exactly (steps that divide the hour, the day), then whole days. */
const EXACT: readonly { ms: number; cron: string }[] = [
  ...[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].map((m) => ({ ms: m * MIN, cron: m === 1 ? '* * * * *' : `*/${m} * * * *` })),
  ...[1, 2, 3, 4, 6, 8, 12].map((h) => ({ ms: h * HOUR, cron: h === 1 ? '0 * * * *' : `0 */${h} * * *` })),
  { ms: DAY, cron: '0 0 * * *' },
  { ms: 7 * DAY, cron: '0 0 * * 0' },
];

/**
 * The cron expression for a period: exact when the period is one a cron repeats (every 1, 2, 3,
 * 4, 5, 6, 10, 12, 15, 20 or 30 minutes, 1, 2, 3, 4, 6, 8 or 12 hours, a day, a week); otherwise
 * the longest such period under it (a store is checked or backed up more often, never less), or
 * every `d` days of the month for whole days up to 30. Pure.
 */
export function intervalCron(ms: number): { cron: string; exact: boolean } {
  const exact = EXACT.find((e) => e.ms === ms);
  if (exact) return { cron: exact.cron, exact: true };
  if (ms % DAY === 0 && ms / DAY <= 30) return { cron: `0 0 */${ms / DAY} * *`, exact: false };
  const below = [...EXACT].reverse().find((e) => e.ms <= ms) ?? EXACT[0];
  return { cron: below?.cron ?? '* * * * *', exact: false };
}

const LEGACY = [
  { key: 'restore.integrityCheckIntervalMs', procedure: 'store-check', value: (c: AgentConfig) => c.restore.integrityCheckIntervalMs, fallback: DEFAULT_INTEGRITY_CHECK_INTERVAL_MS },
  { key: 'restore.backupIntervalMs', procedure: 'store-backup', value: (c: AgentConfig) => c.restore.backupIntervalMs, fallback: DEFAULT_BACKUP_INTERVAL_MS },
] as const;

/** What the legacy keys of `config` do, one sentence each (empty when they are at their defaults). Pure. */
export function legacyScheduleNotes(config: AgentConfig): string[] {
  const out: string[] = [];
  for (const l of LEGACY) {
    const v = l.value(config);
    if (v === l.fallback) continue;
    const { cron, exact } = intervalCron(v);
    const set = config.maintenance.schedules[l.procedure]?.cron;
    out.push(
      set !== undefined && set !== cron
        ? `${l.key} (${v}) is replaced by the schedule of the procedure ${l.procedure}: maintenance.schedules.${l.procedure}.cron ("${set}") is set and wins`
        : `${l.key} (${v}) is replaced by the schedule of the procedure ${l.procedure}: mapped to maintenance.schedules.${l.procedure}.cron "${cron}"${exact ? '' : ' (the nearest cron period not longer than it)'}; set that key instead`,
    );
  }
  return out;
}

/** `config` with the legacy keys mapped onto `maintenance.schedules` (see the file's comment). Pure. */
export function applyLegacyScheduleKeys(config: AgentConfig): AgentConfig {
  let schedules = config.maintenance.schedules;
  for (const l of LEGACY) {
    const v = l.value(config);
    if (v === l.fallback || schedules[l.procedure]?.cron !== undefined) continue;
    schedules = { ...schedules, [l.procedure]: { ...schedules[l.procedure], cron: intervalCron(v).cron } };
  }
  return schedules === config.maintenance.schedules ? config : { ...config, maintenance: { ...config.maintenance, schedules } };
}
