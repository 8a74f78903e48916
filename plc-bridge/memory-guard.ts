/**
 * What the bridge does when its memory budget is reached (docs/plc-bridge.md, Memory budget).
 *
 * A handover to a fresh instance of the same release only helps if a fresh instance starts well
 * below the budget. An instance that reaches the budget within its first FRESH_CHECKS samples
 * after becoming active is, for every practical purpose, a fresh instance over the budget (the
 * budget is set below this release's baseline): its successor would be over it too, and the two
 * would hand over to each other every couple of check intervals forever. Such an instance logs
 * an error with the budget and its baseline, stops watching its memory and keeps running: the
 * data never stops because of the budget.
 */

/** Samples an instance must have been active for before the budget may hand it over. */
export const FRESH_CHECKS = 5;

/** `handover`: a fresh instance will help; `below-baseline`: it would not, run on instead. */
export type MemoryAction = 'handover' | 'below-baseline';

/** Pure: the action for a budget reached `activeForMs` after this instance became active. */
export function memoryAction(activeForMs: number, checkIntervalMs: number): MemoryAction {
  return activeForMs < FRESH_CHECKS * checkIntervalMs ? 'below-baseline' : 'handover';
}
