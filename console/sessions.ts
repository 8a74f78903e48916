/**
 * Pairing codes and sessions of the local web console, in memory (an agent restart ends every
 * session: pairing again is one command, and nothing secret is ever written to disk).
 *
 * Invariants:
 * - A session id is 256 random bits, lives only here and in an HttpOnly cookie; lookups compare
 *   in constant time (timingSafeEqual over the SHA-256 of both, so lengths never leak either).
 * - A pairing code is single-use and valid for `codeTtlMs`; redeeming it makes one session.
 * - Redeem attempts are rate-limited per client and in total: a wrong code costs the caller the
 *   next `attempts` slots of the window, so guessing 10^9 codes is out of reach.
 * - A session ends after `idleMs` unused or `absoluteMs` after pairing, whichever comes first.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../lib/clock.js';

export type Role = 'viewer' | 'operator';

export interface Session {
  id: string;
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

export type RedeemResult = { ok: true; session: Session } | { ok: false; reason: 'wrong-code' | 'rate-limited' };

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

  constructor(
    private readonly clock: Clock,
    private readonly limits: SessionLimits = DEFAULT_LIMITS,
  ) {}

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
    const session: Session = {
      id,
      label: `s-${digest(id).toString('hex').slice(0, 8)}`,
      role: found.role,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: now,
      lastSeenAt: now,
    };
    this.sessions.push(session);
    return { ok: true, session };
  }

  /** The live session with this id, touched; undefined when unknown or expired. */
  get(id: string | undefined, touch = true): Session | undefined {
    if (id === undefined || id === '') return undefined;
    this.prune();
    let found: Session | undefined;
    for (const s of this.sessions) if (sameSecret(s.id, id)) found = s;
    if (found && touch) found.lastSeenAt = this.clock.now();
    return found;
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
    return before - this.sessions.length;
  }

  private expiry(s: Session): number {
    return Math.min(s.lastSeenAt + this.limits.idleMs, s.createdAt + this.limits.absoluteMs);
  }

  private prune(): void {
    const now = this.clock.now();
    for (let i = this.sessions.length - 1; i >= 0; i--) if (this.expiry(this.sessions[i]!) <= now) this.sessions.splice(i, 1);
    for (let i = this.codes.length - 1; i >= 0; i--) if (this.codes[i]!.expiresAt <= now) this.codes.splice(i, 1);
  }
}
