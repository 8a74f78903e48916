/** The `maintenance` subcommand's options and help, apart from its code (like bundle-usage.ts). */
import type { ParseArgsConfig } from 'node:util';

export const MAINTENANCE_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export const MAINTENANCE_USAGE = `edge-agent maintenance <list|show|validate|schedule> ... [--json] [--config FILE] [--data-dir DIR]

The maintenance procedures on this gateway (docs/maintenance.md): the ones that ship with the
release and the operators' in maintenance.proceduresDir (default /etc/edge-agent/procedures/).
Read from the files: works when the daemon is not running.

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

  edge-agent maintenance schedule [--json]
    Every schedule (a procedure's own, or set by maintenance.schedules) with its next run, last
    run and last outcome, and the next maintenance windows. Exit 0.

  --config FILE      configuration file (default /etc/edge-agent/config.yaml, or $EDGE_AGENT_CONFIG)
  --data-dir DIR     the agent's data directory (its owner is taken as the agent's user)
  --json             machine-readable output on stdout
  -h, --help         this help

Exit status 64 for a usage error, 78 when the configuration is invalid.`;
