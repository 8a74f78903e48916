/**
 * The diagnostics report for a person: one block per group, one line per check with its
 * verdict, the recommendation under anything that is not ok. Colour only on a terminal and
 * only without NO_COLOR (https://no-color.org); pure apart from useColor() reading its inputs.
 */
import type { CheckResult, CheckStatus, DiagReport } from './types.js';

const CODES = { reset: '\x1b[0m', green: '\x1b[32m', yellow: '\x1b[33m', red: '\x1b[31m', dim: '\x1b[2m', bold: '\x1b[1m' } as const;

export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '') && env.TERM !== 'dumb';
}

function tagOf(c: Pick<CheckResult, 'status' | 'skipped'>): { text: string; colour: keyof typeof CODES } {
  if (c.skipped) return { text: 'skip', colour: 'dim' };
  const by: Record<CheckStatus, { text: string; colour: keyof typeof CODES }> = {
    ok: { text: 'ok', colour: 'green' },
    warning: { text: 'WARN', colour: 'yellow' },
    failure: { text: 'FAIL', colour: 'red' },
  };
  return by[c.status];
}

export function formatReport(r: DiagReport, opts: { color: boolean }): string {
  const paint = (colour: keyof typeof CODES, s: string): string => (opts.color ? `${CODES[colour]}${s}${CODES.reset}` : s);
  const lines: string[] = [
    paint('bold', `edge-agent diag: ${r.gatewayId ?? '(no gateway id)'}, version ${r.version}, daemon ${r.daemon}, ${r.checkedAt}`),
  ];
  for (const g of r.groups) {
    const t = tagOf({ status: g.status, skipped: g.checks.length > 0 && g.checks.every((c) => c.skipped) });
    lines.push('', `${paint('bold', g.name)}  ${paint(t.colour, t.text)}  ${paint('dim', `${g.durationMs} ms`)}`);
    for (const c of g.checks) {
      const tag = tagOf(c);
      lines.push(`  ${paint(tag.colour, `[${tag.text.padEnd(4)}]`)} ${c.name}: ${c.message.replace(/\n\s*/g, '\n           ')}`);
      if (c.status !== 'ok' && c.recommendation) lines.push(`         ${paint('dim', '->')} ${c.recommendation}`);
      const groups = c.details?.groups;
      if (Array.isArray(groups)) {
        for (const lg of groups as { component: string; code: string | null; level: string; count: number; firstSeen: string; lastSeen: string; message: string }[]) {
          lines.push(`         ${lg.level.padEnd(5)} ${String(lg.count).padStart(5)}x  ${lg.component}/${lg.code ?? '-'}  ${lg.firstSeen} .. ${lg.lastSeen}  ${lg.message.slice(0, 100)}`);
        }
      }
    }
  }
  const s = r.summary;
  const verdict = r.overall === 'ok' ? paint('green', 'all good') : r.overall === 'warning' ? paint('yellow', 'warnings') : paint('red', 'failures');
  lines.push('', `${verdict}: ${s.ok} ok, ${s.warning} warning${s.warning === 1 ? '' : 's'}, ${s.failure} failure${s.failure === 1 ? '' : 's'}, ${s.skipped} skipped in ${r.durationMs} ms (exit ${r.exitCode})`);
  return lines.join('\n') + '\n';
}
