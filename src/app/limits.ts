import { RelayError } from '../domain/errors';
import type { ApiKeyRecord, CreateTaskOutcome } from '../ports/store';

/**
 * Per-key request rate (`rpm`): a sliding-window log of the accepted requests of the last minute, per key id.
 * Exact (never more than `rpm` in any 60 s window, bursts included) and O(rpm) memory per active key.
 *
 * It lives in this process: with N relay nodes behind a balancer a key gets up to N × rpm. The limits that guard
 * money (max_concurrency, spend cap, balance) are enforced in the database instead and hold across nodes.
 */
export class RequestRateLimiter {
  private readonly windows = new Map<string, { times: number[]; head: number }>();
  private calls = 0;

  constructor(private readonly windowMs = 60_000) {}

  /** Counts one request of `keyId` at `now` if fewer than `limit` were counted in the window; else says how long to wait. */
  take(keyId: string, limit: number, now: number): { ok: true } | { ok: false; retryAfterMs: number } {
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

/** Seconds for `Retry-After`: whole, at least 1. */
const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

/** The key's `rpm`, if it has one: throws 429 RequestLimitExceeded (with Retry-After) when the window is full. */
export function enforceRequestRate(limiter: RequestRateLimiter, key: ApiKeyRecord, now: number): void {
  if (key.rpm === undefined) return;
  const taken = limiter.take(key.id, key.rpm, now);
  if (!taken.ok) {
    const wait = seconds(taken.retryAfterMs);
    throw new RelayError('RequestLimitExceeded', `This API key allows ${key.rpm} requests per minute; retry in ${wait} s.`, {
      retryAfterSeconds: wait,
    });
  }
}

/**
 * How long a client refused for concurrency should wait: a slot frees when one of its tasks finishes, which the
 * relay cannot predict; a short constant keeps polite clients polling gently.
 */
export const CONCURRENCY_RETRY_AFTER_SECONDS = 2;

/** A refusal from the store's createTask → the client-facing error. */
export function refusalError(outcome: Extract<CreateTaskOutcome, { ok: false }>, price: number): RelayError {
  switch (outcome.reason) {
    case 'concurrency_limit':
      return new RelayError(
        'LimitExceeded.Concurrency',
        `This API key allows ${outcome.limit} tasks queued or running at once; retry when one finishes.`,
        { retryAfterSeconds: CONCURRENCY_RETRY_AFTER_SECONDS },
      );
    case 'spend_cap':
      // 402, not 429: waiting does not help unless tasks are refunded or the operator raises the cap.
      return new RelayError(
        'FailedOperation.InsufficientBalance',
        `This request costs ${price} credits; this API key's spend cap is ${outcome.cap} and ${outcome.spent} are already committed.`,
      );
    case 'insufficient_balance':
      return new RelayError(
        'FailedOperation.InsufficientBalance',
        `This request costs ${price} credits; the account has ${outcome.available} available.`,
      );
    case 'duplicate_session':
      return new RelayError(
        'FailedOperation.DuplicateSession',
        `session_id: already used by this account in the last 3 days, for task ${outcome.taskId}; nothing was charged.`,
      );
    case 'idempotency_lost':
      // Only after this request held its key for over a minute without creating anything; a retry is safe.
      return new RelayError('ResourceUnavailable', 'Idempotency-Key: the reservation expired before the task was created; retry.', {
        retryAfterSeconds: 1,
      });
  }
}
