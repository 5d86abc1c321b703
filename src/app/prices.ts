import { parsePriceTable, type PriceTable } from '../domain/pricing';
import type { Clock } from '../ports/clock';
import type { Store } from '../ports/store';

/**
 * The price table in force. Three sources, newest wins:
 *   1. a table the operator saved (PUT /admin/v1/prices, `aigc-relay prices set`): kept in the database, so it
 *      survives restarts and every node sharing the database uses it;
 *   2. the JSON file named by AIGC_RELAY_PRICES_FILE, read at start;
 *   3. the built-in DEFAULT_PRICES.
 * DELETE /admin/v1/prices (`aigc-relay prices reset`) goes back to 2/3. Submits read the table from memory while it
 * is at most `refreshMs` old; the first submit after that waits for a re-read (shared by every submit meanwhile), so a
 * change made on another node (or by the CLI) is charged here within `refreshMs`, however long this node was idle.
 * (Re-reading in the background and pricing from the old table meanwhile, as before, priced the first submits after
 * an idle spell at a table replaced any time before.) A change made through this node applies at once.
 */
export type PriceSource = 'database' | 'file' | 'default';

export interface PriceBookState {
  readonly prices: PriceTable;
  readonly source: PriceSource;
  /** When the operator's table was saved (source `database`). */
  readonly updatedAt?: number;
}

export interface PriceBook {
  /** The table in force: from memory, or re-read first when the one in memory is older than `refreshMs`. */
  current(): Promise<PriceTable>;
  state(): PriceBookState;
  /** Validates and saves an operator table; applies it at once on this node. Throws 400 naming the entry. */
  set(raw: unknown): Promise<PriceBookState>;
  /** Back to the file or built-in table. */
  reset(): Promise<PriceBookState>;
  /** Re-reads the database now. */
  refresh(): Promise<PriceBookState>;
}

/** A price read still unanswered after this long is abandoned, and the next submit that needs one starts another. */
const READ_GIVE_UP_MS = 30_000;

/** Resolves when `promise` settles (whichever way) or after `ms`, whichever comes first. */
function untilSettledOr(promise: Promise<unknown>, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([promise.then(() => undefined, () => undefined), late]).finally(() => clearTimeout(timer));
}

export async function createPriceBook(
  store: Store,
  clock: Clock,
  fallback: { readonly prices: PriceTable; readonly source: 'file' | 'default' },
  refreshMs = 2000,
): Promise<PriceBook> {
  let state: PriceBookState = fallback;
  let loadedAt = -Infinity;
  let refreshing: Promise<PriceBookState> | undefined;
  let readStartedAt = -Infinity;
  let reads = 0;

  const load = async (read: number, startedAt: number): Promise<PriceBookState> => {
    const saved = await store.accounts.currentPrices();
    // A read given up on, or superseded by a save's (see refresh, reload), must not put its older table back; its
    // callers get the newer read's answer (a save's caller, the table it saved).
    if (read !== reads) return refreshing ?? state;
    loadedAt = startedAt;
    if (!saved || saved.prices === null) {
      state = fallback;
    } else {
      // Merged over the fallback: a model version catalogued after the table was saved gets the file's price
      // instead of making the saved table unusable.
      state = { prices: parsePriceTable({ ...fallback.prices, ...(saved.prices as object) }, { unknownRows: 'ignore' }), source: 'database', updatedAt: saved.updatedAt };
    }
    return state;
  };
  const refresh = (): Promise<PriceBookState> => {
    // A read that has not answered for READ_GIVE_UP_MS (a database connection lost without a reset can take many
    // minutes to fail) is given up: the next caller starts another instead of joining it.
    if (refreshing && clock.now() - readStartedAt > READ_GIVE_UP_MS) refreshing = undefined;
    if (!refreshing) {
      readStartedAt = clock.now();
      const read = load(++reads, readStartedAt).finally(() => {
        if (refreshing === read) refreshing = undefined;
      });
      refreshing = read;
    }
    return refreshing;
  };
  /** A read that starts after a save: one already in flight may have read the table before it (and is ignored). */
  const reload = (): Promise<PriceBookState> => {
    refreshing = undefined;
    return refresh();
  };

  await refresh();
  return {
    async current() {
      if (clock.now() - loadedAt <= refreshMs) return state.prices;
      // A re-read that fails, or has not answered by the time it is `refreshMs` old, leaves the table in memory in
      // force: a submit is neither refused for it nor held up longer (and a later one reads again).
      const read = refresh();
      await untilSettledOr(read, Math.min(refreshMs, readStartedAt + refreshMs - clock.now()));
      return state.prices;
    },
    state: () => state,
    async set(raw) {
      const table = parsePriceTable(raw);
      await store.accounts.savePrices(table, clock.now());
      return reload();
    },
    async reset() {
      await store.accounts.savePrices(null, clock.now());
      return reload();
    },
    refresh,
  };
}
