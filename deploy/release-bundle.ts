/**
 * The bundles of a release made by deploy/release.ts: the full one, and a delta when asked, both
 * signed; then the full bundle's signed head is kept in the release directory, which makes the
 * directory a base later deltas can be made against.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBundle } from '../ota/bundle-writer.js';
import { keepBundleHead, readBaseManifest } from '../ota/delta-base.js';

export interface ReleaseBundleOptions {
  dir: string;
  version: string;
  out: string;
  keyPath: string;
  certPath: string;
  compatible: string;
  gzip: boolean;
  deltaFrom?: string | undefined;
}

/** Makes the bundles; returns one line per file written. */
export async function makeReleaseBundles(o: ReleaseBundleOptions): Promise<string[]> {
  const sign = { keyPem: readFileSync(o.keyPath, 'utf8'), certPem: readFileSync(o.certPath, 'utf8'), compatible: o.compatible.split(','), gzip: o.gzip, version: o.version, inDir: o.dir };
  const name = o.dir.split('/').at(-1)!;
  const ext = o.gzip ? '.tar.gz' : '.tar';
  const lines: string[] = [];
  if (o.deltaFrom !== undefined) {
    const deltaFrom = await readBaseManifest(o.deltaFrom);
    const base = (JSON.parse(deltaFrom.toString('utf8')) as { version: string }).version;
    const out = join(o.out, `${name}-from-${base}${ext}`);
    const r = await createBundle({ ...sign, out, deltaFrom });
    lines.push(`delta bundle from ${base}: ${out} (${r.bytes} bytes)`);
  }
  const out = join(o.out, `${name}${ext}`);
  const r = await createBundle({ ...sign, out });
  await keepBundleHead(o.dir, out);
  lines.push(`bundle: ${out} (${r.bytes} bytes)`);
  return lines;
}
