/** The `maintenance` subcommand's options and help, apart from its code (like bundle-usage.ts). */
import type { ParseArgsConfig } from 'node:util';

export const MAINTENANCE_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  force: { type: 'boolean' },
  param: { type: 'string', multiple: true },
  priority: { type: 'string' },
  detach: { type: 'boolean' },
  timeout: { type: 'string' },
  limit: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export const MAINTENANCE_USAGE = `edge-agent maintenance <list|show|validate|run|reports|report> ... [--json] [--config FILE] [--data-dir DIR]

The maintenance procedures on this gateway (docs/maintenance.md): the ones that ship with the
release and the operators' in maintenance.proceduresDir (default /etc/edge-agent/procedures/).
list, show, validate, reports and report work when the daemon is not running.

  edge-agent maintenance list [--json]
    Every procedure, valid, invalid or unsafe, with each problem's key path. Exit 0 when all
    are valid, 1 when one is invalid or unsafe or a directory cannot be read.

  edge-agent maintenance show ID [--json]
    One procedure: its file, sha256, parameters, prerequisites, steps, rollback, success
    criteria, schedule and triggers; or its problems. Exit 0 valid, 1 invalid or unsafe, 2 no
    such procedure.

  edge-agent maintenance validate FILE [--json]
    Checks a procedure file without installing it: YAML, the schema and every rule (not its
    permissions, which depend on where it is installed). Exit 0 valid, 1 invalid (every problem
    on stderr), 66 the file cannot be read.

  edge-agent maintenance run ID [--dry-run] [--param K=V]... [--force] [--priority P] [--detach] [--timeout SEC]
    Runs a procedure through the daemon, as the WMS's maintenance operation would: it waits in
    the operation queue when it may change something and another exclusive operation runs.
    Prints each step as it starts, then the report. --dry-run runs no step with side effects
    (they are reported would-run); --param gives a parameter (repeat it; the value takes the
    declared type); --force runs a disruptive procedure outside a maintenance window; --detach
    prints the run id and returns. The run id is what pause, resume, cancel and confirm take.
    Exit 0 succeeded, 1 the run ended otherwise, 2 rejected (the code is printed), 3 no daemon.

  edge-agent maintenance reports [--limit N] [--json]
    The newest runs (default 20), newest first: id, procedure, state, trigger, who started it.

  edge-agent maintenance report RUN [--json]
    One run's report: each step's outcome, timing and output, validations, rollback, success
    criteria. Exit 2 when there is no such run.

  --config FILE      configuration file (default /etc/edge-agent/config.yaml, or $EDGE_AGENT_CONFIG)
  --data-dir DIR     the agent's data directory (its owner is taken as the agent's user)
  --json             machine-readable output on stdout
  -h, --help         this help

See also: edge-agent operations (the queue), edge-agent pause|resume|cancel ID, edge-agent
confirm ID STEP --yes|--no.

Exit status 64 for a usage error, 78 when the configuration is invalid.`;
