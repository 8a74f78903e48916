/**
 * The update bundles the demo's WMS sends: a throw-away dev CA and a code-signing certificate
 * (certs/devca.ts), two releases of this very agent with higher versions made into signed
 * bundles (ota/bundle-writer.ts), and a plain HTTP server on port 0 that hands them out.
 *
 *  - `good`: the next minor version, unchanged code: it passes its health gate and is committed.
 *  - `unhealthy`: the one after, whose WMS link never reports itself connected, so its health
 *    gate fails at ota.healthGate.timeoutMs and the release rolls itself back.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import semver from 'semver';
import { createCa, issueCert } from '../certs/devca.js';
import { createBundle } from '../ota/bundle-writer.js';
import { makeRelease, patchFile } from './install.js';

export interface DemoBundles {
  /** The CA certificate: what the device must trust. */
  trustPem: string;
  good: { version: string; file: string };
  unhealthy: { version: string; file: string };
}

function next(version: string): string {
  const v = semver.inc(version, 'minor');
  if (v === null) throw new Error(`${version} is not a semantic version`);
  return v;
}

/** Makes both bundles under `dir` for a device running `current`; `compatible` is its device class. */
export async function makeBundles(o: { repo: string; dir: string; current: string; compatible: string }): Promise<DemoBundles> {
  mkdirSync(o.dir, { recursive: true });
  const ca = createCa({ commonName: 'edge-agent demo release CA' });
  const signer = issueCert(ca, { commonName: 'edge-agent demo release signer', kind: 'codeSigning' });
  const build = async (version: string, patch?: (releaseDir: string) => void): Promise<{ version: string; file: string }> => {
    const rel = join(o.dir, `release-${version}`);
    makeRelease(o.repo, rel, version);
    patch?.(rel);
    const file = `edge-agent-${version}.tar.gz`;
    await createBundle({ inDir: rel, version, compatible: [o.compatible], keyPem: signer.keyPem, certPem: signer.certPem, out: join(o.dir, file), gzip: true });
    return { version, file };
  };
  const good = await build(next(o.current));
  const unhealthy = await build(next(good.version), (rel) =>
    patchFile(join(rel, 'dist', 'agent', 'wms-link.js'), /isConnected\(\) \{\s*return this\.connected;/, 'isConnected() {\n        return false;'),
  );
  return { trustPem: ca.certPem, good, unhealthy };
}

export interface BundleServer {
  url(file: string): string;
  close(): Promise<void>;
}

/** A local download takes milliseconds; paced like this, the WMS sees its percentages go by. */
const PIECES = 20;
const PIECE_MS = 80;

/**
 * Serves the files directly in `dir` over HTTP on 127.0.0.1 and a port the OS chooses, each in
 * PIECES pieces PIECE_MS apart (about 1.6 s a bundle), so the agent's progress has time to show.
 */
export async function serveBundles(dir: string): Promise<BundleServer> {
  const server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    let data: Buffer;
    try {
      if (name.includes('/') || name.startsWith('.')) throw new Error('not a bundle name');
      data = readFileSync(join(dir, name));
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
    const piece = Math.ceil(data.length / PIECES);
    let at = 0;
    const timer = setInterval(() => {
      res.write(data.subarray(at, at + piece));
      at += piece;
      if (at >= data.length) {
        clearInterval(timer);
        res.end();
      }
    }, PIECE_MS);
    res.once('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (file) => `http://127.0.0.1:${port}/${file}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
