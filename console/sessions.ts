/**
 * Pairing codes and sessions of the local web console. Sessions survive an agent restart (an
 * update, a rollback: the open page reconnects by itself): `persist` writes them, and only the
 * SHA-256 of each id is ever kept, in memory or on disk, so the file does not hold a usable cookie.
 * Pairing codes stay in memory only.
 *
 * Invariants:
 * - A session id is 256 random bits, known only to the browser's HttpOnly cookie; the store keeps
 *   its SHA-256, and lookups compare digests in constant time (timingSafeEqual).
 * - A pairing code is single-use and valid for `codeTtlMs`; redeeming it makes one session.
 * - Redeem attempts are rate-limited per client and in total: a wrong code costs the caller the
 *   next `attempts` slots of the window, so guessing 10^9 codes is out of reach.
 * - A session ends after `idleMs` unused or `absoluteMs` after pairing, whichever comes first.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../lib/clock.js';

export type Role = 'viewer' | 'operator';

export interface Session {
  /** SHA-256 (hex) of the session id; the id itself is never kept. */
  hash: string;
  /** A short public name for lists, logs and the audit trail (never the id itself). */
  label: string;
  role: Role;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
}

export interface PairCode {
  code: string;
  role: Role;
  expiresAt: number;
}

export interface SessionLimits {
  codeTtlMs: number;
  idleMs: number;
  absoluteMs: number;
  /** Redeem attempts allowed per client per window, and in total per window. */
  attemptsPerClient: number;
  attemptsTotal: number;
  windowMs: number;
}

export const DEFAULT_LIMITS: SessionLimits = {
  codeTtlMs: 10 * 60_000,
  idleMs: 30 * 60_000,
  absoluteMs: 12 * 3_600_000,
  attemptsPerClient: 5,
  attemptsTotal: 20,
  windowMs: 60_000,
};

/** A new session: `id` goes into the cookie once and is forgotten. */
export type RedeemResult = { ok: true; session: Session; id: string } | { ok: false; reason: 'wrong-code' | 'rate-limited' };

export interface SessionPersistence {
  load(): Session[];
  save(sessions: readonly Session[]): void;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Constant-time equality of two strings of any length. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

export class SessionStore {
  private readonly sessions: Session[] = [];
  private readonly codes: PairCode[] = [];
  private readonly attempts = new Map<string, number[]>();
  private total: number[] = [];

  private dirty = false;

  constructor(
    private readonly clock: Clock,
    private readonly limits: SessionLimits = DEFAULT_LIMITS,
    private readonly persist?: SessionPersistence,
  ) {
    for (const s of persist?.load() ?? []) if (typeof s.hash === 'string' && /^[0-9a-f]{64}$/.test(s.hash)) this.sessions.push(s);
  }

  /** Writes the sessions when they changed (pairing and revocation write at once; `lastSeenAt` waits for this). */
  flush(): void {
    if (!this.dirty || !this.persist) return;
    this.dirty = false;
    this.persist.save(this.sessions);
  }

  private changed(now: boolean): void {
    this.dirty = true;
    if (now) this.flush();
  }

  /** A new one-time code: 10 characters of an unambiguous alphabet (about 50 bits). */
  pair(role: Role): PairCode {
    this.prune();
    const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
    const bytes = randomBytes(10);
    const code = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
    const p = { code, role, expiresAt: this.clock.now() + this.limits.codeTtlMs };
    this.codes.push(p);
    return p;
  }

  redeem(code: string, client: string): RedeemResult {
    this.prune();
    const now = this.clock.now();
    const mine = (this.attempts.get(client) ?? []).filter((t) => t > now - this.limits.windowMs);
    this.total = this.total.filter((t) => t > now - this.limits.windowMs);
    if (mine.length >= this.limits.attemptsPerClient || this.total.length >= this.limits.attemptsTotal) {
      this.attempts.set(client, mine);
      return { ok: false, reason: 'rate-limited' };
    }
    // Every candidate is compared, so the time taken does not say which one was close.
    let found: PairCode | undefined;
    for (const c of this.codes) if (sameSecret(c.code, code.trim().toUpperCase())) found = c;
    if (!found) {
      mine.push(now);
      this.attempts.set(client, mine);
      this.total.push(now);
      return { ok: false, reason: 'wrong-code' };
    }
    this.codes.splice(this.codes.indexOf(found), 1);
    const id = randomBytes(32).toString('base64url');
    const hash = digest(id).toString('hex');
    const session: Session = {
      hash,
      label: `s-${hash.slice(0, 8)}`,
      role: found.role,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: now,
      lastSeenAt: now,
    };
    this.sessions.push(session);
    this.changed(true);
    return { ok: true, session, id };
  }

  /** The live session with this id, touched; undefined when unknown or expired. */
  get(id: string | undefined, touch = true): Session | undefined {
    if (id === undefined || id === '') return undefined;
    this.prune();
    const d = digest(id);
    let found: Session | undefined;
    for (const s of this.sessions) if (timingSafeEqual(Buffer.from(s.hash, 'hex'), d)) found = s;
    if (found && touch) {
      found.lastSeenAt = this.clock.now();
      this.changed(false);
    }
    return found;
  }

  /** Whether this session is still live (not revoked, not expired). */
  has(session: Session): boolean {
    this.prune();
    return this.sessions.includes(session);
  }

  list(): { label: string; role: Role; createdAt: string; lastSeenAt: string; expiresAt: string }[] {
    this.prune();
    return this.sessions.map((s) => ({
      label: s.label,
      role: s.role,
      createdAt: new Date(s.createdAt).toISOString(),
      lastSeenAt: new Date(s.lastSeenAt).toISOString(),
      expiresAt: new Date(this.expiry(s)).toISOString(),
    }));
  }

  /** Ends the session with this label (`all`: every session); returns how many ended. */
  revoke(label: string): number {
    const before = this.sessions.length;
    for (let i = this.sessions.length - 1; i >= 0; i--) if (label === 'all' || this.sessions[i]?.label === label) this.sessions.splice(i, 1);
    if (before !== this.sessions.length) this.changed(true);
    return before - this.sessions.length;
  }

  private expiry(s: Session): number {
    return Math.min(s.lastSeenAt + this.limits.idleMs, s.createdAt + this.limits.absoluteMs);
  }

  private prune(): void {
    const now = this.clock.now();
    for (let i = this.sessions.length - 1; i >= 0; i--) {
      if (this.expiry(this.sessions[i]!) > now) continue;
      this.sessions.splice(i, 1);
      this.dirty = true;
    }
    for (let i = this.codes.length - 1; i >= 0; i--) if (this.codes[i]!.expiresAt <= now) this.codes.splice(i, 1);
  }
}
