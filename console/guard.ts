/**
 * The console's request checks, pure: which Host names are ours (DNS rebinding), which Origin is
 * ours (cross-site requests), the cookie, and the security headers every answer carries.
 *
 * Order of checks for every request (server.ts): Host (421) -> session (401) -> for a
 * state-changing request, Origin exactly ours and the session's CSRF token (403) -> role (403).
 */
export const COOKIE = 'edge_console';

/** The names the Host header may carry, lower case, without port. */
export function allowedHosts(listenHost: string, extra: readonly string[]): Set<string> {
  return new Set(['127.0.0.1', 'localhost', '[::1]', listenHost.toLowerCase(), ...extra.map((h) => h.toLowerCase())]);
}

/** `Host: name:port` -> name (brackets kept for IPv6). */
export function hostName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(host.trim().toLowerCase());
  return m?.[1];
}

export function hostAllowed(host: string | undefined, allowed: ReadonlySet<string>): boolean {
  const name = hostName(host);
  return name !== undefined && allowed.has(name);
}

/**
 * The only Origin a state-changing request may carry: the scheme and the Host it was sent to
 * (the Host being one of ours, checked first). An absent Origin is refused too: browsers send it
 * on every POST.
 */
export function originAllowed(origin: string | undefined, host: string | undefined, tls: boolean): boolean {
  if (!origin || !host) return false;
  return origin === `${tls ? 'https' : 'http'}://${host}`;
}

/**
 * The stream is a GET: a same-origin EventSource sends no Origin, a cross-origin one does. Fetch
 * metadata, when the browser sends it, must say same-origin too.
 */
export function streamOriginAllowed(origin: string | undefined, site: string | undefined, host: string | undefined, tls: boolean): boolean {
  if (origin !== undefined && !originAllowed(origin, host, tls)) return false;
  return site === undefined || site === 'same-origin' || site === 'none';
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string, tls: boolean, maxAgeSec: number): string {
  return `${COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${tls ? '; Secure' : ''}`;
}

export function clearCookie(tls: boolean): string {
  return `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${tls ? '; Secure' : ''}`;
}

/** No inline script, no framing, nothing from elsewhere. */
export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};
