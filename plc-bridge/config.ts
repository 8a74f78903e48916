/**
 * The bridge's configuration: one YAML file, one schema, validated whole at load. Every problem
 * is reported at once with its key path (PlcError 'config-invalid', `detail.problems`); defaults
 * live in the schema. Tag addresses are resolved here to 0-based wire addresses, so nothing
 * after this file knows about 1-based addressing.
 *
 * Invariants of a BridgeConfig: device names are unique; tag names are unique per device (a
 * `set` names tags per device); every tag's registers or bits lie in 0..65535; a tag's type fits
 * its area; a string tag that may be written fits one FC16 request (123 registers).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { CORE_SCHEMA, load, YAMLException } from 'js-yaml';
import { z } from 'zod';
import { PlcError } from './errors.js';
import { mqttKeys } from '../lib/mqtt-schema.js';

export const AREAS = ['holding', 'input', 'coil', 'discrete'] as const;
export type Area = (typeof AREAS)[number];
export const TAG_TYPES = ['bool', 'int16', 'uint16', 'int32', 'uint32', 'float32', 'float64', 'string'] as const;
export type TagType = (typeof TAG_TYPES)[number];
export const ORDERS = ['ABCD', 'CDAB', 'BADC', 'DCBA'] as const;
export type Order = (typeof ORDERS)[number];
export const ACCESS = ['read', 'write', 'read-write'] as const;
export type Access = (typeof ACCESS)[number];

/** Names are topic levels and JSON keys. */
export const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** Modbus limits (Modbus Application Protocol v1.1b3, 6.3, 6.12): registers per FC3/FC4 read, per FC16 write. */
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_REGISTERS = 123;
export const MAX_READ_BITS = 2000;
export const MAX_WRITE_COILS = 1968;
/** Group names that would collide with the bridge's own topics under ~/plc/{device}/. */
const RESERVED_GROUPS = new Set(['set']);

/** A tag with its address resolved to the 0-based wire address and its size in registers/bits. */
export interface ResolvedTag {
  name: string;
  area: Area;
  start: number;
  count: number;
  type: TagType;
  order: Order;
  bit?: number;
  length?: number;
  scale: number;
  offset: number;
  access: Access;
  deadband: number;
  min?: number;
  max?: number;
}

export interface GroupConfig {
  name: string;
  intervalMs: number;
  qos?: 0 | 1;
  /** The group's own, else the file's `staleAfterMs` when not 0, else 3 × intervalMs. */
  staleAfterMs: number;
  tags: ResolvedTag[];
}

export interface DeviceConfig {
  name: string;
  host: string;
  port: number;
  unitId: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  addressing: 0 | 1;
  maxGap: number;
  /** consecutive timeouts after which the socket is replaced */
  maxTimeouts: number;
  /** after this many consecutive failed cycles the device is skipped for skipMs */
  skipAfterFailures: number;
  skipMs: number;
  groups: GroupConfig[];
}

const name = z.string().regex(NAME, 'must match [A-Za-z0-9_-]{1,64}');
const int = (min: number, max: number): z.ZodNumber => z.number().int().min(min).max(max);
const addressing = z.literal([0, 1]);

const tagSchema = z
  .object({
    name,
    area: z.enum(AREAS),
    address: int(0, 65536),
    /** Overrides the device's addressing for this tag. */
    addressing: addressing.optional(),
    type: z.enum(TAG_TYPES),
    order: z.enum(ORDERS).default('ABCD'),
    bit: int(0, 15).optional(),
    length: int(1, MAX_READ_REGISTERS).optional(),
    scale: z.number().refine((s) => s !== 0, 'must not be 0').default(1),
    offset: z.number().default(0),
    access: z.enum(ACCESS).default('read'),
    deadband: z.number().min(0).default(0),
    min: z.number().optional(),
    max: z.number().optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    const bad = (path: string, message: string): void => void ctx.addIssue({ code: 'custom', message, path: [path] });
    const bitArea = t.area === 'coil' || t.area === 'discrete';
    if (bitArea && t.type !== 'bool') bad('type', `area ${t.area} holds bits: type must be bool`);
    if (bitArea && t.bit !== undefined) bad('bit', `bit is for a bool in a register area, not in ${t.area}`);
    if (!bitArea && t.type === 'bool' && t.bit === undefined) bad('bit', 'a bool in a register area needs bit (0-15)');
    if (t.type !== 'bool' && t.bit !== undefined) bad('bit', 'bit is only for type bool');
    if (t.type === 'string' && t.length === undefined) bad('length', 'a string needs length (registers, two ASCII bytes each)');
    if (t.type !== 'string' && t.length !== undefined) bad('length', 'length is only for type string');
    if (t.type === 'bool' && t.order !== 'ABCD') bad('order', 'order has no meaning for bool: bits are numbered in the register value, 0 = least significant');
    if (t.access !== 'read' && (t.area === 'input' || t.area === 'discrete')) bad('access', `area ${t.area} is read-only: access must be read`);
    if (t.access !== 'read' && t.type === 'string' && (t.length ?? 0) > MAX_WRITE_REGISTERS) {
      bad('length', `a writable string fits one write of ${MAX_WRITE_REGISTERS} registers`);
    }
    if (t.type === 'bool' || t.type === 'string') {
      if (t.scale !== 1) bad('scale', 'scale is only for numeric types');
      if (t.offset !== 0) bad('offset', 'offset is only for numeric types');
      if (t.deadband !== 0) bad('deadband', 'deadband is only for numeric types');
      if (t.min !== undefined) bad('min', 'min is only for numeric types');
      if (t.max !== undefined) bad('max', 'max is only for numeric types');
    }
    if (t.min !== undefined && t.max !== undefined && t.min > t.max) bad('max', 'max must be at least min');
  });

const groupSchema = z
  .object({
    name: name.refine((n) => !RESERVED_GROUPS.has(n), 'is reserved (~/plc/{device}/set takes writes)'),
    intervalMs: int(100, 86_400_000).default(1000),
    qos: z.literal([0, 1]).optional(),
    staleAfterMs: int(100, 86_400_000).optional(),
    tags: z.array(tagSchema).min(1),
  })
  .strict();

const deviceSchema = z
  .object({
    name,
    host: z.string().min(1),
    port: int(1, 65535).default(502),
    unitId: int(0, 255).default(1),
    timeoutMs: int(50, 60_000).default(1000),
    connectTimeoutMs: int(100, 120_000).default(3000),
    addressing: addressing.default(0),
    maxGap: int(0, MAX_READ_REGISTERS - 2).default(0),
    maxTimeouts: int(1, 100).default(3),
    skipAfterFailures: int(1, 10_000).default(5),
    skipMs: int(0, 3_600_000).default(30_000),
    groups: z.array(groupSchema).min(1),
  })
  .strict();

/** The keys shared with the agent's `mqtt` section come from lib/mqtt-schema.ts; the order is this file's own. */
const mqttSchema = z
  .object({
    ...mqttKeys('url', 'urls', 'prefix', 'clientId', 'username', 'password', 'tls', 'keepaliveSec'),
    qos: z.literal([0, 1]).default(1),
    ...mqttKeys('connectTimeoutMs', 'reconnect'),
  })
  .strict();

const storeSchema = z
  .object({
    maxBytes: int(1024 * 1024, Number.MAX_SAFE_INTEGER).default(64 * 1024 * 1024),
    maxAgeSec: int(60, 10 * 365 * 86_400).default(7 * 86_400),
    replayPerSec: int(1, 100_000).default(200),
  })
  .strict();

export const bridgeSchema = z
  .object({
    gatewayId: z.string().regex(NAME, 'must match [A-Za-z0-9_-]{1,64}'),
    dataDir: z.string().min(1).default('/var/lib/edge-agent/plc-bridge'),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .strict()
      .default({ level: 'info' }),
    mqtt: mqttSchema.default(() => mqttSchema.parse({})),
    store: storeSchema.default(() => storeSchema.parse({})),
    /** 0: each group's own, else 3 × its interval. */
    staleAfterMs: int(0, 86_400_000)
      .refine((v) => v === 0 || v >= 100, 'must be 0 (3 × each group interval) or at least 100')
      .default(0),
    fullEveryMs: int(1000, 86_400_000).default(60_000),
    maxSetBytes: int(1024, 16 * 1024 * 1024).default(64 * 1024),
    handover: z.object({ timeoutMs: int(1000, 3_600_000).default(30_000) }).strict().default({ timeoutMs: 30_000 }),
    heartbeat: z.object({ intervalMs: int(100, 60_000).default(1000) }).strict().default({ intervalMs: 1000 }),
    /** Above 90 % of a budget the bridge hands over to a fresh instance of itself (no data gap). */
    memory: z
      .object({
        rssBytes: int(0, 64 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
        heapBytes: int(0, 64 * 1024 * 1024 * 1024).default(128 * 1024 * 1024),
        checkIntervalMs: int(1000, 3_600_000).default(10_000),
      })
      .strict()
      .default({ rssBytes: 256 * 1024 * 1024, heapBytes: 128 * 1024 * 1024, checkIntervalMs: 10_000 }),
    devices: z.array(deviceSchema).min(1),
  })
  .strict();

type ParsedBridge = z.infer<typeof bridgeSchema>;
type ParsedTag = z.infer<typeof tagSchema>;

export type BridgeConfig = Omit<ParsedBridge, 'devices'> & { devices: DeviceConfig[] };

export interface BridgeOverrides {
  broker?: string | undefined;
  gatewayId?: string | undefined;
  dataDir?: string | undefined;
}

/** Registers (or bits, in coil/discrete) a tag covers. */
export function tagCount(t: { type: TagType; length?: number | undefined }): number {
  switch (t.type) {
    case 'bool':
    case 'int16':
    case 'uint16':
      return 1;
    case 'int32':
    case 'uint32':
    case 'float32':
      return 2;
    case 'float64':
      return 4;
    case 'string':
      return t.length ?? 1;
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

function record(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/**
 * Checks across entries, on the raw document so they run even where the schema found other
 * problems in the same device: unique names and address resolution.
 */
function crossCheck(doc: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const deviceNames = new Map<string, number>();
  list(doc.devices).forEach((d, di) => {
    const dev = record(d);
    if (!dev) return;
    const at = `devices[${di}]`;
    if (typeof dev.name === 'string') {
      const first = deviceNames.get(dev.name);
      if (first !== undefined) problems.push(`${at}.name: "${dev.name}" is already the name of devices[${first}]`);
      else deviceNames.set(dev.name, di);
    }
    const devAddressing = dev.addressing === 1 ? 1 : 0;
    const groupNames = new Map<string, number>();
    const tagNames = new Map<string, string>();
    list(dev.groups).forEach((g, gi) => {
      const group = record(g);
      if (!group) return;
      if (typeof group.name === 'string') {
        const first = groupNames.get(group.name);
        if (first !== undefined) problems.push(`${at}.groups[${gi}].name: "${group.name}" is already the name of ${at}.groups[${first}]`);
        else groupNames.set(group.name, gi);
      }
      list(group.tags).forEach((t, ti) => {
        const tag = record(t);
        if (!tag) return;
        const tat = `${at}.groups[${gi}].tags[${ti}]`;
        if (typeof tag.name === 'string') {
          const first = tagNames.get(tag.name);
          if (first !== undefined) problems.push(`${tat}.name: "${tag.name}" is already a tag of this device (${first})`);
          else tagNames.set(tag.name, tat);
        }
        const a = tag.address;
        if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > 65536) return;
        const base = tag.addressing === 0 || tag.addressing === 1 ? tag.addressing : devAddressing;
        if (base === 1 && a === 0) {
          problems.push(`${tat}.address: 0 does not exist with 1-based addressing (address 1 is the first register)`);
          return;
        }
        const start = a - base;
        if (start > 65535) {
          problems.push(`${tat}.address: ${a} is past the last address (${65535 + base})`);
          return;
        }
        const type = TAG_TYPES.find((x) => x === tag.type);
        const length = typeof tag.length === 'number' ? tag.length : undefined;
        const count = type ? tagCount({ type, length }) : 1;
        if (start + count > 65536) problems.push(`${tat}.address: the tag's ${count} registers run past address ${65535 + base}`);
      });
    });
  });
  return problems;
}

function resolveTag(t: ParsedTag, devAddressing: 0 | 1): ResolvedTag {
  const base = t.addressing ?? devAddressing;
  const tag: ResolvedTag = {
    name: t.name,
    area: t.area,
    start: t.address - base,
    count: tagCount(t),
    type: t.type,
    order: t.order,
    scale: t.scale,
    offset: t.offset,
    access: t.access,
    deadband: t.deadband,
  };
  if (t.bit !== undefined) tag.bit = t.bit;
  if (t.length !== undefined) tag.length = t.length;
  if (t.min !== undefined) tag.min = t.min;
  if (t.max !== undefined) tag.max = t.max;
  return tag;
}

function defaultGatewayId(): string {
  const h = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
  return h.length > 0 ? h : 'gateway';
}

function invalid(problems: string[]): PlcError {
  return new PlcError(
    'config-invalid',
    `invalid bridge configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`,
    { problems },
  );
}

/** Validates a parsed document; pure. Throws PlcError('config-invalid') listing every problem. */
export function parseBridgeConfig(raw: unknown, overrides: BridgeOverrides = {}): BridgeConfig {
  if (raw !== undefined && raw !== null && record(raw) === undefined) throw invalid(['(top level): expected a mapping']);
  const doc: Record<string, unknown> = { ...(record(raw) ?? {}) };
  if (overrides.gatewayId !== undefined) doc.gatewayId = overrides.gatewayId;
  if (overrides.dataDir !== undefined) doc.dataDir = overrides.dataDir;
  if (overrides.broker !== undefined) doc.mqtt = { ...(record(doc.mqtt) ?? {}), url: overrides.broker };
  if (doc.gatewayId === undefined) doc.gatewayId = defaultGatewayId();
  const parsed = bridgeSchema.safeParse(doc);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
  problems.push(...crossCheck(doc));
  if (!parsed.success || problems.length > 0) throw invalid(problems);
  const data = parsed.data;
  const devices: DeviceConfig[] = data.devices.map((d) => ({
    ...d,
    groups: d.groups.map((g) => {
      const group: GroupConfig = {
        name: g.name,
        intervalMs: g.intervalMs,
        staleAfterMs: g.staleAfterMs ?? (data.staleAfterMs > 0 ? data.staleAfterMs : 3 * g.intervalMs),
        tags: g.tags.map((t) => resolveTag(t, d.addressing)),
      };
      if (g.qos !== undefined) group.qos = g.qos;
      return group;
    }),
  }));
  return { ...data, devices };
}

/**
 * Parses YAML text (the YAML 1.2 core schema, as the agent's config); a duplicate key is an error
 * (config-syntax), as in the agent's config. js-yaml, not the `yaml` package the agent's small file
 * goes through: a bridge file of 20,000 tags (2 MB) costs `yaml`'s document model about 1.3 s and
 * 130 MB of peak RSS, which the bridge would carry as heap until its first full GC; js-yaml builds
 * the plain objects directly in about 0.16 s and 18 MB.
 */
export function parseBridgeConfigText(text: string, source: string): unknown {
  try {
    return load(text, { schema: CORE_SCHEMA, filename: source }) ?? null;
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    const where = err.mark ? ` at line ${err.mark.line + 1}, column ${err.mark.column + 1}` : '';
    const problems = [`${err.reason}${where}`];
    throw new PlcError('config-syntax', `${source} is not valid YAML:\n  ${problems.join('\n  ')}`, { problems });
  }
}

/** Reads and validates the bridge's file. Unlike the agent's, the file must exist: a bridge needs devices. */
export function loadBridgeConfig(path: string, overrides: BridgeOverrides = {}): BridgeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new PlcError('config-not-found', `bridge configuration file ${path} does not exist`);
    throw new PlcError('config-unreadable', `cannot read ${path}: ${e.message}`);
  }
  return parseBridgeConfig(parseBridgeConfigText(text, path), overrides);
}

/** Every tag of a device by name (names are unique per device). */
export function deviceTags(device: DeviceConfig): Map<string, ResolvedTag> {
  return new Map(device.groups.flatMap((g) => g.tags.map((t) => [t.name, t] as const)));
}
