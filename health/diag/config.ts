/**
 * Group `configuration`: the file loads and validates (core/config.ts), and it and the files it
 * names are not open to people who should not read or change them. A configuration others can
 * write can point the gateway at another broker or another update trust anchor; one others can
 * read gives away the MQTT password.
 */
import { stat } from 'node:fs/promises';
import type { AgentConfig } from '../../core/config.js';
import { secretValues } from '../../lib/redact.js';
import { failure, ok, warning, type CheckResult, type DiagContext } from './types.js';

/** What is wrong with a file's mode; pure. `secret`: the file holds a password or a private key. */
export function modeProblem(mode: number, secret: boolean): { status: 'warning' | 'failure'; why: string } | undefined {
  const perm = mode & 0o777;
  if (perm & 0o002) return { status: 'failure', why: `anyone can write it (mode ${octal(perm)})` };
  if (perm & 0o020) return { status: 'warning', why: `its group can write it (mode ${octal(perm)})` };
  if (secret && perm & 0o004) return { status: 'warning', why: `anyone can read it (mode ${octal(perm)}) and it holds a secret` };
  return undefined;
}

export function octal(perm: number): string {
  return `0${(perm & 0o777).toString(8).padStart(3, '0')}`;
}

/** The configuration's own file and the files it names, with whether each holds a secret. */
function filesToCheck(config: AgentConfig, path: string | undefined): { key: string; path: string; secret: boolean }[] {
  const files: { key: string; path: string; secret: boolean }[] = [];
  if (path) files.push({ key: '--config', path, secret: secretValues(config).size > 0 });
  const tls = config.mqtt.tls;
  if (tls.key) files.push({ key: 'mqtt.tls.key', path: tls.key, secret: true });
  if (tls.cert) files.push({ key: 'mqtt.tls.cert', path: tls.cert, secret: false });
  if (tls.ca) files.push({ key: 'mqtt.tls.ca', path: tls.ca, secret: false });
  files.push({ key: 'ota.trustAnchors', path: config.ota.trustAnchors, secret: false });
  if (config.plcBridge.config) files.push({ key: 'plcBridge.config', path: config.plcBridge.config, secret: false });
  return files;
}

async function permissions(config: AgentConfig, path: string | undefined): Promise<CheckResult> {
  const problems: { status: 'warning' | 'failure'; text: string }[] = [];
  const checked: string[] = [];
  for (const f of filesToCheck(config, path)) {
    let mode: number;
    try {
      mode = (await stat(f.path)).mode;
    } catch {
      continue; // a missing file is reported by the check that needs it (identity, slots, ...)
    }
    checked.push(f.path);
    const p = modeProblem(mode, f.secret);
    if (p) problems.push({ status: p.status, text: `${f.path} (${f.key}): ${p.why}` });
  }
  try {
    const dm = (await stat(config.dataDir)).mode & 0o777;
    if (dm & 0o002) problems.push({ status: 'failure', text: `the data directory ${config.dataDir}: anyone can write it (mode ${octal(dm)})` });
  } catch {
    /* reported by the storage group */
  }
  if (problems.length === 0) return ok('permissions', `${checked.length} file${checked.length === 1 ? '' : 's'} with safe permissions`, { files: checked });
  const status = problems.some((p) => p.status === 'failure') ? 'failure' : 'warning';
  const make = status === 'failure' ? failure : warning;
  return make(
    'permissions',
    problems.map((p) => p.text).join('; '),
    'make configuration files root:edge-agent mode 0640 and private keys mode 0600 (chmod/chown); the data directory 0750',
    { problems: problems.map((p) => p.text) },
  );
}

export async function configurationChecks(ctx: DiagContext): Promise<CheckResult[]> {
  if (!ctx.config) {
    return [
      failure(
        'valid',
        ctx.configError?.message ?? 'the configuration does not load',
        'fix each listed key (docs/configuration.md); the daemon refuses to start with this configuration (exit 78)',
      ),
    ];
  }
  const where = ctx.configPath ? `${ctx.configPath} is valid` : 'no configuration file: running on defaults, flags and environment';
  const valid = ok('valid', where, { file: ctx.configPath ?? null, gatewayId: ctx.config.gatewayId });
  return [valid, await permissions(ctx.config, ctx.configPath)];
}
