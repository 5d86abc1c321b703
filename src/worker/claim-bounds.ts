import type { ModelQuotas } from '../ports/dispatch-queue';
import type { ImageProvider, ModelCapacity } from '../ports/provider';

/** What a lane has under way, as the engine counts it. */
export interface LaneCounts {
  readonly running: number;
  /** Slots set aside by claims in flight. */
  readonly reserved: number;
  /** Runs per quota key (dispatch-queue `quotaKey`), slotted in the provider or not yet. */
  readonly runningByModel: ReadonlyMap<string, number>;
}

export interface ClaimBounds {
  /** Most tasks the next claim may take, all models together. */
  readonly max: number;
  /** Per-model limits; absent when the provider's capacity serves every model alike. */
  readonly quotas?: ModelQuotas;
  /**
   * The quotas overlap (capacity that serves several models counts for each): the claim takes no more than every
   * claimed model can be sure of, and the lane looks again only once its runs have taken their slots, so the next
   * quotas see which capacity they used.
   */
  readonly stepwise: boolean;
}

/**
 * How much the lane's next claim may take. Runs that wait inside the provider for capacity hold no slot, so they do
 * not count against `concurrency`; new submissions of listed models may use only the slots that are not spare
 * (ImageProvider.spareSlots).
 */
export function claimBounds(provider: ImageProvider, lane: LaneCounts, capacity: ReadonlyMap<string, ModelCapacity> | undefined): ClaimBounds {
  const holding = lane.running - (provider.waitingForCapacity?.() ?? 0);
  const free = provider.concurrency - holding - lane.reserved;
  if (!capacity) return { max: free, stepwise: false };
  const forNew = Math.max(0, free - (provider.spareSlots ?? 0));
  const quotas = quotasOf(lane, capacity, forNew);
  // Quotas that add up to more than new submissions may use share capacity: a claim of several tasks could start two
  // models for one slot, which the first run to ask then takes (say channel A, serving X and Y, taken by a Y run while
  // channel B serves Y only), the other run waiting inside the provider, shown running, ahead of queued tasks of
  // higher priority. Such a claim takes at most the smallest quota above 0, k: each model it may claim has at least k
  // free slots it can use, and its other runs, k - 1 at most, can take no more than k - 1 of them, so every run finds
  // one. That is 1 task for the case above, and a whole batch when one channel serves every model. The spare slots go
  // to the claims that come after, with every quota at 0 by then.
  if (sum(quotas.values()) > forNew) return { max: smallestAboveZero(quotas.values()), quotas, stepwise: true };
  return { max: free, quotas, stepwise: false };
}

/**
 * What the lane may claim of each model: no more than is free now, nor than the model's capacity less the runs
 * the lane already has of it, nor than the lane's slots for new submissions (`forNew`). The second bound covers
 * runs just started that have not taken their slot yet (the provider cannot count them); the first, capacity that
 * other models share or that is not this node's.
 */
function quotasOf(lane: LaneCounts, capacity: ReadonlyMap<string, ModelCapacity>, forNew: number): ModelQuotas {
  const quotas = new Map<string, number>();
  for (const [key, { total, free }] of capacity) {
    quotas.set(key, Math.max(0, Math.min(free, total - (lane.runningByModel.get(key) ?? 0), forNew)));
  }
  return quotas;
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

/** Called only with a value above 0 among them (their sum exceeds a number that is at least 0). */
function smallestAboveZero(values: Iterable<number>): number {
  let least = Infinity;
  for (const value of values) if (value > 0 && value < least) least = value;
  return least;
}
