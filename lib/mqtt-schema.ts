/**
 * The MQTT connection keys the agent's configuration (core/config-schema.ts) and the PLC
 * bridge's (plc-bridge/config.ts) share: one definition, so both accept the same broker URLs,
 * TLS files and reconnect backoff, with the same defaults and messages. Each file lists the keys
 * in its own object, in its own order (the order of a parsed configuration and of its problems),
 * next to the keys only it has. The files are read by lib/mqtt-options.ts.
 */
import { z } from 'zod';

/** Reconnect delays (lib/backoff.ts BackoffPolicy). */
export const mqttBackoffSchema = z
  .object({
    initialMs: z.number().int().min(10).max(600_000).default(500),
    maxMs: z.number().int().min(10).max(3_600_000).default(30_000),
    factor: z.number().min(1).max(10).default(2),
    jitter: z.number().min(0).max(1).default(1),
  })
  .strict()
  .refine((b) => b.maxMs >= b.initialMs, { message: 'maxMs must be at least initialMs', path: ['maxMs'] });

export const mqttTlsSchema = z
  .object({
    ca: z.string().min(1).optional().describe('PEM file with the CA(s) that signed the broker certificate'),
    cert: z.string().min(1).optional().describe('PEM file with the client certificate (mTLS)'),
    key: z.string().min(1).optional().describe('PEM file with the client private key (mTLS)'),
    rejectUnauthorized: z.boolean().default(true),
    servername: z.string().optional(),
  })
  .strict()
  .refine((t) => !!t.cert === !!t.key, { message: 'cert and key go together', path: ['cert'] });

export type MqttTls = z.infer<typeof mqttTlsSchema>;

/** The shared keys of an `mqtt` section, each with its default. */
const mqttFields = {
  url: z
    .string()
    .regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/, 'must be a URL such as mqtt://host:1883 or mqtts://host:8883')
    .default('mqtt://localhost:1883'),
  urls: z
    .array(z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/, 'must be a URL such as mqtt://host:1883 or mqtts://host:8883'))
    .max(16)
    .optional()
    .describe('brokers to fail over between, in order; replaces url when set'),
  prefix: z
    .string()
    .regex(/^[^#+\s]+(\/[^#+\s]+)*$/, 'must be a topic prefix without wildcards, e.g. "edge"')
    .default('edge'),
  clientId: z.string().min(1).max(128).optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  keepaliveSec: z.number().int().min(5).max(3600).default(30),
  connectTimeoutMs: z.number().int().min(500).max(120_000).default(10_000),
  reconnect: mqttBackoffSchema.default({ initialMs: 500, maxMs: 30_000, factor: 2, jitter: 1 }),
  tls: mqttTlsSchema.default({ rejectUnauthorized: true }),
};

/** Some of the shared keys, in the order given: a config spreads them into its own `mqtt` object. */
export function mqttKeys<K extends keyof typeof mqttFields>(...keys: K[]): Pick<typeof mqttFields, K> {
  const picked: Partial<Pick<typeof mqttFields, K>> = {};
  for (const k of keys) picked[k] = mqttFields[k];
  return picked as Pick<typeof mqttFields, K>;
}
