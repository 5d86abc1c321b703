/** Rows one statement of a purge deletes at most: a few milliseconds of the write lock and of the event loop. */
export const PURGE_BATCH = 1000;

/**
 * Runs `deleteUpTo(limit)` until it deletes fewer than `limit` rows, yielding to the event loop between
 * statements. Both stores purge this way:
 * - SQLite runs a purge on the main thread's connection: one unbounded DELETE of an hour of Idempotency-Keys (a
 *   million rows at ~280 keyed requests a second) held the event loop and the write lock for seconds, so every
 *   request and every commit of the writer thread waited behind it.
 * - PostgreSQL bounds every statement (database.ts `statementTimeoutMs`): one DELETE of a large backlog would fail
 *   on the timeout every hour and never catch up, and it held its row locks and a pool connection meanwhile.
 */
export async function deleteInBatches(deleteUpTo: (limit: number) => number | Promise<number>, batch = PURGE_BATCH): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await deleteUpTo(batch);
    total += deleted;
    if (deleted < batch) return total;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
