/**
 * `edge-agent bundle create|verify|inspect` (CONTRACT.md sections 4 and 5): what a release
 * pipeline and an operator use to make and check update bundles. No daemon, no config needed.
 *
 * Exit statuses: 0 success; 1 the bundle (or an input file) is bad: `code: message` on stderr,
 * and with --json `{ok: false, code, message}` on stdout; 64 a usage error.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { summarizePem, type CertSummary } from '../../certs/trust.js';
import { errorCode, errorMessage } from '../../lib/errors.js';
import { readBundleHead } from '../../ota/bundle-input.js';
import { readBundle } from '../../ota/bundle-reader.js';
import { createBundle } from '../../ota/bundle-writer.js';
import { readBaseManifest } from '../../ota/delta-base.js';
import type { Manifest } from '../../ota/manifest.js';

type Values = Record<string, string | boolean | undefined>;

import { BUNDLE_USAGE } from './bundle-usage.js';

export { BUNDLE_OPTIONS, BUNDLE_USAGE } from './bundle-usage.js';

function usage(message: string): number {
  process.stderr.write(`edge-agent bundle: ${message}\n\nUsage: ${BUNDLE_USAGE}\n`);
  return 64;
}

function failure(err: unknown, json: boolean): number {
  const code = errorCode(err) ?? (err as NodeJS.ErrnoException).code ?? 'internal';
  const message = errorMessage(err);
  process.stderr.write(`${code}: ${message}\n`);
  if (json) process.stdout.write(JSON.stringify({ ok: false, code, message }) + '\n');
  return 1;
}

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

async function create(v: Values): Promise<number> {
  const [inDir, version, key, cert, out] = [str(v.in), str(v.version), str(v.key), str(v.cert), str(v.output)];
  const compatible = ((v.compatible as unknown as string[] | undefined) ?? []).flatMap((c) => c.split(',')).map((c) => c.trim()).filter((c) => c !== '');
  if (!inDir || !version || !key || !cert || !out || compatible.length === 0) return usage('create needs --in, --version, --compatible, --key, --cert and -o');
  const sv = str(v['security-version']);
  if (sv !== undefined && !/^(0|[1-9][0-9]{0,8})$/.test(sv)) return usage('--security-version must be a non-negative integer');
  const old = str(v['delta-from']);
  try {
    const deltaFrom = old === undefined ? undefined : await readBaseManifest(old);
    const { manifest, bytes } = await createBundle({
      inDir,
      version,
      compatible,
      keyPem: readFileSync(key, 'utf8'),
      certPem: readFileSync(cert, 'utf8'),
      out,
      gzip: v.gzip === true,
      ...(str(v.requires) === undefined ? {} : { requires: str(v.requires) }),
      ...(sv === undefined ? {} : { securityVersion: Number(sv) }),
      ...(deltaFrom === undefined ? {} : { deltaFrom }),
    });
    const base = manifest.files.filter((f) => f.type === 'file' && f.source === 'base').length;
    const delta = manifest.delta ? ` (delta from ${manifest.delta.baseVersion}: ${base} files taken from the base)` : '';
    process.stdout.write(`wrote ${out}: ${manifest.product} ${manifest.version}, ${manifest.files.length} entries, ${bytes} bytes${delta}\n`);
    return 0;
  } catch (err) {
    return failure(err, false);
  }
}

function chainLine(chain: CertSummary[]): string {
  return chain.map((c) => `${c.subject} (${c.keyType}, until ${c.notAfter})`).join('\n              <- ');
}

function manifestLines(m: Manifest): string {
  return [
    `  product     ${m.product}`,
    `  version     ${m.version}`,
    `  compatible  ${m.compatible.join(', ')}`,
    `  requires    ${m.requires ?? '(any)'}`,
    `  security    ${m.securityVersion}`,
    `  created     ${m.created}`,
  ].join('\n');
}

async function verify(file: string, v: Values): Promise<number> {
  const trust = str(v.trust);
  if (!trust) return usage('verify needs --trust PEM (the trust anchors)');
  const json = v.json === true;
  try {
    const baseDir = str(v.base);
    const r = await readBundle(createReadStream(file), { trustPem: readFileSync(trust, 'utf8'), ...(baseDir === undefined ? {} : { baseDir }) });
    const d = r.manifest.delta;
    const fromBase = r.manifest.files.filter((f) => f.type === 'file' && f.source === 'base').length;
    const deltaLine = d ? `  delta       from ${d.baseVersion} (manifest sha256 ${d.baseManifestSha256}): ${fromBase} files from the base, ${baseDir === undefined ? 'NOT checked (give --base DIR)' : `checked against ${baseDir}`}\n` : '';
    if (json) {
      process.stdout.write(JSON.stringify({ ok: true, manifest: r.manifest, signer: r.signer.chain, files: r.files, bytesOut: r.bytesOut, bytesIn: r.bytesIn, baseFiles: r.baseFiles }, null, 2) + '\n');
    } else {
      process.stdout.write(
        `OK: ${file} is a valid bundle (signature chain, archive safety, ${r.files} file hashes)\n${manifestLines(r.manifest)}\n` +
          `  payload     ${r.manifest.files.length} entries, ${r.files} files, ${r.bytesOut} bytes\n${deltaLine}  signed by   ${chainLine(r.signer.chain)}\n`,
      );
    }
    return 0;
  } catch (err) {
    return failure(err, json);
  }
}

async function inspect(file: string, v: Values): Promise<number> {
  const json = v.json === true;
  let head;
  try {
    head = await readBundleHead(createReadStream(file));
  } catch (err) {
    return failure(err, json);
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(head.manifestBytes.toString('utf8')) as unknown;
  } catch {
    manifest = head.manifestBytes.toString('utf8');
  }
  let signer: CertSummary[] | { error: string };
  try {
    signer = summarizePem(head.signerPem.toString('latin1'));
  } catch (err) {
    signer = { error: `${errorCode(err) ?? 'error'}: ${errorMessage(err)}` };
  }
  const note = 'NOT VERIFIED: nothing in this bundle was checked (signature, chain, hashes, archive safety); use `edge-agent bundle verify FILE --trust PEM`';
  if (json) {
    process.stdout.write(JSON.stringify({ verified: false, note, manifest, signatureBytes: head.signature.length, signer }, null, 2) + '\n');
    return 0;
  }
  const signerText = Array.isArray(signer)
    ? signer.map((c, i) => `  [${i}] ${c.subject}\n      issuer ${c.issuer}\n      ${c.keyType}, ${c.notBefore} .. ${c.notAfter}\n      sha256 ${c.fingerprint256}`).join('\n')
    : `  ${signer.error}`;
  process.stdout.write(
    `${note}\n\nmanifest.json:\n${typeof manifest === 'string' ? manifest : JSON.stringify(manifest, null, 2)}\n\n` +
      `manifest.sig: ${head.signature.length} bytes\n\nsigner.pem:\n${signerText}\n`,
  );
  return 0;
}

const ALLOWED: Record<string, string[]> = {
  create: ['in', 'version', 'compatible', 'key', 'cert', 'output', 'requires', 'security-version', 'gzip', 'delta-from'],
  verify: ['trust', 'json', 'base'],
  inspect: ['json'],
};

export async function bundleCommand(v: Values, positionals: string[]): Promise<number> {
  const [sub, ...args] = positionals;
  const allowed = sub !== undefined && Object.hasOwn(ALLOWED, sub) ? ALLOWED[sub] : undefined;
  const extra = allowed && Object.keys(v).filter((k) => v[k] !== undefined && k !== 'help' && !allowed.includes(k));
  if (extra && extra.length > 0) return usage(`${sub} does not take ${extra.map((k) => `--${k}`).join(', ')}`);
  switch (sub) {
    case 'create':
      return args.length === 0 ? create(v) : usage(`create takes no positional arguments (got ${args.join(' ')})`);
    case 'verify':
    case 'inspect': {
      if (args.length !== 1 || args[0] === undefined) return usage(`${sub} needs exactly one FILE`);
      return sub === 'verify' ? verify(args[0], v) : inspect(args[0], v);
    }
    case undefined:
      return usage('which subcommand: create, verify or inspect?');
    default:
      return usage(`unknown subcommand "${sub}"`);
  }
}
