/**
 * The schema of the agent's configuration (core/config.ts loads, overrides and validates with
 * it): every key with its bounds and default, one object per section. docs/configuration.md
 * describes every key (test/unit/docs-config.test.ts checks that no key is missing there).
 */
import { Cron } from 'croner';
import { z } from 'zod';
import { mqttKeys } from '../lib/mqtt-schema.js';

export const GATEWAY_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The keys shared with the bridge's `mqtt` section come from lib/mqtt-schema.ts; the order is this file's own. */
const mqttSchema = z
  .object({
    ...mqttKeys('url', 'urls', 'prefix'),
    protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
    ...mqttKeys('clientId', 'username', 'password', 'keepaliveSec', 'connectTimeoutMs'),
    sessionExpirySec: z.number().int().min(0).max(4_294_967_295).default(7 * 24 * 3600),
    ...mqttKeys('reconnect', 'tls'),
  })
  .strict();

const outboxSchema = z
  .object({
    maxMessages: z.number().int().min(100).default(200_000),
    maxBytes: z.number().int().min(64 * 1024).default(256 * 1024 * 1024),
    inflight: z.number().int().min(1).max(65_000).default(256),
  })
  .strict();

const commandsSchema = z
  .object({
    maxPayloadBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024),
    /** Commands accepted and not finished (running or waiting); one more is rejected `busy`. */
    maxPending: z.number().int().min(1).max(100_000).default(1000),
    /** Commands running at once; the others wait in order. */
    maxConcurrent: z.number().int().min(1).max(256).default(4),
    /**
     * Exclusive operations (update, rollback, config apply, procedures with side effects) waiting
     * behind the running one, by priority; one more is rejected `busy`. 0: none waits.
     */
    maxQueued: z.number().int().min(0).max(1000).default(8),
    /** How long a finished command is remembered for de-duplication. */
    retentionDays: z.number().int().min(1).max(3650).default(30),
    /** MQTT 5 message expiry of the retained `~/res/{id}` statuses; default: retentionDays. 0: none. */
    resultExpirySec: z.number().int().min(0).max(4_294_967_295).optional(),
  })
  .strict();

const adminSchema = z
  .object({
    socket: z.string().min(1).optional().describe('defaults to {dataDir}/agent.sock'),
  })
  .strict();

const systemdSchema = z
  .object({
    /** A critical loop that has not ticked for this long withholds WATCHDOG=1. */
    loopDeadlineMs: z.number().int().min(100).default(30_000),
    /** Event-loop delay above which WATCHDOG=1 is withheld. */
    maxEventLoopLagMs: z.number().int().min(10).default(5_000),
  })
  .strict();

const otaSchema = z
  .object({
    /** The A/B installation: ROOT/slots/{A,B}, ROOT/slots.json, ROOT/guard. */
    root: z.string().min(1).default('/opt/edge-agent'),
    /** PEM file with the trust anchors update bundles must chain to. */
    trustAnchors: z.string().min(1).default('/etc/edge-agent/trust.pem'),
    maxBundleBytes: z.number().int().min(1024).default(2 * 1024 * 1024 * 1024),
    download: z
      .object({
        ca: z.string().min(1).optional().describe('PEM CA for https bundle URLs; the system CAs when absent'),
        idleTimeoutMs: z.number().int().min(1000).max(600_000).default(30_000),
        retries: z.number().int().min(0).max(100).default(5),
        /**
         * A download slower than this on average over a window of stallWindowMs (reconnects
         * included) fails `download-stalled`, so a trickling server cannot hold the update slot. 0: no bound.
         */
        minBytesPerSecond: z.number().int().min(0).max(1024 * 1024 * 1024).default(1024),
        stallWindowMs: z.number().int().min(100).max(3_600_000).default(60_000),
      })
      .strict()
      .default({ idleTimeoutMs: 30_000, retries: 5, minBytesPerSecond: 1024, stallWindowMs: 60_000 }),
    healthGate: z
      .object({
        stableMs: z.number().int().min(0).max(3_600_000).default(15_000),
        timeoutMs: z.number().int().min(1000).max(3_600_000).default(90_000),
      })
      .strict()
      .refine((g) => g.timeoutMs > g.stableMs, { message: 'timeoutMs must be greater than stableMs', path: ['timeoutMs'] })
      .default({ stableMs: 15_000, timeoutMs: 90_000 }),
    /** After an update committed: the `update-health` event this many seconds later (0: none). */
    healthReportSec: z.number().int().min(0).max(7 * 86_400).default(600),
    /** Backups of config and store taken before each activation, newest kept. */
    backupsKept: z.number().int().min(1).max(100).default(3),
  })
  .strict();

const diagSchema = z
  .object({
    /** Bound of each check of `edge-agent diag` and the `diagnostics` operation. */
    checkTimeoutMs: z.number().int().min(500).max(60_000).default(4000),
    /** The recent-log ring {dataDir}/logs/agent.log (lib/log-ring.ts). */
    logRing: z
      .object({
        maxBytes: z.number().int().min(64 * 1024).max(1024 * 1024 * 1024).default(4 * 1024 * 1024),
        files: z.number().int().min(1).max(10).default(2),
      })
      .strict()
      .default({ maxBytes: 4 * 1024 * 1024, files: 2 }),
    /** A support bundle PUT by the `diagnostics` operation (params.upload). */
    upload: z
      .object({
        timeoutMs: z.number().int().min(1000).max(3_600_000).default(120_000),
        maxBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024),
      })
      .strict()
      .default({ timeoutMs: 120_000, maxBytes: 64 * 1024 * 1024 }),
  })
  .strict();

/** How a supervised component's liveness is probed (recovery/probes.ts); each probe is bounded. */
const probeSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('process') }).strict(),
  z.object({ kind: z.literal('heartbeat'), socket: z.string().min(1) }).strict(),
  z.object({ kind: z.literal('tcp'), host: z.string().min(1).default('127.0.0.1'), port: z.number().int().min(1).max(65_535) }).strict(),
  z.object({ kind: z.literal('http'), url: z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http:// or https:// URL') }).strict(),
]);

const serviceSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must match [a-z0-9][a-z0-9-]{0,63}'),
    /** A command the agent runs detached (argument array, no shell); or `unit`. */
    command: z.array(z.string().min(1)).min(1).optional(),
    /** A systemd unit the agent restarts with systemctl; or `command`. */
    unit: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9@._:\\-]*$/, 'a systemd unit name such as label-printer.service').optional(),
    cwd: z.string().min(1).optional(),
    probe: probeSchema.default({ kind: 'process' }),
    intervalMs: z.number().int().min(50).max(3_600_000).optional(),
    deadlineMs: z.number().int().min(100).max(3_600_000).optional(),
    startTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
  })
  .strict()
  .refine((s) => (s.command === undefined) !== (s.unit === undefined), { message: 'exactly one of command and unit', path: ['command'] })
  .refine((s) => s.name !== 'agent' && s.name !== 'plc-bridge', { message: '"agent" and "plc-bridge" are reserved', path: ['name'] });

const recoverySchema = z
  .object({
    /** Probe period of each supervised component, unless it sets its own. */
    intervalMs: z.number().int().min(50).max(3_600_000).default(1000),
    /** No passed probe for this long: the component is hung, and is killed and restarted. */
    deadlineMs: z.number().int().min(100).max(3_600_000).default(10_000),
    /** A started component must pass its first probe within this. */
    startTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** Healthy this long without a break: backoff and escalation reset, the alarm clears. */
    healthyMs: z.number().int().min(100).max(86_400_000).default(60_000),
    stopGraceMs: z.number().int().min(0).max(600_000).default(5000),
    hungGraceMs: z.number().int().min(0).max(600_000).default(1000),
    /** Restart delays; the first restart comes quickly (like systemd's RestartSec=100ms). */
    backoff: z
      .object({
        initialMs: z.number().int().min(10).max(600_000).default(100),
        maxMs: z.number().int().min(10).max(3_600_000).default(60_000),
        factor: z.number().min(1).max(10).default(2),
        jitter: z.number().min(0).max(1).default(0.5),
      })
      .strict()
      .refine((b) => b.maxMs >= b.initialMs, { message: 'maxMs must be at least initialMs', path: ['maxMs'] })
      .default({ initialMs: 100, maxMs: 60_000, factor: 2, jitter: 0.5 }),
    escalation: z
      .object({
        windowMs: z.number().int().min(1000).max(86_400_000).default(600_000),
        restoreConfigAfter: z.number().int().min(1).max(1000).default(3),
        rollbackAfter: z.number().int().min(1).max(1000).default(5),
        slowRetryAfter: z.number().int().min(1).max(1000).default(8),
        rollbackWithinMs: z.number().int().min(0).max(30 * 86_400_000).default(3_600_000),
      })
      .strict()
      .refine((e) => e.restoreConfigAfter <= e.rollbackAfter && e.rollbackAfter <= e.slowRetryAfter, {
        message: 'restoreConfigAfter <= rollbackAfter <= slowRetryAfter',
        path: ['rollbackAfter'],
      })
      .default({ windowMs: 600_000, restoreConfigAfter: 3, rollbackAfter: 5, slowRetryAfter: 8, rollbackWithinMs: 3_600_000 }),
    slowRetryMs: z.number().int().min(100).max(86_400_000).default(300_000),
    logMaxBytes: z.number().int().min(4096).max(1024 * 1024 * 1024).default(1024 * 1024),
    incidentRetentionDays: z.number().int().min(1).max(3650).default(90),
    /**
     * An operation (an update) that may still be cancelled and reported no progress for this long
     * is stalled: the watchdog aborts it (`stalled`). Keep it above ota.download.idleTimeoutMs x
     * (retries + 1), or a download that is still retrying is cut short.
     */
    operationStallMs: z.number().int().min(1000).max(86_400_000).default(600_000),
    plcBridge: z
      .object({
        intervalMs: z.number().int().min(50).max(3_600_000).default(1000),
        deadlineMs: z.number().int().min(100).max(3_600_000).default(5000),
      })
      .strict()
      .default({ intervalMs: 1000, deadlineMs: 5000 }),
    services: z
      .array(serviceSchema)
      .default([])
      .refine((ss) => new Set(ss.map((s) => s.name)).size === ss.length, { message: 'service names must be unique' }),
  })
  .strict();

/** Known-good configuration copies and store backups (recovery/known-good.ts, store-*.ts). */
const restoreSchema = z
  .object({
    /** Known-good copies of the configuration kept in {dataDir}/known-good/. */
    keepConfigs: z.number().int().min(1).max(100).default(5),
    /**
     * Online store backups ({dataDir}/backups/store-*.db): one after a proven start when the newest
     * is older than this; the periodic ones are the procedure store-backup (a value other than the
     * default moves its schedule: core/legacy-keys.ts). And how many are kept.
     */
    backupIntervalMs: z.number().int().min(60_000).max(30 * 86_400_000).default(6 * 3_600_000),
    keepBackups: z.number().int().min(1).max(100).default(3),
    /** Earlier releases' quick_check timer: a value other than the default moves the procedure store-check's schedule (core/legacy-keys.ts). */
    integrityCheckIntervalMs: z.number().int().min(60_000).max(30 * 86_400_000).default(3_600_000),
    /** A stat of agent.db and its -wal: still the files the agent opened? (recovery/store-keeper.ts) */
    storeWatchIntervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
  })
  .strict();

const budgetBytes = z
  .number()
  .int()
  .min(0)
  .refine((v) => v === 0 || v >= 16 * 1024 * 1024, { message: '0 (no budget) or at least 16777216 (16 MiB)' });

/** The agent's own memory budget (lib/memory-budget.ts): restart cleanly before it is exceeded. */
const memorySchema = z
  .object({
    rssBytes: budgetBytes.default(256 * 1024 * 1024),
    heapBytes: budgetBytes.default(128 * 1024 * 1024),
    checkIntervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
  })
  .strict();

/** One alert threshold (health/alerts.ts); each watches a value that is bad when high, so clear < raise (hysteresis). */
const thresholdSchema = (raise: number, clear: number, forMs: number) =>
  z
    .object({
      raise: z.number().default(raise),
      clear: z.number().default(clear),
      /** The value must stay beyond `raise` this long (every sample) before the alert is raised. */
      forMs: z.number().int().min(0).max(86_400_000).default(forMs),
    })
    .strict()
    .refine((t) => t.clear < t.raise, { message: 'clear must be below raise (the alert clears only once the value is back below clear)', path: ['clear'] })
    .default({ raise, clear, forMs });

export const HEALTH_THRESHOLDS = ['cpu', 'memory', 'swap', 'disk', 'inodes', 'temperature', 'eventLoopLag', 'outboxDepth', 'agentMemory', 'plcReadAge'] as const;

const thresholdsSchema = z
  .object({
    cpu: thresholdSchema(90, 80, 300_000),
    memory: thresholdSchema(90, 85, 60_000),
    swap: thresholdSchema(80, 60, 300_000),
    disk: thresholdSchema(90, 85, 60_000),
    inodes: thresholdSchema(90, 85, 60_000),
    temperature: thresholdSchema(85, 80, 60_000),
    eventLoopLag: thresholdSchema(500, 100, 60_000),
    outboxDepth: thresholdSchema(10_000, 1000, 300_000),
    agentMemory: thresholdSchema(200, 180, 300_000),
    plcReadAge: thresholdSchema(60_000, 10_000, 0),
  })
  .strict();

const healthSchema = z
  .object({
    /** false: no sampling, no history, no alerts, nothing on ~/health. */
    enabled: z.boolean().default(true),
    sampleIntervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
    publishIntervalMs: z.number().int().min(100).max(86_400_000).default(60_000),
    retention: z
      .object({
        rawHours: z.number().int().min(1).max(24 * 30).default(24),
        minuteDays: z.number().int().min(1).max(365).default(7),
        hourDays: z.number().int().min(1).max(3650).default(90),
      })
      .strict()
      .default({ rawHours: 24, minuteDays: 7, hourDays: 90 }),
    thresholds: thresholdsSchema.default(() => thresholdsSchema.parse({})),
    degradation: z
      .object({
        windowMs: z.number().int().min(60_000).max(7 * 86_400_000).default(3_600_000),
        horizonMs: z.number().int().min(60_000).max(90 * 86_400_000).default(6 * 3_600_000),
        /** The thresholds whose trend is watched. */
        thresholds: z.array(z.enum(HEALTH_THRESHOLDS)).default(['memory', 'swap', 'disk', 'inodes', 'eventLoopLag', 'agentMemory']),
      })
      .strict()
      .default({ windowMs: 3_600_000, horizonMs: 6 * 3_600_000, thresholds: ['memory', 'swap', 'disk', 'inodes', 'eventLoopLag', 'agentMemory'] }),
  })
  .strict();

const plcBridgeSchema = z
  .object({
    /** The bridge's own YAML file (plc-bridge/config.ts); no bridge without it. */
    config: z.string().min(1).optional(),
    launch: z.enum(['auto', 'never']).default('auto'),
  })
  .strict();

const auditSchema = z
  .object({
    /** Entries older than this are cut (the cut is recorded in the trail). */
    maxAgeDays: z.number().int().min(1).max(3650).default(365),
    /** At most this many entries are kept; the oldest beyond it are cut. */
    maxEntries: z.number().int().min(100).max(10_000_000).default(1_000_000),
  })
  .strict();

/** The client certificate's renewal (agent/certificates.ts, docs/certificates.md). */
const certificatesSchema = z
  .object({
    /** How often the certificate's dates are looked at. */
    checkIntervalMs: z.number().int().min(100).max(86_400_000).default(3_600_000),
    /** Renewal is due at this fraction of the lifetime ... */
    renewAtFraction: z.number().min(0.1).max(0.99).default(0.8),
    /** ... or this many days before expiry, whichever comes first. */
    renewBeforeDays: z.number().min(0).max(3650).default(30),
    /** The certificate-renewal event is sent again this often until a new certificate is installed. */
    repeatMs: z.number().int().min(1000).max(30 * 86_400_000).default(86_400_000),
    /** A standing alarm in `status` when this few days are left. */
    alarmDays: z.number().min(0).max(3650).default(7),
  })
  .strict();

/** A cron expression (5 fields, or 6 with seconds first) and time zone croner accepts. */
function cronOk(cron: string, timezone?: string): boolean {
  try {
    new Cron(cron, { paused: true, ...(timezone === undefined ? {} : { timezone }) }).nextRun();
    return true;
  } catch {
    return false;
  }
}
const CRON_MESSAGE = 'must be a cron expression of 5 fields (or 6, seconds first) with a valid IANA time zone';

/** `maintenance.schedules.{procedureId}`: moves or disables a procedure's schedule (maintenance/schedule-plan.ts). */
const scheduleOverrideSchema = z
  .object({
    enabled: z.boolean().optional(),
    cron: z.string().min(1).optional(),
    timezone: z.string().min(1).optional(),
    jitterSec: z.number().int().min(0).max(86_400).optional(),
    catchUpSec: z.number().int().min(0).max(604_800).optional(),
  })
  .strict()
  .refine((o) => o.cron === undefined || cronOk(o.cron, o.timezone), { message: CRON_MESSAGE, path: ['cron'] });

const windowSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must match [a-z0-9][a-z0-9-]{0,63}'),
    cron: z.string().min(1),
    durationSec: z.number().int().min(60).max(7 * 86_400),
    timezone: z.string().min(1).optional(),
  })
  .strict()
  .refine((w) => cronOk(w.cron, w.timezone), { message: CRON_MESSAGE, path: ['cron'] });

const maintenanceSchema = z
  .object({
    /** Operators' procedure files, one `{id}.yaml` each (CONTRACT.md section 6); a missing directory holds none. */
    proceduresDir: z.string().min(1).default('/etc/edge-agent/procedures/'),
    /** Per procedure id: enable, disable or move its schedule (docs/maintenance.md). */
    schedules: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must be a procedure id'), scheduleOverrideSchema).default({}),
    /** Maintenance windows (CONTRACT.md section 6); an empty list: no window, disruptive procedures run only with force. */
    windows: z
      .array(windowSchema)
      .default(() => [{ id: 'weekly', cron: '0 2 * * 0', durationSec: 7200 }])
      .refine((ws) => new Set(ws.map((w) => w.id)).size === ws.length, 'window ids must be unique'),
    /** How long before a window starts it is announced on ~/events. */
    announceSec: z.number().int().min(0).max(86_400).default(900),
    /** How far the WMS may move a window's start by `defer`, in total. */
    maxDeferSec: z.number().int().min(0).max(7 * 86_400).default(86_400),
    /** Finished runs whose reports are kept in the store, newest first. */
    maxReports: z.number().int().min(1).max(100_000).default(200),
    /** Output kept per step (command output, an http body), first and last halves. */
    maxOutputBytes: z.number().int().min(256).max(1024 * 1024).default(16 * 1024),
    /** A run is paced so the agent with its children uses at most this share of one core, averaged over the run (docs/maintenance.md). */
    maxCpuPct: z.number().min(1).max(100).default(25),
  })
  .strict();

/** Hosts that are the loopback interface: listening there needs no TLS. */
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[?::1\]?)$/;

/** `host:port` split at its last colon; `[::1]:8080` keeps its brackets off. Pure. */
export function splitListen(listen: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m?.[1] || m[2] === undefined) return undefined;
  const port = Number(m[2]);
  return port <= 65_535 ? { host: m[1].replace(/^\[|\]$/g, ''), port } : undefined;
}

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host);
}

/** The local web console (CONTRACT.md section 8, docs/console.md). */
const consoleSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** `host:port`; any address but the loopback needs `tls`. Port 0 lets the OS choose (tests). */
    listen: z.string().refine((v) => splitListen(v) !== undefined, { message: 'must be host:port, e.g. 127.0.0.1:8080' }).default('127.0.0.1:8080'),
    /** Extra names the `Host` header may carry (127.0.0.1, localhost and the listen address always may). */
    hostnames: z.array(z.string().regex(/^[A-Za-z0-9.:[\]-]{1,253}$/)).default([]),
    /** PEM files; both null (the default) serves plain HTTP, which only the loopback allows. */
    tls: z
      .object({ cert: z.string().min(1).nullable().default(null), key: z.string().min(1).nullable().default(null) })
      .strict()
      .refine((t) => (t.cert === null) === (t.key === null), { message: 'set both cert and key, or neither' })
      .default({ cert: null, key: null }),
    /** A session unused this long ends. */
    idleMinutes: z.number().int().min(1).max(24 * 60).default(30),
    /** A session ends this long after pairing, used or not. */
    absoluteHours: z.number().int().min(1).max(24 * 30).default(12),
  })
  .strict()
  .refine((c) => !c.enabled || c.tls.cert !== null || isLoopbackHost(splitListen(c.listen)?.host ?? ''), {
    message: 'listening on a non-loopback address needs console.tls (cert and key): the session cookie and the pairing code must not cross the network in clear text',
    path: ['tls'],
  });

export const configSchema = z
  .object({
    gatewayId: z.string().regex(GATEWAY_ID, 'must match [A-Za-z0-9_-]{1,64}'),
    deviceClass: z.string().min(1).default('wms-gateway'),
    dataDir: z.string().min(1).default('/var/lib/edge-agent'),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') }).strict().default({ level: 'info' }),
    mqtt: mqttSchema.default(() => mqttSchema.parse({})),
    outbox: outboxSchema.default(() => outboxSchema.parse({})),
    commands: commandsSchema.default(() => commandsSchema.parse({})),
    admin: adminSchema.default({}),
    systemd: systemdSchema.default(() => systemdSchema.parse({})),
    ota: otaSchema.default(() => otaSchema.parse({})),
    diag: diagSchema.default(() => diagSchema.parse({})),
    recovery: recoverySchema.default(() => recoverySchema.parse({})),
    restore: restoreSchema.default(() => restoreSchema.parse({})),
    memory: memorySchema.default(() => memorySchema.parse({})),
    health: healthSchema.default(() => healthSchema.parse({})),
    plcBridge: plcBridgeSchema.default({ launch: 'auto' }),
    maintenance: maintenanceSchema.default(() => maintenanceSchema.parse({})),
    audit: auditSchema.default(() => auditSchema.parse({})),
    certificates: certificatesSchema.default(() => certificatesSchema.parse({})),
    console: consoleSchema.default(() => consoleSchema.parse({})),
    shutdownTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  })
  .strict();

export type AgentConfig = z.infer<typeof configSchema>;
