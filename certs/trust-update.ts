/**
 * Signed trust updates (docs/trust-updates.md): the only way the trust anchors that update
 * bundles chain to may change. A trust update is bundle-like: a manifest (the complete new anchor
 * set and a sequence number), its signature, and the signer's chain, checked exactly like a
 * bundle's (certs/trust.ts verifySignedManifest: a codeSigning signer chaining to a CURRENT
 * anchor). Pure: the caller reads and writes the files.
 *
 * INVARIANTS
 * - The new set is not empty: an anchor can be retired only while another remains.
 * - `sequence` must be above the installed one: an old update (one that still names a retired
 *   anchor) cannot be replayed.
 */
import { z } from 'zod';
import { EdgeError, registerCodes } from '../lib/errors.js';
import { signManifest, summarizePem, verifySignedManifest, type VerifiedSigner } from './trust.js';
import { parsePem } from './x509.js';

export const TRUST_UPDATE_CODES = registerCodes('trust-update', ['trust-update-invalid', 'trust-update-stale', 'trust-last-anchor'] as const);
export type TrustUpdateCode = (typeof TRUST_UPDATE_CODES)[number];
export class TrustUpdateError extends EdgeError<TrustUpdateCode> {}

export const TRUST_UPDATE_FORMAT = 'edge-agent-trust-update/1';

/** The file: base64 of the manifest's exact bytes, base64 of its signature, the signer's PEM chain. */
export const trustUpdateSchema = z
  .object({
    format: z.literal(TRUST_UPDATE_FORMAT),
    manifest: z.string().min(1),
    signature: z.string().min(1),
    signer: z.string().min(1),
  })
  .strict();
export type TrustUpdateFile = z.infer<typeof trustUpdateSchema>;

const manifestSchema = z
  .object({
    kind: z.literal('trust-update'),
    sequence: z.number().int().min(1),
    anchors: z.string(),
    created: z.string().optional(),
  })
  .strict();

export interface CheckedUpdate {
  sequence: number;
  anchorsPem: string;
  signer: VerifiedSigner;
  added: string[];
  removed: string[];
}

const fingerprints = (pem: string): string[] => summarizePem(pem).map((c) => c.fingerprint256.replace(/:/g, '').toLowerCase());

/** Throws TrustError (the bundle's codes) or TrustUpdateError; returns what to install. */
export function checkTrustUpdate(file: unknown, currentPem: string, installedSequence: number, now: Date): CheckedUpdate {
  const f = trustUpdateSchema.safeParse(file);
  if (!f.success) throw new TrustUpdateError('trust-update-invalid', `not a trust update: ${f.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}`);
  const manifest = Buffer.from(f.data.manifest, 'base64');
  const signer = verifySignedManifest({ manifest, signature: Buffer.from(f.data.signature, 'base64'), signerPem: f.data.signer, trustPem: currentPem, now });
  let m: z.infer<typeof manifestSchema>;
  try {
    m = manifestSchema.parse(JSON.parse(manifest.toString('utf8')));
  } catch (err) {
    throw new TrustUpdateError('trust-update-invalid', `the signed manifest is not a trust update manifest: ${(err as Error).message}`);
  }
  if (m.sequence <= installedSequence) throw new TrustUpdateError('trust-update-stale', `sequence ${m.sequence} is not above the installed ${installedSequence}: an old update is not applied again`);
  if (!m.anchors.includes('-----BEGIN CERTIFICATE-----')) throw new TrustUpdateError('trust-last-anchor', 'the update leaves no trust anchor: an anchor can be retired only while another remains');
  let anchors;
  try {
    anchors = parsePem(m.anchors, 'the new trust anchors');
  } catch (err) {
    throw new TrustUpdateError('trust-update-invalid', (err as Error).message);
  }
  if (anchors.length === 0) throw new TrustUpdateError('trust-last-anchor', 'the update leaves no trust anchor: an anchor can be retired only while another remains');
  const notCa = anchors.filter((a) => !a.x509.ca);
  if (notCa.length > 0) throw new TrustUpdateError('trust-update-invalid', `not a CA certificate: ${notCa.map((a) => a.name).join(', ')}`);
  const before = new Set(fingerprints(currentPem));
  const after = fingerprints(m.anchors);
  return { sequence: m.sequence, anchorsPem: m.anchors, signer, added: after.filter((x) => !before.has(x)), removed: [...before].filter((x) => !after.includes(x)) };
}

/** Makes a trust update file (for the signing side: tests, tools). */
export function makeTrustUpdate(o: { anchorsPem: string; sequence: number; keyPem: string; signerPem: string; created?: string }): TrustUpdateFile {
  const manifest = Buffer.from(JSON.stringify({ kind: 'trust-update', sequence: o.sequence, anchors: o.anchorsPem, ...(o.created ? { created: o.created } : {}) }));
  return { format: TRUST_UPDATE_FORMAT, manifest: manifest.toString('base64'), signature: signManifest(manifest, o.keyPem).toString('base64'), signer: o.signerPem };
}
