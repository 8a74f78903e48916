/**
 * Report by exception for one group, and the quality of every value. Pure state, no I/O.
 *
 * Rules (docs/plc-bridge.md "Data"):
 * - a tag read good this cycle is `good` with its own read time;
 * - a tag whose read failed is `stale` (the last good value and its own ts) while the last good
 *   read is at most staleAfterMs old, then `bad` with v null; a tag whose read answered with a
 *   value that cannot be carried is `bad` at once ('decode-error': the PLC answered, so the old
 *   value is not "late", it is wrong);
 * - a tag never read good and never reported is not reported while its reads fail without an
 *   answer from the PLC (not connected yet, timeout, refused, reset, skipped: NOT_READ): a
 *   session's first report comes from a real read, so a restart shows no false `bad`. Once the
 *   PLC answered (a Modbus exception, a decode error, a malformed answer) it is `bad` at once;
 * - a tag is reported when it is first seen, when its quality or reason changes, when a good
 *   value moved by more than its deadband from the last reported value (any change for deadband
 *   0, strings and bools), or when fullEveryMs has passed since it was last reported.
 * A failed read never makes a value up: a value sent is always one that was read.
 *
 * Layout: the state lives for the process's life, one entry per tag (20 devices x 1,000 tags in
 * issue #4's RSS budget), so it is struct-of-arrays indexed by the tag's position in the
 * configured tag list: numbers and times in typed arrays, values and reasons in plain arrays,
 * no object per tag. A tag's current value is not stored: it follows from its quality (good and
 * stale carry the last good value, bad carries null). TagValue objects exist only in what
 * update() and snapshot() return. ISO strings are made only for values put in a message.
 */
import type { ResolvedTag } from './config.js';
import type { Value } from './codec.js';

export type Quality = 'good' | 'stale' | 'bad';

export interface TagValue {
  v: Value | null;
  q: Quality;
  ts: string;
  reason?: string;
}

/**
 * One cycle's read outcomes. Per-tag arrays are indexed by the tag's position in the group's
 * configured tag list (GroupReporter.tags; the poller plans from the same list). Every tag of a
 * read block shares the block's answer time, so times are per block, not per tag: no object
 * and no number box per tag and cycle.
 */
export interface CycleInput {
  now: number;
  /** The value of each tag read good this cycle; undefined when it was not. */
  values: readonly (Value | undefined)[];
  /** The reason code of each tag whose read failed; a tag in neither array counts as MISSING_REASON. */
  failed: readonly (string | undefined)[];
  /** The read block of each tag (an index into readAt). */
  blockOf: ArrayLike<number>;
  /** When each block's read answered (ms since epoch). */
  readAt: ArrayLike<number>;
}

/** A tag the poller put in neither array counts as failed with this reason. */
export const MISSING_REASON = 'invalid-response';
/** Reasons that make a value bad at once, without a stale period. */
const BAD_AT_ONCE = new Set(['decode-error']);
/**
 * Reasons a read fails with before the PLC ever answered it: a tag never read good and never
 * reported stays unreported with these (the value was never read, it is not known to be bad).
 */
const NOT_READ = new Set(['not-connected', 'timeout', 'connection-refused', 'connection-reset', 'device-skipped']);

/** Quality as a byte; NONE: not evaluated (current) or never reported (reported). */
const NONE = 0;
const GOOD = 1;
const STALE = 2;
const BAD = 3;
const QUALITY: readonly (Quality | undefined)[] = [undefined, 'good', 'stale', 'bad'];

export class GroupReporter {
  /** Positions of the tags that are read (write-only tags are never read: nothing to report). */
  private readonly readable: Uint32Array;
  /** The last good read: value and its read time (NaN: never read good). */
  private readonly goodV: (Value | undefined)[];
  private readonly goodTs: Float64Array;
  /** The current view: quality, reason, and the value's time (the read time, or the cycle's for bad). */
  private readonly curQ: Uint8Array;
  private readonly curReason: (string | undefined)[];
  private readonly curTs: Float64Array;
  /** What was last reported and when (the deadband and fullEveryMs compare against it). */
  private readonly repQ: Uint8Array;
  private readonly repV: (Value | null)[];
  private readonly repReason: (string | undefined)[];
  private readonly repAt: Float64Array;
  private isoMs = Number.NaN;
  private isoText = '';

  constructor(
    /** The group's configured tags: the index space of CycleInput's arrays. */
    readonly tags: readonly ResolvedTag[],
    private readonly opts: { staleAfterMs: number; fullEveryMs: number },
  ) {
    const n = tags.length;
    this.readable = Uint32Array.from(tags.flatMap((t, i) => (t.access === 'write' ? [] : [i])));
    this.goodV = new Array<Value | undefined>(n).fill(undefined);
    this.goodTs = new Float64Array(n).fill(Number.NaN);
    this.curQ = new Uint8Array(n);
    this.curReason = new Array<string | undefined>(n).fill(undefined);
    this.curTs = new Float64Array(n);
    this.repQ = new Uint8Array(n);
    this.repV = new Array<Value | null>(n).fill(null);
    this.repReason = new Array<string | undefined>(n).fill(undefined);
    this.repAt = new Float64Array(n);
  }

  /** Values to publish for this cycle, or undefined when nothing changed. The first call reports every tag. */
  update(input: CycleInput): Record<string, TagValue> | undefined {
    const out: Record<string, TagValue> = {};
    let any = false;
    for (const i of this.readable) {
      this.evaluate(i, input);
      if (this.curQ[i] === NONE) continue;
      if (this.shouldReport(i, input.now)) {
        this.repQ[i] = this.curQ[i] ?? NONE;
        this.repV[i] = this.currentV(i);
        this.repReason[i] = this.curReason[i];
        this.repAt[i] = input.now;
        out[this.name(i)] = this.current(i);
        any = true;
      }
    }
    return any ? out : undefined;
  }

  /** Current view of every tag evaluated so far (a tag never read and never reported is not in it). */
  snapshot(): Record<string, TagValue> {
    const out: Record<string, TagValue> = {};
    for (const i of this.readable) if (this.curQ[i] !== NONE) out[this.name(i)] = this.current(i);
    return out;
  }

  private evaluate(i: number, input: CycleInput): void {
    const v = input.values[i];
    if (v !== undefined) {
      const ts = input.readAt[input.blockOf[i] ?? 0] ?? input.now;
      this.goodV[i] = v;
      this.goodTs[i] = ts;
      this.setCurrent(i, GOOD, undefined, ts);
      return;
    }
    const reason = input.failed[i] ?? MISSING_REASON;
    const lastTs = this.goodTs[i] ?? Number.NaN;
    if (Number.isNaN(lastTs) && this.repQ[i] === NONE && NOT_READ.has(reason)) return this.setCurrent(i, NONE, undefined, input.now);
    // NaN (never read good) fails the comparison, so such a tag is bad at once.
    if (!BAD_AT_ONCE.has(reason) && input.now - lastTs <= this.opts.staleAfterMs) this.setCurrent(i, STALE, reason, lastTs);
    else this.setCurrent(i, BAD, reason, input.now);
  }

  private setCurrent(i: number, q: number, reason: string | undefined, ts: number): void {
    this.curQ[i] = q;
    this.curReason[i] = reason;
    this.curTs[i] = ts;
  }

  /** Good and stale carry the last good value; bad carries none. */
  private currentV(i: number): Value | null {
    return this.curQ[i] === BAD ? null : (this.goodV[i] ?? null);
  }

  /** A fresh TagValue: the caller may keep or change it. */
  private current(i: number): TagValue {
    const q = QUALITY[this.curQ[i] ?? NONE] ?? 'bad';
    const ts = this.iso(this.curTs[i] ?? 0);
    const reason = this.curReason[i];
    return reason === undefined ? { v: this.currentV(i), q, ts } : { v: this.currentV(i), q, ts, reason };
  }

  private name(i: number): string {
    return this.tags[i]?.name ?? '';
  }

  /**
   * Every tag of a block shares its read time, so consecutive calls mostly ask for the same
   * millisecond: one toISOString per distinct time, not per tag (bench/plc-bench.ts profile: 15 %
   * of the bridge's CPU went to it).
   */
  private iso(ms: number): string {
    if (ms !== this.isoMs) {
      this.isoMs = ms;
      this.isoText = new Date(ms).toISOString();
    }
    return this.isoText;
  }

  private shouldReport(i: number, now: number): boolean {
    const prevQ = this.repQ[i];
    if (prevQ === NONE) return true;
    const q = this.curQ[i];
    if (prevQ !== q || this.repReason[i] !== this.curReason[i]) return true;
    if (now - (this.repAt[i] ?? 0) >= this.opts.fullEveryMs) return true;
    if (q === GOOD) return moved(this.repV[i] ?? null, this.currentV(i), this.tags[i]?.deadband ?? 0);
    return false;
  }
}

function moved(prev: Value | null, cur: Value | null, deadband: number): boolean {
  if (typeof prev === 'number' && typeof cur === 'number') return deadband > 0 ? Math.abs(cur - prev) > deadband : cur !== prev;
  return prev !== cur;
}
