/** The running release's version and build time, read from the package.json next to dist/. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  version: string;
  builtAt: string | undefined;
  root: string;
}

/** Reads the files on each call (never at import); the composition root calls it once and passes the result. */
export function buildInfo(): BuildInfo {
  // dist/lib/version.js -> package root is two levels up.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  let builtAt: string | undefined;
  try {
    builtAt = (JSON.parse(readFileSync(join(root, 'dist', 'build-info.json'), 'utf8')) as { builtAt?: string }).builtAt;
  } catch {
    builtAt = undefined;
  }
  return { version: pkg.version, builtAt, root };
}
