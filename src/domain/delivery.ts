import { FieldError } from './errors';

/**
 * The rules behind the delivery guarantees (session de-duplication, Idempotency-Key, `Prefer: wait`): the
 * windows they hold for and the header grammar. Pure: no I/O, no clock.
 */

/** A `session_id` is refused when the same account used it within this window (the contract says 3 days). */
export const SESSION_DEDUP_MS = 3 * 24 * 3600 * 1000;

/** A stored Idempotency-Key response is replayed for this long, then the key may be used afresh. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/**
 * How long a webhook delivery that ended (delivered, failed or gone) stays listed with its attempts
 * (`GET /admin/v1/webhooks`). One row and its attempts per finished task would otherwise grow without end; the
 * task and its result stay, and `redeliver` can always send the event again.
 */
export const WEBHOOK_RETENTION_MS = 30 * 24 * 3600 * 1000;

/**
 * With several nodes, a reservation that never got a task after this long belongs to a process that died
 * mid-request, and may be taken over. A submit usually goes from its reservation to its task in milliseconds (its
 * rate check, file and price reads, the insert); a live one slower than this (a database stall, a pool wait) loses
 * the key at its insert, writes nothing, and is told to retry, which is safe. Meanwhile a retry of the key is answered 503 `Retry-After: 1`, so this is how long a client whose node died
 * at that moment waits to learn the task was never made. (One node knows its own requests: it waits for none.)
 */
export const IDEMPOTENCY_LEASE_MS = 10 * 1000;

/** `Prefer: wait=N` is honoured up to this many seconds (the contract's N ≤ 60). */
export const MAX_WAIT_SECONDS = 60;

/**
 * With several nodes, a reservation that has its task but no stored response after this long belongs to a request
 * that died before answering; its answer is then rebuilt from the task and stored in its place. Longer than the
 * longest `Prefer: wait`, so a live request holding its answer for that wait stores its own first. Before that, a
 * retry is answered from the task too (the client learns its task at once), without storing anything.
 */
export const IDEMPOTENCY_ANSWER_WINDOW_MS = (MAX_WAIT_SECONDS + 30) * 1000;

/** Printable ASCII without spaces at the ends, like Stripe's and the IETF draft's keys; 255 is Stripe's limit. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/;

/** The same rule as a JSON Schema, for the OpenAPI document: a client validating against it refuses what the relay does. */
export const IDEMPOTENCY_KEY_SCHEMA = { minLength: 1, maxLength: 255, pattern: IDEMPOTENCY_KEY.source } as const;

/** The `Idempotency-Key` header's value, or undefined when absent. A present but unusable key is a 400. */
export function readIdempotencyKey(header: string | readonly string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  // Each occurrence apart (Node joins repeated headers with ", ", which a key may contain: "a, b" would be one key).
  const occurrences = typeof header === 'string' ? [header] : header;
  if (occurrences.length !== 1) {
    throw new FieldError('InvalidParameter', 'Idempotency-Key', 'send the header once');
  }
  header = occurrences[0]!;
  if (!IDEMPOTENCY_KEY.test(header)) {
    throw new FieldError('InvalidParameterValue', 'Idempotency-Key', 'must be 1 to 255 printable ASCII characters (a UUID is ideal)');
  }
  return header;
}

/**
 * `Prefer: wait=N` (RFC 7240 §4.3) → N, or undefined when the header asks for no wait. RFC 7240 §2 decides the rest:
 * a preference the server cannot use is ignored, never an error (a 400 here broke clients that send a preference
 * their other servers understand), and of a preference given twice only the first counts. So a `wait` that is not
 * a number of seconds is ignored (the answer then has no `Preference-Applied`, which is how the client can tell), a
 * fraction is rounded up (a client asking for 1.5 s wants to wait), and a longer wait than we hold a connection for
 * is cut to MAX_WAIT_SECONDS (a client asking for 120 s wants as long as it can get; `Preference-Applied` tells it
 * what it got).
 */
export function readPreferWait(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const values = Array.isArray(header) ? header : [header];
  for (const value of values) {
    for (const preference of value.split(',')) {
      const [name, ...rest] = preference.split(';')[0]!.split('=');
      if (name!.trim().toLowerCase() !== 'wait') continue;
      const raw = rest.join('=').trim().replace(/^"(.*)"$/, '$1');
      // The first `wait` decides, even when it cannot be used: a later one is not a fallback (RFC 7240 §2).
      if (!/^\d+(\.\d+)?$/.test(raw)) return undefined;
      return Math.min(Math.ceil(Number(raw)), MAX_WAIT_SECONDS);
    }
  }
  return undefined;
}
