/**
 * Secrets out of what leaves the device (the support bundle, the diagnostics report). Two
 * layers, because one missed path must not leak a password:
 *  1. by key: values under a secret-looking key are replaced, at any depth; a value that is a
 *     PEM private key is replaced whatever its key; a URL's user info is replaced;
 *  2. by value: every secret string found in the configuration documents is then scrubbed from
 *     every text that goes into the bundle (logs, incidents' last lines, JSON, YAML).
 * Key file paths (mqtt.tls.key) are kept: a path is not a secret, the file's contents are, and
 * key files are never read into the bundle. Pure. Shared by the support bundle and diagnostics
 * (health/), incidents' log lines (recovery/) and the output of procedure steps (maintenance/).
 */
import { redactUrl } from './log.js';

export const REDACTED = '[redacted]';

/** `password=x`, `"token": "x"`, `Authorization: Bearer x`, ... in free text: group 1 the key, group 2 the value to mask. */
export const SECRET_ASSIGNMENT = /("?(?:password|passphrase|secret|token|api[_-]?key|private[_-]?key|authorization)"?\s*[:=]\s*)("[^"]*"|(?:(?:Bearer|Basic)\s+)?[^\s,;"]+)/gi;

/** Keys whose values are secrets: compared case-insensitively without - and _, by suffix (API_TOKEN, clientSecret). */
const SECRET_SUFFIXES = ['password', 'passphrase', 'passwd', 'token', 'apikey', 'secret', 'authorization', 'privatekey', 'credentials', 'cookie'];

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[-_]/g, '');
  return SECRET_SUFFIXES.some((s) => k.endsWith(s));
}

const PEM_PRIVATE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

function redactString(s: string): string {
  if (PEM_PRIVATE.test(s)) return REDACTED;
  return /^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i.test(s) ? redactUrl(s) : s;
}

/** A deep copy of `value` with secrets replaced (layer 1). */
export function redactDoc(value: unknown): unknown {
  if (typeof value === 'string') return redactString(value);
  if (Array.isArray(value)) return value.map(redactDoc);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isSecretKey(k) && v !== null && v !== undefined ? REDACTED : redactDoc(v)]));
  }
  return value;
}

/** Every secret string in `value` (layer 2's list): values under secret keys, URL passwords. */
export function secretValues(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:([^@/\s]+)@/i.exec(value);
    if (m?.[1]) out.add(m[1]);
  } else if (Array.isArray(value)) {
    for (const v of value) secretValues(v, out);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (isSecretKey(k) && (typeof v === 'string' || typeof v === 'number')) out.add(String(v));
      else secretValues(v, out);
    }
  }
  return out;
}

/**
 * `text` with every secret replaced (layer 2). Secrets shorter than 4 characters are replaced
 * too: a short password is still a password, even if its text also occurs by chance elsewhere.
 */
export function scrub(text: string, secrets: Iterable<string>): string {
  let out = text;
  // Longest first, so a secret containing another is replaced whole.
  for (const s of [...secrets].filter((x) => x.length > 0).sort((a, b) => b.length - a.length)) {
    out = out.split(s).join(REDACTED);
    // The same secret as it appears inside JSON strings and URLs.
    for (const form of [JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]) if (form !== s) out = out.split(form).join(REDACTED);
  }
  return out;
}
