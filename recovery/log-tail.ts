/**
 * The last lines of a component's log for an incident: bounded (the last TAIL_BYTES of the file,
 * each line cut at LINE_MAX) and with anything that looks like a secret masked, since incidents
 * go to the store, to `edge-agent incidents` and to the WMS.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { SECRET_ASSIGNMENT as SECRET } from '../lib/redact.js';

const TAIL_BYTES = 16 * 1024;
const LINE_MAX = 500;


export function redactLine(line: string): string {
  const masked = line.replace(SECRET, (_m, key: string) => `${key}[redacted]`).replace(/([a-z]+:\/\/)[^@/\s]*@/gi, '$1[redacted]@');
  return masked.length > LINE_MAX ? `${masked.slice(0, LINE_MAX)}...` : masked;
}

export function tailText(text: string, lines: number): string[] {
  const all = text.split('\n').filter((l) => l.trim().length > 0);
  return all.slice(-lines).map(redactLine);
}

/** The last `lines` lines of a file, [] when it does not exist. */
export function tailLines(path: string, lines: number): string[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    let text = buf.toString('utf8');
    // The first line is probably cut in the middle when we did not read from the start.
    if (len < size) text = text.slice(text.indexOf('\n') + 1);
    return tailText(text, lines);
  } finally {
    closeSync(fd);
  }
}
