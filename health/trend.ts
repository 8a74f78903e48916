/**
 * Least-squares line through (t, v) points, for the degradation alerts: a steady trend towards a
 * hard threshold is worth a warning before the threshold is crossed. Pure.
 */

export interface LineFit {
  /** Value units per millisecond. */
  slope: number;
  /** The fitted value at `at`. */
  valueAt(at: number): number;
  /** Coefficient of determination, 0..1: how much of the variation the line explains. 0 for a flat series. */
  r2: number;
  n: number;
  spanMs: number;
}

export function fitLine(points: readonly (readonly [number, number])[]): LineFit | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  // Times relative to the first point: epoch milliseconds squared lose precision in a double.
  const t0 = points[0]![0];
  let st = 0;
  let sv = 0;
  for (const [t, v] of points) {
    st += t - t0;
    sv += v;
  }
  const mt = st / n;
  const mv = sv / n;
  let stt = 0;
  let stv = 0;
  let svv = 0;
  for (const [t, v] of points) {
    const dt = t - t0 - mt;
    const dv = v - mv;
    stt += dt * dt;
    stv += dt * dv;
    svv += dv * dv;
  }
  if (stt === 0) return undefined;
  const slope = stv / stt;
  const r2 = svv === 0 ? 0 : (stv * stv) / (stt * svv);
  return { slope, r2, n, spanMs: points[n - 1]![0] - t0, valueAt: (at) => mv + slope * (at - t0 - mt) };
}

/**
 * When the fitted line reaches `threshold` going in `dir` (+1 upwards, -1 downwards), as ms from
 * `now`; 0 when it is already there; undefined when the line goes the other way or is flat.
 */
export function timeToCross(fit: LineFit, threshold: number, dir: 1 | -1, now: number): number | undefined {
  const gap = dir * (threshold - fit.valueAt(now));
  if (gap <= 0) return 0;
  const rate = dir * fit.slope;
  return rate > 0 ? gap / rate : undefined;
}
