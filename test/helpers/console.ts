/**
 * The web console from a test's side: raw HTTP requests (any Host, Origin or cookie, which
 * fetch() would not let a test set) and pairing through the real CLI.
 */
import { request } from 'node:http';
import { runCli } from './agent.js';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): Record<string, unknown>;
}

export function http(base: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: string; firstBytes?: boolean; localAddress?: string } = {}): Promise<HttpAnswer> {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: o.method ?? 'GET', headers: o.headers ?? {}, ...(o.localAddress ? { localAddress: o.localAddress } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      const done = (): void =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> });
      res.on('data', (c: string) => {
        body += c;
        // A stream never ends: its first event is enough.
        if (o.firstBytes && body.includes('data:') && body.includes('\n\n', body.indexOf('data:'))) {
          done();
          req.destroy();
        }
      });
      res.on('end', done);
    });
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

export interface Pairing {
  url: string;
  code: string;
  role: string;
  expiresAt: string;
}

export async function pairCode(configPath: string, role: 'viewer' | 'operator' = 'viewer'): Promise<Pairing> {
  const r = await runCli(['console', 'pair', '--role', role, '--json', '--config', configPath]);
  if (r.code !== 0) throw new Error(`console pair failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Pairing;
}

/** Redeems a code as a browser would; resolves with the cookie and the CSRF token. */
export async function pairSession(base: string, code: string): Promise<{ cookie: string; csrf: string; label: string; setCookie: string }> {
  const origin = base.replace(/\/$/, '');
  const r = await http(base, '/api/pair', { method: 'POST', headers: { Origin: origin, 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) });
  if (r.status !== 200) throw new Error(`pairing refused: ${r.status} ${r.body}`);
  const setCookie = String((r.headers['set-cookie'] as string[] | undefined)?.[0] ?? '');
  const j = r.json() as { csrf: string; label: string };
  return { cookie: setCookie.split(';')[0] ?? '', csrf: j.csrf, label: j.label, setCookie };
}
