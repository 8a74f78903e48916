#!/usr/bin/env node
/**
 * `edge-agent`: every user-facing action is a subcommand (CONTRACT.md section 5). Errors go to
 * stderr with a non-zero status and a message a person can act on; `--help` on every subcommand.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from '../../lib/errors.js';
import { runDaemon } from '../main.js';
import { statusCommand } from './status.js';
import { eventCommand } from './event.js';

type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

interface Subcommand {
  summary: string;
  usage: string;
  options: Options;
  positionals?: boolean;
  run(values: Values, positionals: string[]): Promise<number>;
}

const common: Options = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const COMMON_HELP = `  --config FILE      configuration file (default /etc/edge-agent/config.yaml, or $EDGE_AGENT_CONFIG)
  --data-dir DIR     the agent's data directory (overrides the file; or $EDGE_AGENT_DATA_DIR)
  -h, --help         this help`;

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

const commands: Record<string, Subcommand> = {
  run: {
    summary: 'run the daemon (what systemd starts)',
    usage: `edge-agent run [--config FILE] [--broker URL] [--gateway-id ID] [--data-dir DIR]

Runs the agent in the foreground, logging JSON to stdout (pipe it to pino-pretty to read it).
With --broker, --gateway-id and --data-dir and no file it runs on defaults. Exit status 78 when
the configuration is invalid (every problem is listed), 0 after SIGTERM or SIGINT.

${COMMON_HELP}
  --broker URL       MQTT broker, e.g. mqtt://localhost:1883 or mqtts://wms:8883 ($EDGE_AGENT_BROKER)
  --gateway-id ID    this gateway's id, [A-Za-z0-9_-]{1,64} ($EDGE_AGENT_GATEWAY_ID)`,
    options: { ...common, broker: { type: 'string' }, 'gateway-id': { type: 'string' } },
    run: (v) =>
      runDaemon({
        configPath: str(v.config),
        overrides: { broker: str(v.broker), gatewayId: str(v['gateway-id']), dataDir: str(v['data-dir']) },
      }),
  },
  status: {
    summary: 'version, slot, broker connection, outbox, current operation',
    usage: `edge-agent status [--json] [--config FILE] [--data-dir DIR]

Asks the running daemon over its admin socket; when the daemon is down, prints what the state
store says (last run, outbox depth, unfinished commands) and exits 3.

${COMMON_HELP}
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' } },
    run: (v) => statusCommand(v),
  },
  event: {
    summary: 'send a note to the WMS on ~/events (queued durably)',
    usage: `edge-agent event --code CODE --message TEXT [--severity info|warning|critical]

Queues an event {type: "note", source: "admin", code, message, severity} in the daemon's durable
outbox; it reaches the WMS once the broker is reachable. Needs the daemon running.

${COMMON_HELP}
  --code CODE        a short code, e.g. maintenance-note
  --message TEXT     what the WMS should know
  --severity S       info (default), warning or critical`,
    options: { ...common, code: { type: 'string' }, message: { type: 'string' }, severity: { type: 'string' } },
    run: (v) => eventCommand(v),
  },
};

function mainHelp(): string {
  const w = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`);
  return `edge-agent: the edge gateway agent between the WMS and the PLCs

Usage: edge-agent <command> [options]; edge-agent <command> --help for its options.

Commands:
${lines.join('\n')}
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name === undefined ? 64 : 0;
  }
  const cmd = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!cmd) {
    process.stderr.write(`edge-agent: unknown command "${name}"\n\n${mainHelp()}`);
    return 64;
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: cmd.positionals ?? false, strict: true }) as typeof parsed;
  } catch (err) {
    process.stderr.write(`edge-agent ${name}: ${errorMessage(err)}\n\nUsage: ${cmd.usage}\n`);
    return 64;
  }
  if (parsed.values.help) {
    process.stdout.write(`Usage: ${cmd.usage}\n`);
    return 0;
  }
  return cmd.run(parsed.values, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The daemon's handles are closed by then; a leftover timer in a library must not keep us alive.
    if (process.argv[2] === 'run') setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    process.stderr.write(`edge-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(70);
  },
);
