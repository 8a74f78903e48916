/**
 * How the demo talks to the person watching: one line per event, a colour per source (bold
 * section headers, yellow WMS, cyan agent, blue guard, magenta CLI) when stdout is a terminal
 * and NO_COLOR is unset; and the one check every step makes of a terminal status.
 */
import type { StatusMessage } from './wms-sim.js';

export const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
export const paint = (code: number, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
export const print = (line: string): void => void process.stdout.write(`${line}\n`);
export const say = (line: string): void => print(paint(1, line));
export const wms = (line: string): void => print(paint(33, line));

/** Prints a CLI call's output, one `cli │` line per line. */
export function printCli(out: string): void {
  for (const line of out.split('\n')) if (line) print(paint(35, `cli   │ ${line}`));
}

/** Throws, naming the command and what came instead, unless `st` is `status` (with `code`). */
export function expectStatus(st: StatusMessage, status: string, code?: string): void {
  const got = `${st.status}${st.reason ? ` (${st.reason.code}: ${st.reason.message})` : ''}`;
  if (st.status !== status || (code !== undefined && st.reason?.code !== code)) {
    throw new Error(`command ${st.id}: expected ${status}${code ? ` with ${code}` : ''}, got ${got}`);
  }
}
