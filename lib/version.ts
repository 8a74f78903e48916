/** The running release's version and build time, read from the package.json next to dist/. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  version: string;
  builtAt: string | undefined;
  root: string;
}

let cached: BuildInfo | undefined;

/** Reads once on first call (never at import). */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  // dist/lib/version.js -> package root is two levels up.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  let builtAt: string | undefined;
  try {
    builtAt = (JSON.parse(readFileSync(join(root, 'dist', 'build-info.json'), 'utf8')) as { builtAt?: string }).builtAt;
  } catch {
    builtAt = undefined;
  }
  cached = { version: pkg.version, builtAt, root };
  return cached;
}
