#!/usr/bin/env node
/**
 * `edge-agent`: every user-facing action is a subcommand (CONTRACT.md section 5). Errors go to
 * stderr with a non-zero status and a message a person can act on; `--help` on every subcommand.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from '../../lib/errors.js';
import { BUNDLE_OPTIONS, BUNDLE_USAGE } from './bundle-usage.js';
import { MAINTENANCE_OPTIONS, MAINTENANCE_USAGE } from './maintenance-usage.js';

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

/** `edge-agent pause|resume|cancel ID`: the same options and outcome, each its own text. */
function control(op: 'pause' | 'resume' | 'cancel', summary: string, text: string): Subcommand {
  return {
    summary,
    usage: `edge-agent ${op} ID [--timeout SEC] [--json] [--config FILE] [--data-dir DIR]

${text}

${COMMON_HELP}
  --timeout SEC      how long to wait for the daemon's answer (default 120)
  --json             print the command's terminal status`,
    options: { ...common, timeout: { type: 'string' }, json: { type: 'boolean' } },
    positionals: true,
    run: async (v, p) => (await import('./operations.js')).controlCommand(op, v, p),
  };
}

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
    // Each subcommand loads only its own modules: the daemon's start-up is on the path of every
    // restart and update (bench/ measures it), and `status` need not load the updater.
    run: async (v) =>
      (await import('../main.js')).runDaemon({
        configPath: str(v.config),
        overrides: { broker: str(v.broker), gatewayId: str(v['gateway-id']), dataDir: str(v['data-dir']) },
      }),
  },
  'plc-bridge': {
    summary: 'run the PLC bridge (Modbus TCP <-> MQTT), its own process',
    usage: `edge-agent plc-bridge --config FILE [--handover] [--broker URL] [--gateway-id ID] [--data-dir DIR]

Runs the PLC bridge in the foreground (docs/plc-bridge.md): its own MQTT connection, its own
store and control socket ({dataDir}/plc-bridge.sock). Exit status 78 when the configuration is
invalid (every problem is listed), 1 when another bridge runs on the same data directory.

  --config FILE      the bridge's configuration (required)
  --handover         start as a standby and take the role over from the running bridge once
                     this one reads well (an update); without a running bridge, just start
  --broker URL       overrides mqtt.url
  --gateway-id ID    overrides gatewayId
  --data-dir DIR     overrides dataDir
  -h, --help         this help`,
    options: { ...common, handover: { type: 'boolean' }, broker: { type: 'string' }, 'gateway-id': { type: 'string' } },
    run: async (v) => {
      const configPath = str(v.config);
      if (!configPath) {
        process.stderr.write('edge-agent plc-bridge: --config FILE is required\n');
        return 64;
      }
      return (await import('../../plc-bridge/main.js')).runBridge({
        configPath,
        handover: v.handover === true,
        overrides: { broker: str(v.broker), gatewayId: str(v['gateway-id']), dataDir: str(v['data-dir']) },
      });
    },
  },
  status: {
    summary: 'version, slot, broker connection, outbox, current operation',
    usage: `edge-agent status [--json] [--config FILE] [--data-dir DIR]

Asks the running daemon over its admin socket; when the daemon is down, prints what the state
store says (last run, outbox depth, unfinished commands) and exits 3.

${COMMON_HELP}
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' } },
    run: async (v) => (await import('./status.js')).statusCommand(v),
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
    run: async (v) => (await import('./event.js')).eventCommand(v),
  },
  health: {
    summary: 'metric trends (min/avg/max per bucket) and active alerts, from the store',
    usage: `edge-agent health [--since 24h|7d|90m] [--metric PATTERN] [--json] [--config FILE] [--data-dir DIR]

Reads the health history from the state store (read-only; works when the daemon is down): per
metric its min, average, max and last value over the range and a trend line of bucket averages,
then the alerts that are active. The daemon writes samples about once a minute. Exit status 3
when there is no state store, 64 when --since is malformed.

${COMMON_HELP}
  --since D          how far back: a number and s, m, h, d or w (default 24h)
  --metric PATTERN   only these metrics (* matches anything, e.g. 'disk.*'), bucket by bucket
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' }, since: { type: 'string' }, metric: { type: 'string' } },
    run: async (v) => (await import('./health.js')).healthCommand(v),
  },
  slots: {
    summary: 'both slots: version and state (active, committed, trial, bad, empty, installing)',
    usage: `edge-agent slots [--json] [--config FILE] [--data-dir DIR]

Reads ROOT/slots.json (ROOT is ota.root of the configuration, or $EDGE_AGENT_ROOT); works when
the daemon is down. Exit status 3 when nothing is installed under ROOT, 1 when slots.json is
unreadable.

${COMMON_HELP}
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' } },
    run: async (v) => (await import('./slots.js')).slotsCommand(v),
  },
  history: {
    summary: 'installed versions and past operations, newest first',
    usage: `edge-agent history [--json] [--limit N] [--config FILE] [--data-dir DIR]

The slot transitions ROOT/slots.json remembers (install, verified, activate, commit, fail-trial,
guard-rollback, rollback, abort-install) merged with the commands in the state store (read-only),
newest first; works when the daemon is down. Exit status 3 when neither exists.

${COMMON_HELP}
  --limit N          at most N entries (default 50)
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' }, limit: { type: 'string' } },
    run: async (v) => (await import('./history.js')).historyCommand(v),
  },
  incidents: {
    summary: 'what the watchdog recorded: failures, restarts, escalations, newest first',
    usage: `edge-agent incidents [--json] [--since 24h] [--component NAME] [--limit N] [--config FILE] [--data-dir DIR]

Lists the incidents of the watchdog from the state store (read-only; works when the daemon is
down), newest first: the component, the cause (exited, hung, start-timeout, spawn-failed, gone,
requested) with its exit code or signal, the step taken (restart, restore-config, rollback,
rollback-skipped, alarm, slow-retry), the last lines of its log and how long recovery took.
Exit status 3 when there is no state store, 64 for a malformed option.

${COMMON_HELP}
  --since D          only the last D: a number and s, m, h or d (e.g. 90m, 24h, 7d)
  --component NAME   only this component (plc-bridge, or a declared service)
  --limit N          at most N incidents (default 100)
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' }, since: { type: 'string' }, component: { type: 'string' }, limit: { type: 'string' } },
    run: async (v) => (await import('./incidents.js')).incidentsCommand(v),
  },
  audit: {
    summary: 'the audit trail: who changed what and when, hash-chained; --verify checks the chain',
    usage: `edge-agent audit [--since T] [--verify] [--json] [--config FILE] [--data-dir DIR]

Lists the audit trail (docs/audit.md) oldest first from the state store (read-only; works when
the daemon is down): each command that reached a terminal status, with who sent it (wms:ID, or
local for the admin socket), the operation, its target and outcome. With --verify, checks the
hash chain instead. Exit status 0 when printed or when the chain holds, 2 when --verify finds
the chain broken (the first entry that breaks it is named), 3 when there is no state store, 64
for a malformed option.

${COMMON_HELP}
  --since T          only entries from T on: a duration back from now (90m, 24h, 7d) or an
                     ISO 8601 time (2026-12-01T00:00:00Z)
  --verify           check the chain: every entry's hash and link to the one before
  --json             machine-readable output: the list of entries {seq, at, actor, action,
                     target, outcome, details, prevHash, hash}; with --verify the result`,
    options: { ...common, json: { type: 'boolean' }, since: { type: 'string' }, verify: { type: 'boolean' } },
    run: async (v) => (await import('./audit.js')).auditCommand(v),
  },
  config: {
    summary: 'the running configuration: show it, diff a file against it, apply a file safely',
    usage: `edge-agent config show|diff FILE|apply FILE [--target agent|plc-bridge] [--json] [--config FILE] [--data-dir DIR]

Through the running daemon's admin socket (docs/config-apply.md). show prints the configuration
of the agent or the PLC bridge with its hash, secrets as "[redacted]". diff FILE lists the key
paths FILE changes (exit 0 when none, 1 when some). apply FILE sends FILE as a whole document,
based on the hash read just before, as a \`config\` command (recorded in the audit trail as local):
it is validated whole (every problem listed), applied, and kept only when the agent is connected
and healthy again within --confirm-sec, else reverted by itself. "[redacted]" in FILE keeps
the secret that is set. Exit status 0 when applied and confirmed, 1 when refused or reverted, 3
when the daemon is not running, 64 for a malformed option.

${COMMON_HELP}
  --target T         agent (default) or plc-bridge
  --confirm-sec N    apply: how long the agent has to be connected and healthy (default 60)
  --timeout S        apply: how long to wait for the outcome (default confirm-sec + 60)
  --json             machine-readable output: show {target, hash, config}; diff {target, hash,
                     changed}; apply the final status {id, op, status, reason?, result?}`,
    options: { ...common, json: { type: 'boolean' }, target: { type: 'string' }, 'confirm-sec': { type: 'string' }, timeout: { type: 'string' } },
    positionals: true,
    run: async (v, p) => (await import('./config.js')).configCommand(v, p),
  },
  cert: {
    summary: "the gateway's client certificate: status, a new key and CSR, install the signed certificate",
    usage: `edge-agent cert status|csr|install FILE [--key-type ec-p256|rsa-2048] [--json] [--config FILE] [--data-dir DIR]

The \`certificate\` operation through the running daemon's admin socket (docs/certificates.md),
recorded in the audit trail as local. status prints the certificate in use. csr makes a new key
on the gateway (0600, it never leaves) and prints its CSR (PEM, CN = the gateway id) for the CA.
install FILE takes the signed certificate (PEM, then its chain) for that key: it is checked
(key, CA, dates, clientAuth), tried with a separate connection to the broker, and only then
swapped in; the previous pair is kept for a day. Exit status 0 when done, 1 when refused (the
code and why on stderr; the current certificate stays), 3 when the daemon is not running, 64
for a malformed option.

${COMMON_HELP}
  --key-type T       csr: ec-p256 (default) or rsa-2048
  --json             the final status {id, op, status, reason?, result?}`,
    options: { ...common, json: { type: 'boolean' }, 'key-type': { type: 'string' } },
    positionals: true,
    run: async (v, p) => (await import('./cert.js')).certCommand(v, p),
  },
  diag: {
    summary: 'the diagnostics suite: what is wrong and what to do (exit 0 ok, 1 warnings, 2 failures)',
    usage: `edge-agent diag [--json] [--only GROUPS] [--config FILE] [--data-dir DIR]

Checks configuration, identity, connectivity (DNS, TCP, TLS, MQTT round trip), time, storage,
slots, components, PLCs, maintenance procedures and recent logs, each with a verdict and a
recommendation. Runs the checks itself, so it works when the daemon is down; each check is
bounded (diag.checkTimeoutMs).
Exit status 0 when all is ok, 1 with warnings, 2 with failures.

${COMMON_HELP}
  --only GROUPS      only these groups, comma-separated (e.g. connectivity,time)
  --json             machine-readable output`,
    options: { ...common, json: { type: 'boolean' }, only: { type: 'string' } },
    run: async (v) => (await import('./diag.js')).diagCommand(v),
  },
  'support-bundle': {
    summary: 'a .tar.gz for support: diagnostics, recent logs, redacted configuration, slots, history',
    usage: `edge-agent support-bundle [-o FILE] [--json] [--config FILE] [--data-dir DIR]

Runs the diagnostics suite and writes a .tar.gz (mode 0600) with the report, the recent logs,
the configuration with secrets redacted, slot states and history, commands, incidents and health
history. Works when the daemon is down. Exit status 0 when written, 1 when not.

${COMMON_HELP}
  -o, --output FILE  where to write it (default ./edge-agent-support-GATEWAY-TIME.tar.gz)
  --json             print {path, bytes, files, overall}`,
    options: { ...common, output: { type: 'string', short: 'o' }, json: { type: 'boolean' } },
    run: async (v) => (await import('./support-bundle.js')).supportBundleCommand(v),
  },
  rollback: {
    summary: 'switch back to the other committed slot (the rollback operation)',
    usage: `edge-agent rollback [--timeout SEC] [--config FILE] [--data-dir DIR]

Asks the running daemon to run the rollback operation, as if the WMS had sent it, and waits for
its outcome across the agent's restart. Exit status 0 when it succeeded, 1 when it failed or was
rejected (the reason code is printed) or no outcome came in time, 3 when the daemon is not running.

${COMMON_HELP}
  --timeout SEC      how long to wait for the outcome (default 60)`,
    options: { ...common, timeout: { type: 'string' } },
    run: async (v) => (await import('./rollback.js')).rollbackCommand(v),
  },
  bundle: {
    summary: 'make, verify or inspect an update bundle (create|verify|inspect)',
    usage: BUNDLE_USAGE,
    options: BUNDLE_OPTIONS,
    positionals: true,
    run: async (v, p) => (await import('./bundle.js')).bundleCommand(v, p),
  },
  console: {
    summary: 'the local web console: a one-time pairing code (pair), its sessions (sessions)',
    usage: `edge-agent console pair [--role viewer|operator] [--json] [--config FILE] [--data-dir DIR]
edge-agent console sessions [--revoke LABEL|all] [--json] [--config FILE] [--data-dir DIR]

pair: asks the running daemon for a one-time code and prints the URL that opens the web console
(docs/console.md) with it, valid for 10 minutes: http://127.0.0.1:8080/#pair=CODE. The browser
that opens it gets a session with the role given (default viewer: reads only; operator: also
restarts, rollbacks, cancels). sessions: lists the live sessions; --revoke ends one by its label
(or all). Needs the daemon (sessions live in it only) and the admin socket (root or the agent's
group). Exit status 3 when the daemon is not running, 1 when --revoke matched nothing, 64 for a
malformed option. --json: pair prints {url, code, role, expiresAt}; sessions {sessions, revoked?}.

${COMMON_HELP}
  --role R           viewer (default) or operator
  --revoke LABEL     end the session with this label (from the list), or all
  --json             machine-readable output`,
    options: { ...common, role: { type: 'string' }, revoke: { type: 'string' }, json: { type: 'boolean' } },
    positionals: true,
    run: async (v, p) => (await import('./console.js')).consoleCommand(v, p),
  },
  maintenance: {
    summary: 'maintenance procedures: list|show ID|validate FILE|run ID|reports|report RUN',
    usage: MAINTENANCE_USAGE,
    options: MAINTENANCE_OPTIONS,
    positionals: true,
    run: async (v, p) => (await import('./maintenance.js')).maintenanceCommand(v, p),
  },
  operations: {
    summary: 'the operation queue: running, paused and waiting operations',
    usage: `edge-agent operations [--json] [--config FILE] [--data-dir DIR]

What runs and what waits, in the order it will start: exclusive operations (updates, rollbacks,
config applies, procedures that change something) run one at a time, highest priority first,
then oldest; read-only ones run beside. For a procedure run: its step, its share done, whether it
is paused or waits for a confirmation (and the command that answers it). With the daemon down it
lists the unfinished commands from the store. Exit 0.

${COMMON_HELP}
  --json             {daemon, operations: [{id, op, state, exclusive, priority, origin, since, step, position, run?}]}`,
    options: { ...common, json: { type: 'boolean' } },
    run: async (v) => (await import('./operations.js')).operationsCommand(v),
  },
  pause: control('pause', 'pause a running procedure at its next step boundary', `Pauses procedure run ID at its next step boundary (the step that runs finishes first) and
waits until it is paused. Exit 0 paused, 1 it ended or began rolling back first, 2 rejected
(not-running), 3 the daemon is not running.`),
  resume: control('resume', 'resume a paused procedure', `Resumes paused procedure run ID. Exit 0 running again, 2 rejected (not-running), 3 the daemon
is not running.`),
  cancel: control('cancel', 'cancel an operation: a waiting one at once, a procedure at its next step boundary (then its rollback)', `Cancels operation ID: one still waiting in the queue ends cancelled at once; a procedure stops
at its next step boundary (a running command step is killed, its process group with it) and
runs its rollback steps; an update only before its point of no return. Exit 0 requested, 1
failed (unknown-target, not-cancellable), 3 the daemon is not running.`),
  confirm: {
    summary: "answer a procedure's confirm step: edge-agent confirm ID STEP --yes|--no",
    usage: `edge-agent confirm ID STEP --yes|--no [--timeout SEC] [--json] [--config FILE] [--data-dir DIR]

Answers the confirm step STEP that run ID waits at (edge-agent operations shows it): --yes lets
the run go on, --no fails the step (its onFailure decides what follows). Exit 0 answered, 2
rejected (not-waiting: the run does not wait at that step), 3 the daemon is not running.

${COMMON_HELP}
  --yes, --no        the answer
  --timeout SEC      how long to wait for the daemon's answer (default 120)
  --json             print the command's terminal status`,
    options: { ...common, yes: { type: 'boolean' }, no: { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
    positionals: true,
    run: async (v, p) => (await import('./operations.js')).controlCommand('confirm', v, p),
  },
  install: {
    summary: 'first installation of this release into ROOT as slot A, with the boot guard',
    usage: `edge-agent install --root ROOT [--from DIR] [--config FILE] [--upgrade]

Copies package.json, dist/ and node_modules/ of the release (default: the one this command runs
from; symbolic links as they are) into ROOT/slots/A, installs the boot guard in ROOT/guard,
writes ROOT/slots.json (A committed and active) and prints the systemd ExecStart line (with
the --config path). Refuses
when ROOT is already installed: releases change through update bundles.

${COMMON_HELP}
  --root ROOT        the install root, e.g. /opt/edge-agent
  --from DIR         the release to install (a package root with dist/ and node_modules/)
  --upgrade          when ROOT is installed: copy the release into the inactive slot and
                     activate it as a trial through the boot guard (the Debian package's
                     upgrade); refused while a trial runs`,
    options: { ...common, root: { type: 'string' }, from: { type: 'string' }, upgrade: { type: 'boolean' } },
    run: async (v) => (await import('./install.js')).installCommand(v),
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
    if (process.argv[2] === 'run' || process.argv[2] === 'plc-bridge') setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    process.stderr.write(`edge-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(70);
  },
);
