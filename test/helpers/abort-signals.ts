import { getEventListeners } from 'node:events';
import { expect } from 'vitest';

/**
 * What a long-lived signal holds on behalf of others: its 'abort' listeners, and the signals Node keeps on it for
 * every AbortSignal.any() over it (Node's own bookkeeping, read through its internal symbol; found on a signal of our
 * own first, so a Node that keeps them elsewhere fails here instead of passing unseen). On Node 20 those entries stay
 * for as long as the signal lives, whether or not the derived signals do.
 */
export function heldBy(signal: AbortSignal): { listeners: number; dependants: number } {
  const dependantsKey = (s: AbortSignal) => Object.getOwnPropertySymbols(s).find((sym) => sym.description === 'kDependantSignals');
  const probe = new AbortController().signal;
  AbortSignal.any([probe]);
  const key = dependantsKey(probe);
  expect(key, 'where Node keeps the signals derived from another').toBeDefined();
  const dependants = (signal as unknown as Record<symbol, Set<unknown> | undefined>)[key!];
  return { listeners: getEventListeners(signal, 'abort').length, dependants: dependants?.size ?? 0 };
}
