/**
 * The `security-review` action's verdicts (maintenance-monthly): modes and owners of the
 * configuration, the keys and certificates, the procedure files and the data directory, as
 * findings for the report. Pure: the wiring (agent/maintenance-wiring.ts) stats the files and
 * hands their facts in; nothing here, nor there, changes a mode or an owner: it is a review.
 *
 * INVARIANTS
 * - A failure: a secret (a private key, a configuration holding a password, a copy of one)
 *   readable by others; anything reviewed writable by others (a sticky directory aside); a
 *   configuration, key or procedure owned by someone other than root or the agent's user.
 * - A warning: a secret readable by a group that is not the agent's own (a private key: by any
 *   group, it should be 0600); group-writable configuration, keys or procedures; a data directory
 *   others can enter or read.
 * - The step fails on a failure; warnings are reported and do not fail it.
 */
import { trustedOwners } from './safety.js';

export type ReviewKind = 'configuration' | 'private-key' | 'certificate' | 'procedure' | 'directory' | 'data';

export interface FileFacts {
  path: string;
  /** Why it is reviewed: "--config", "mqtt.tls.key", "procedure", ... */
  what: string;
  kind: ReviewKind;
  /** Holds a secret (a private key, a password, a copy of a configuration holding one). */
  secret: boolean;
  mode: number;
  uid: number;
  gid: number;
  isDirectory: boolean;
}

export interface Finding {
  path: string;
  what: string;
  severity: 'failure' | 'warning';
  problem: string;
}

export interface ReviewSummary {
  ok: boolean;
  reviewed: number;
  failures: number;
  warnings: number;
  findings: Finding[];
}

const octal = (mode: number): string => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/** What is wrong with one file or directory; [] when nothing. */
export function reviewFile(f: FileFacts, agent: { uid: number; gid: number }): Finding[] {
  const out: Finding[] = [];
  const add = (severity: Finding['severity'], problem: string): void => void out.push({ path: f.path, what: f.what, severity, problem });
  const m = f.mode & 0o7777;
  const sticky = f.isDirectory && (m & 0o1000) !== 0;
  if (m & 0o002 && !sticky) add('failure', `anyone can write it (mode ${octal(m)}): chmod o-w`);
  if (f.secret && m & 0o004) add('failure', `anyone can read it (mode ${octal(m)}) and it holds a secret: chmod o-r`);
  if (f.secret && m & 0o040) {
    if (f.kind === 'private-key') add('warning', `its group can read a private key (mode ${octal(m)}): chmod 0600`);
    else if (f.gid !== agent.gid && f.gid !== 0) add('warning', `group ${f.gid}, not the agent's group ${agent.gid}, can read it (mode ${octal(m)}) and it holds a secret: chgrp or chmod g-r`);
  }
  if (f.kind !== 'data' && m & 0o020 && !(f.isDirectory && f.gid === agent.gid)) add('warning', `its group can write it (mode ${octal(m)}): chmod g-w`);
  if (f.kind !== 'data' && f.kind !== 'directory' && !trustedOwners(agent.uid).has(f.uid)) add('failure', `owned by uid ${f.uid}, not by root or the agent's user (uid ${agent.uid}): whoever that is can change it`);
  if (f.kind === 'directory' && m & 0o005 && !sticky) add('warning', `others can ${m & 0o004 ? 'list' : 'enter'} it (mode ${octal(m)}): chmod o-rx (0750)`);
  return out;
}

/** Every finding of every file, failures first. */
export function reviewFiles(files: readonly FileFacts[], agent: { uid: number; gid: number }): ReviewSummary {
  const findings = files.flatMap((f) => reviewFile(f, agent)).sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'failure' ? -1 : 1));
  const failures = findings.filter((x) => x.severity === 'failure').length;
  return { ok: failures === 0, reviewed: files.length, failures, warnings: findings.length - failures, findings };
}

/** The step's one line. */
export function reviewMessage(s: ReviewSummary): string {
  if (s.findings.length === 0) return `${s.reviewed} files and directories reviewed: modes and owners are safe`;
  const first = s.findings.slice(0, 3).map((x) => `${x.path} (${x.what}): ${x.problem}`);
  return `${s.reviewed} reviewed: ${s.failures} failures, ${s.warnings} warnings; ${first.join('; ')}${s.findings.length > 3 ? `; ${s.findings.length - 3} more in the report` : ''}`;
}
