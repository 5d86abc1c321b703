import { RelayError } from '../domain/errors';
import type { RequestRates } from '../ports/request-rates';
import type { ApiKeyRecord, CreateTaskOutcome } from '../ports/store';

/** Seconds for `Retry-After`: whole, at least 1. */
const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

/** The key's `rpm`, if it has one: throws 429 RequestLimitExceeded (with Retry-After) when the window is full. */
export async function enforceRequestRate(rates: RequestRates, key: ApiKeyRecord, now: number): Promise<void> {
  if (key.rpm === undefined) return;
  const taken = await rates.take(key.id, key.rpm, now);
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
        `This API key allows ${outcome.limit} ${outcome.limit === 1 ? 'task' : 'tasks'} queued or running at once; retry when one finishes.`,
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
      // The reservation was taken over before the task was inserted: its lease ran out (IDEMPOTENCY_LEASE_MS, several
      // nodes), or (one node) a reservation write that failed after committing left it to the next request. Nothing
      // was written; a retry is safe.
      return new RelayError('ResourceUnavailable', 'Idempotency-Key: the reservation expired before the task was created; retry.', {
        retryAfterSeconds: 1,
      });
  }
}
