/**
 * Per-key request rate (`rpm`): a sliding-window log of the requests counted in the last window, per key id.
 * Exact: never more than `limit` in any window, bursts included.
 *
 * Where the log lives decides what the limit means: in the process for one node (adapters/in-process-rates.ts),
 * in the database for several (adapters/postgres/request-rates.ts), so that N nodes behind a balancer still give a
 * key `limit` requests a window, not N × limit. One conformance suite runs against both.
 */
export type RateDecision = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number };

export interface RequestRates {
  /**
   * Counts one request of `keyId` at `now` if fewer than `limit` were counted in the window; else says how long to
   * wait (at most the window). A log shared by several nodes keeps time by one clock for all of them instead of
   * each caller's `now` (PostgreSQL: the database's, as for leases), since the nodes' clocks may disagree.
   */
  take(keyId: string, limit: number, now: number): RateDecision | Promise<RateDecision>;
}

/** The window of `rpm`. */
export const RATE_WINDOW_MS = 60_000;
