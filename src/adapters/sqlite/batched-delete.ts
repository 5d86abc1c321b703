/** Rows one statement of a purge deletes at most: a few milliseconds of the write lock and of the event loop. */
export const PURGE_BATCH = 1000;

/**
 * Runs `deleteUpTo(limit)` until it deletes fewer than `limit` rows, yielding to the event loop between
 * statements. A purge runs on the main thread's connection: one unbounded DELETE of an hour of Idempotency-Keys
 * (a million rows at ~280 keyed requests a second) held the event loop and the write lock for seconds, so every
 * request and every commit of the writer thread waited behind it.
 */
export async function deleteInBatches(deleteUpTo: (limit: number) => number, batch = PURGE_BATCH): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = deleteUpTo(batch);
    total += deleted;
    if (deleted < batch) return total;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
