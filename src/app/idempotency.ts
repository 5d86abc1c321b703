import { createHash } from 'node:crypto';
import { IDEMPOTENCY_ANSWER_WINDOW_MS, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS } from '../domain/delivery';
import { RelayError } from '../domain/errors';
import type { Clock } from '../ports/clock';
import type { IdempotencyStore } from '../ports/delivery-store';

/** A response as sent: replayed byte for byte. */
export interface StoredResponse {
  readonly status: number;
  readonly body: string;
}

export interface IdempotentRun {
  /** Runs the request under the reservation (`NewTask.idempotency` ties the task to it). */
  readonly produce: (reservation: { key: string; token: string }) => Promise<StoredResponse>;
  /** The response for a task whose request died before storing one (a crash between commit and reply). */
  readonly recover: (taskId: string) => Promise<StoredResponse | undefined>;
}

/**
 * Where an operator's Idempotency-Key for an account's balance (top-ups, adjustments) lives: apart from the keys the
 * account's own clients send (reserved under the bare account id), so neither can replay or block the other. Account
 * ids never contain `:` (app/ids.ts), so no account's own scope can be one of these.
 */
export const operatorKeyScope = (accountId: string): string => `admin:${accountId}`;

/** Where an operator's Idempotency-Key for creating an account lives (account ids are `acct_…`, never `accounts`). */
export const NEW_ACCOUNTS_SCOPE = 'admin:accounts';

/** JSON with object keys sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same request. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What "the same request" means for a key: SHA-256 of the canonical JSON of everything that shapes the task. */
export function requestFingerprint(parts: unknown): string {
  return createHash('sha256').update(canonical(parts)).digest('hex');
}

/**
 * Idempotency-Key handling. The database row (account, key) is the reservation, inserted atomically, so across
 * processes only one request per key can create a task. Within this process a request that finds the key busy
 * waits on the holder's promise and then reads the stored response, instead of failing: 20 concurrent duplicates
 * give one task and 20 identical answers.
 *
 * Only responses of requests that created a task are stored. A request refused before that (validation, balance,
 * limits) releases its reservation, so fixing the cause and retrying with the same key works — nothing was charged.
 */
export class IdempotencyGate {
  private readonly busy = new Map<string, Promise<void>>();

  constructor(
    private readonly deps: {
      readonly store: IdempotencyStore;
      readonly clock: Clock;
      /**
       * True when this process is the only one serving the database (SQLite): a key pending with nobody here
       * holding it can only be a request that died, and is taken over (no task yet) or answered from its task at
       * once. With several nodes it may be running on another one: taken over only once its reservation lease has
       * run out (IDEMPOTENCY_LEASE_MS), and answered from its task without storing that answer until the holder
       * must have given up (IDEMPOTENCY_ANSWER_WINDOW_MS).
       */
      readonly soleNode: boolean;
    },
  ) {}

  async run(accountId: string, key: string, fingerprint: string, request: IdempotentRun): Promise<{ response: StoredResponse; replayed: boolean }> {
    const slot = `${accountId}\n${key}`;
    for (;;) {
      const holder = this.busy.get(slot);
      if (holder) {
        await holder;
        continue;
      }
      let release!: () => void;
      this.busy.set(slot, new Promise<void>((resolve) => (release = resolve)));
      try {
        return await this.once(accountId, key, fingerprint, request);
      } finally {
        this.busy.delete(slot);
        release();
      }
    }
  }

  private async once(accountId: string, key: string, fingerprint: string, request: IdempotentRun) {
    const { store, clock, soleNode } = this.deps;
    // One node: the key is not held in this process (`run`), so a reservation without a task is a dead request's.
    const leaseMs = soleNode ? 0 : IDEMPOTENCY_LEASE_MS;
    const reserve = () => store.reserve({ accountId, key, bodyHash: fingerprint, now: clock.now(), ttlMs: IDEMPOTENCY_TTL_MS, leaseMs });
    let reservation = await reserve();
    if (reservation.state === 'pending' && reservation.taskId !== undefined) {
      // The task exists and its answer was not stored: its request died before answering, or (several nodes) is
      // still answering on another node, perhaps holding its answer for a `Prefer: wait`.
      const recovered = await request.recover(reservation.taskId);
      if (recovered && !soleNode && clock.now() - reservation.reservedAt < IDEMPOTENCY_ANSWER_WINDOW_MS) {
        // The holder may still store its own: the client learns its task now, and nothing is stored in its place.
        return { response: recovered, replayed: true };
      }
      // Nobody holds the key any more: answered from the task, and stored (first writer wins, so every later
      // replay agrees).
      if (recovered) await store.complete({ accountId, key, ...recovered, now: clock.now() });
      reservation = await reserve();
    }
    switch (reservation.state) {
      case 'mismatch':
        throw new RelayError(
          'FailedOperation.IdempotencyKeyReused',
          'Idempotency-Key: already used with a different request in the last 24 hours; send a new key for a new request.',
        );
      case 'done':
        return { response: { status: reservation.status, body: reservation.body }, replayed: true };
      case 'pending':
        throw new RelayError('ResourceUnavailable', 'Idempotency-Key: a request with this key is still in progress; retry shortly.', {
          retryAfterSeconds: 1,
        });
      case 'reserved':
        break;
    }
    const token = reservation.token;
    let response: StoredResponse;
    try {
      response = await request.produce({ key, token });
    } catch (err) {
      // Deletes only a reservation that created no task; one that did stays, to be answered by `recover`.
      await store.release(accountId, key, token);
      throw err;
    }
    await store.complete({ accountId, key, ...response, now: clock.now() });
    return { response, replayed: false };
  }
}
