/**
 * The OTA domain's error codes: what `bundle verify` exits with (printed), what the WMS sees in
 * `reason.code` of a failed or rejected `update`, and what docs/errors.md explains. One code per
 * distinct failure, so an operator can tell a tampered archive from an expired certificate.
 */
import { EdgeError, registerCodes } from '../lib/errors.js';
import type { TrustCode } from '../certs/trust.js';

export const OTA_CODES = registerCodes('ota', [
  // the archive
  'bundle-malformed', // not a tar (or gzip) stream we can read; corrupt header; truncated
  'bundle-order', // manifest.json, manifest.sig, signer.pem, payload/: not in that order
  'unsafe-path', // absolute, `..`, outside payload/, not normalised
  'unsafe-member-type', // hard link, device, FIFO, or any type other than file, directory, symlink
  'unlisted-member', // a payload member the manifest does not list
  'duplicate-member', // the same path twice
  'missing-file', // a file the manifest lists is not in the archive
  'size-mismatch', // a member's size differs from the manifest (also stops tar and gzip bombs)
  'hash-mismatch', // a member's sha256 differs from the manifest
  'symlink-invalid', // a symlink not listed as one, with another target, or pointing outside the slot
  'too-large', // the bundle or the unpacked payload is over a configured or manifest limit
  // the manifest and its signature
  'manifest-invalid', // not JSON, or not format 1 with every required field
  // (signature and chain failures carry the codes of certs/trust.ts: TRUST_CODES)
  // the policy
  'incompatible', // `compatible` does not name this device's class
  'requires-unmet', // the running version does not satisfy `requires`
  'downgrade', // version not greater than the installed one (and no allowDowngrade)
  'security-version', // securityVersion lower than the highest one committed
  'product-mismatch', // `product` is not edge-agent
  // the download
  'download-failed', // the connection failed more often than the retries allow, or the bundle changed on the server
  'download-http-status', // the server answered 4xx (not found, forbidden, ...)
  'download-too-large', // the bundle is larger than ota.download.maxBytes
  'download-checksum', // the size or sha256 the command gave does not match what arrived
  'download-stalled', // less than ota.download.minBytesPerSecond arrived over ota.download.stallWindowMs (a trickling server)
  'url-expired', // the server refused the rest of a started download (401/403/404/410): the slot and its checkpoint are kept for a resend with a fresh URL
  // the install
  'disk-full', // the inactive slot's filesystem ran out of space (the slot is given back)
  'install-interrupted', // the agent stopped during this install more often than it is resumed
  // delta bundles (CONTRACT.md section 4)
  'delta-base-mismatch', // a delta built on another release than the running one (or the running one has no signed manifest)
  'delta-base-modified', // a file taken from the running release no longer matches its hash (modified on disk)
  // after activation
  'rolled-back', // the new release failed its health gate or crashed on trial; the old one runs again
] as const);
export type OtaCode = (typeof OTA_CODES)[number];

export class OtaError extends EdgeError<OtaCode | TrustCode> {}
