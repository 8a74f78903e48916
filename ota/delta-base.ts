/**
 * The base of a delta bundle, as a publisher names it (`bundle create --delta-from OLD`, `npm run
 * release -- --delta-from OLD`): OLD is the base release's bundle, or a release directory or
 * slot that keeps its bundle's signed head in .edge-agent-bundle/. Only the base's manifest.json
 * is needed (its files' hashes); it is read unverified, because the device verifies every file
 * it takes from its own copy of the base.
 */
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/atomic.js';
import { readBundleHead } from './bundle-input.js';
import { SLOT_MANIFEST_DIR } from './manifest.js';

/** The exact bytes of the base release's manifest.json. Throws an Error meant for a person. */
export async function readBaseManifest(old: string): Promise<Buffer> {
  if (!statSync(old).isDirectory()) return (await readBundleHead(createReadStream(old))).manifestBytes;
  const path = join(old, SLOT_MANIFEST_DIR, 'manifest.json');
  if (!existsSync(path)) {
    throw new Error(`${old} has no ${SLOT_MANIFEST_DIR}/manifest.json: a delta is made against a released bundle; give that bundle, or a release directory made by npm run release`);
  }
  return readFileSync(path);
}

/** Keeps `bundle`'s signed head in `dir`/.edge-agent-bundle/, as a slot installed from it does. */
export async function keepBundleHead(dir: string, bundle: string): Promise<void> {
  const head = await readBundleHead(createReadStream(bundle));
  mkdirSync(join(dir, SLOT_MANIFEST_DIR), { recursive: true });
  writeFileAtomic(join(dir, SLOT_MANIFEST_DIR, 'manifest.json'), head.manifestBytes, 0o644);
  writeFileAtomic(join(dir, SLOT_MANIFEST_DIR, 'manifest.sig'), head.signature, 0o644);
  writeFileAtomic(join(dir, SLOT_MANIFEST_DIR, 'signer.pem'), head.signerPem, 0o644);
}
