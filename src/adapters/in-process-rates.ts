import { RATE_WINDOW_MS, type RateDecision, type RequestRates } from '../ports/request-rates';

/**
 * The request-rate log in this process's memory (ports/request-rates.ts): O(limit) per active key and no I/O per
 * request. For the embedded store, where this process is the only one taking submits.
 */
export class InProcessRates implements RequestRates {
  private readonly windows = new Map<string, { times: number[]; head: number }>();
  private calls = 0;

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Counts one request of `keyId` at `now` if fewer than `limit` were counted in the window; else says how long to wait. */
  take(keyId: string, limit: number, now: number): RateDecision {
    if (++this.calls % 1024 === 0) this.sweep(now);
    let w = this.windows.get(keyId);
    if (!w) {
      w = { times: [], head: 0 };
      this.windows.set(keyId, w);
    }
    const since = now - this.windowMs;
    while (w.head < w.times.length && w.times[w.head]! <= since) w.head++;
    // Compact now and then instead of shifting on every request.
    if (w.head > 64 && w.head * 2 > w.times.length) {
      w.times = w.times.slice(w.head);
      w.head = 0;
    }
    if (w.times.length - w.head >= limit) {
      // The oldest requests leave the window first; the client may retry once enough of them have.
      const oldestThatMustLeave = w.times[w.times.length - limit]!;
      return { ok: false, retryAfterMs: Math.max(1, oldestThatMustLeave + this.windowMs - now) };
    }
    w.times.push(now);
    return { ok: true };
  }

  /** Keys tracked right now (for tests and metrics). */
  get trackedKeys(): number {
    return this.windows.size;
  }

  /** Forgets keys with nothing in the window, so memory follows the active keys only. */
  private sweep(now: number): void {
    for (const [keyId, w] of this.windows) {
      const newest = w.times[w.times.length - 1];
      if (newest === undefined || newest <= now - this.windowMs) this.windows.delete(keyId);
    }
  }
}
