/**
 * What `edge-agent maintenance` prints: the human text and the stable `--json` shapes. Pure.
 */
import type { Check } from '../../maintenance/checks.js';
import type { CatalogEntry } from '../../maintenance/catalog.js';
import type { Problem } from '../../maintenance/errors.js';
import { isParamRef, stepHasSideEffects, type ParamDecl, type Procedure, type Step } from '../../maintenance/schema.js';
import { formatPerfReview, isPerfReview } from '../../health/perf-review.js';

/** One procedure in `list --json` and `show --json`. */
export function entryJson(e: CatalogEntry, withDefinition: boolean): Record<string, unknown> {
  const p = e.procedure;
  return {
    id: e.id,
    status: e.status,
    source: e.source,
    file: e.file,
    definitionSha256: e.definitionSha256 ?? null,
    ...(e.overrides ? { overrides: e.overrides } : {}),
    name: p?.name ?? null,
    category: p?.category ?? null,
    severity: p?.severity ?? null,
    disruptive: p?.disruptive ?? null,
    problems: e.problems.map(problemJson),
    ...(withDefinition ? { procedure: p ?? null } : {}),
  };
}

export function problemJson(p: Problem): { file: string | null; path: string; message: string } {
  return { file: p.file ?? null, path: p.path, message: p.message };
}

function quoteArg(a: string): string {
  return /^[A-Za-z0-9_./=:,+@%-]+$/.test(a) || isParamRef(a) ? a : JSON.stringify(a);
}

export function formatCheck(c: Check): string {
  if ('metric' in c) return `${c.metric} ${c.op} ${typeof c.value === 'string' && !isParamRef(c.value) ? JSON.stringify(c.value) : String(c.value)}`;
  if ('not' in c) return `not (${formatCheck(c.not)})`;
  const [word, list] = 'all' in c ? ['all', c.all] : ['any', c.any];
  return `${word} (${list.map(formatCheck).join(', ')})`;
}

function stepWhat(s: Step): string {
  switch (s.type) {
    case 'command':
      return s.argv.map(quoteArg).join(' ') + (s.okExitCodes.length !== 1 || s.okExitCodes[0] !== 0 ? `  (ok exit codes ${s.okExitCodes.join(', ')})` : '');
    case 'action':
      return `${s.action}${Object.keys(s.with).length > 0 ? ` with ${JSON.stringify(s.with)}` : ''}`;
    case 'http':
      return `${s.method} ${s.url}${s.expectStatus !== undefined ? `  (expect ${String(s.expectStatus)})` : ''}`;
    case 'check':
      return formatCheck(s.check);
    case 'wait':
      return `${s.seconds} s`;
    case 'log':
      return JSON.stringify(s.message);
    case 'notify':
      return `${s.severity} ${s.code}: ${JSON.stringify(s.message)}`;
    case 'snapshot':
      return s.metrics ? s.metrics.join(', ') : 'all metrics and component states';
    case 'confirm':
      return `${JSON.stringify(s.message)} (answer within ${s.ttlSec} s)`;
  }
}

function stepLines(steps: readonly Step[], indent: string): string[] {
  const out: string[] = [];
  steps.forEach((s, i) => {
    const flags = [
      stepHasSideEffects(s) ? 'side effects' : 'read-only',
      s.onFailure !== 'abort' ? `on failure: ${s.onFailure}` : '',
      s.retries > 0 ? `retries ${s.retries}` : '',
      s.timeoutSec !== undefined ? `timeout ${s.timeoutSec} s` : '',
    ].filter(Boolean);
    out.push(`${indent}${i + 1}. ${s.id}  ${s.type}${s.name ? `  "${s.name}"` : ''}  [${flags.join(', ')}]`);
    out.push(`${indent}     ${stepWhat(s)}`);
    if (s.validate) out.push(`${indent}     validate: ${formatCheck(s.validate.check)}`);
  });
  return out;
}

function paramLine(name: string, d: ParamDecl): string {
  const bits: string[] = [d.type];
  if ((d.type === 'integer' || d.type === 'number') && (d.min !== undefined || d.max !== undefined)) bits.push(`${d.min ?? '-inf'}..${d.max ?? 'inf'}`);
  if (d.type === 'string') {
    if (d.pattern) bits.push(`pattern ${d.pattern}`);
    if (d.enum) bits.push(`one of ${d.enum.join(', ')}`);
    bits.push(`length ${d.minLength}..${d.maxLength}`);
  }
  bits.push(d.default !== undefined ? `default ${JSON.stringify(d.default)}` : 'required');
  return `  ${name}: ${bits.join(', ')}${d.description ? `  (${d.description})` : ''}`;
}

function problemLines(problems: readonly Problem[], indent: string): string[] {
  return problems.map((p) => `${indent}${p.path}: ${p.message}`);
}

export function formatList(entries: readonly CatalogEntry[], dirProblems: readonly Problem[]): string {
  const lines: string[] = [];
  if (entries.length === 0) lines.push('no procedures');
  const w = Math.max(2, ...entries.map((e) => e.id.length));
  for (const e of entries) {
    const p = e.procedure;
    const what = p ? `${p.category}, ${p.severity}${p.disruptive ? ', disruptive' : ''}: ${p.name}` : e.file;
    lines.push(`${e.id.padEnd(w)}  ${e.status.padEnd(7)}  ${e.source.padEnd(8)}  ${what}${e.overrides ? '  (replaces the shipped one)' : ''}`);
    lines.push(...problemLines(e.problems, '    '));
  }
  for (const p of dirProblems) lines.push(`${p.file ?? ''}: ${p.message}`);
  return lines.join('\n') + '\n';
}

export function formatShow(e: CatalogEntry): string {
  const lines = [`${e.id}  (${e.status}, ${e.source})`, `  file    ${e.file}`, `  sha256  ${e.definitionSha256 ?? '(unreadable)'}`];
  if (e.overrides) lines.push(`  replaces the shipped ${e.overrides}`);
  if (!e.procedure) {
    lines.push('', `${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}:`, ...problemLines(e.problems, '  '));
    return lines.join('\n') + '\n';
  }
  const p: Procedure = e.procedure;
  lines.push(`  name    ${p.name}`);
  if (p.description) lines.push(`  about   ${p.description}`);
  lines.push(
    `  ${p.category}, severity ${p.severity}, ${p.disruptive ? 'disruptive' : 'not disruptive'}; at most ${p.maxDurationSec} s${p.estimatedDurationSec !== undefined ? ` (about ${p.estimatedDurationSec} s)` : ''}; after an interruption: ${p.onInterrupt}`,
  );
  const params = Object.entries(p.params);
  if (params.length > 0) lines.push('', 'parameters:', ...params.map(([n, d]) => paramLine(n, d)));
  if (p.prerequisites.length > 0) lines.push('', 'prerequisites:', ...p.prerequisites.map((c) => `  ${formatCheck(c.check)}`));
  lines.push('', 'steps:', ...stepLines(p.steps, '  '));
  if (p.rollback.length > 0) lines.push('', 'rollback:', ...stepLines(p.rollback, '  '));
  if (p.successCriteria.length > 0) lines.push('', 'success criteria:', ...p.successCriteria.map((c) => `  ${formatCheck(c.check)}`));
  if (p.schedule) lines.push('', `schedule: ${p.schedule.cron}${p.schedule.timezone ? ` (${p.schedule.timezone})` : ' (local time)'}, jitter ${p.schedule.jitterSec} s, catch up ${p.schedule.catchUpSec} s`);
  if (p.triggers) {
    const t = p.triggers;
    const inc = t.incidents.map((i) => `${i.component}${i.cause ? `/${i.cause}` : ''}`);
    lines.push('', `triggers: incidents ${inc.join(', ') || '(none)'}; alerts ${t.alerts.join(', ') || '(none)'}; cooldown ${t.cooldownSec} s, at most ${t.maxAutoRunsPerDay} a day`);
  }
  return lines.join('\n') + '\n';
}

interface StepLine {
  id: string;
  name?: string;
  outcome: string;
  elapsedMs?: number;
  exitCode?: number | null;
  message?: string;
  output?: string;
  attempts?: number;
  validation?: { ok: boolean; reason: string };
  /** The action's details: a trend-report step's is printed as a table per component. */
  data?: unknown;
}

function stepReportLines(steps: readonly StepLine[], indent: string): string[] {
  const w = Math.max(4, ...steps.map((s) => s.id.length));
  return steps.flatMap((s) => {
    const time = s.elapsedMs !== undefined ? `${s.elapsedMs} ms` : '';
    const extra = [s.exitCode !== undefined && s.exitCode !== null ? `exit ${s.exitCode}` : '', s.attempts !== undefined ? `${s.attempts} attempts` : '', s.message ?? ''].filter(Boolean).join('; ');
    const out = [`${indent}${s.id.padEnd(w)}  ${s.outcome.padEnd(9)} ${time.padStart(9)}  ${extra}`.trimEnd()];
    if (s.validation) out.push(`${indent}${' '.repeat(w)}  validate: ${s.validation.ok ? 'ok' : 'FAILED'}: ${s.validation.reason}`);
    if (s.output) {
      const lines = s.output.trimEnd().split('\n');
      for (const l of lines.slice(-5)) out.push(`${indent}${' '.repeat(w)}  | ${l}`);
      if (lines.length > 5) out.push(`${indent}${' '.repeat(w)}  | (${lines.length - 5} earlier lines: --json shows all)`);
    }
    return out;
  });
}

/** A run's report for a person (`maintenance run`, `maintenance report RUN`). */
export function formatReport(r: Record<string, unknown>): string {
  const steps = (r.steps as StepLine[] | undefined) ?? [];
  const rb = r.rollback as { executed: boolean; cause?: string; steps: StepLine[] } | undefined;
  const reason = r.reason as { code: string; message: string } | undefined;
  const crit = (r.successCriteria as { name?: string; ok: boolean; reason: string }[] | undefined) ?? [];
  const t = (v: unknown, dflt = '?'): string => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : dflt);
  const pre = (r.prerequisites as { name?: string; ok: boolean; reason: string }[] | undefined) ?? [];
  const lines = [
    `run ${String(r.runId)}: ${String(r.procedure)}${r.dryRun ? ' (dry run)' : ''}: ${String(r.state).toUpperCase()}${reason ? ` (${reason.code}: ${reason.message})` : ''}`,
    `  started ${t(r.startedAt)} by ${t(r.startedBy)} (${t(r.trigger)}), ${t(r.elapsedMs)} ms; definition sha256 ${t(r.definitionSha256)}`,
    `  params: ${JSON.stringify(r.params ?? {})}`,
    ...(pre.length > 0 ? ['  prerequisites:', ...pre.map((c) => `    ${c.ok ? 'ok' : 'FAILED'}: ${c.name ?? c.reason}${c.name ? ` (${c.reason})` : ''}`)] : []),
    `  steps: ${t(r.stepsOk, '0')} ok, ${t(r.stepsFailed, '0')} failed, ${t(r.stepsSkipped, '0')} skipped of ${t(r.stepsTotal, String(steps.length))}`,
    ...stepReportLines(steps, '    '),
  ];
  for (const s of steps) if (isPerfReview(s.data)) lines.push('', `  ${s.id}:`, ...formatPerfReview(s.data, '    '), '');
  if (rb?.executed) lines.push(`  rollback (${rb.cause ?? 'ran'}):`, ...stepReportLines(rb.steps, '    '));
  if (crit.length > 0) lines.push('  success criteria:', ...crit.map((c) => `    ${c.ok ? 'ok' : 'FAILED'}: ${c.name ?? c.reason}${c.name ? ` (${c.reason})` : ''}`));
  if (typeof r.note === 'string') lines.push(`  ${r.note}`);
  return lines.join('\n') + '\n';
}

/** `maintenance reports`: one line per run, newest first. */
export function formatReports(list: readonly { runId: string; procedure: string; state: string; trigger: string; startedBy: string; dryRun: boolean; startedAt: string; endedAt: string | undefined }[]): string {
  if (list.length === 0) return 'no procedure has run yet\n';
  return list.map((r) => `${r.startedAt}  ${r.state.padEnd(11)} ${r.procedure}${r.dryRun ? ' (dry run)' : ''}  run ${r.runId}  by ${r.startedBy} (${r.trigger})`).join('\n') + '\n';
}
