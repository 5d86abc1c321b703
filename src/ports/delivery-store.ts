/**
 * Persistence for the delivery guarantees: Idempotency-Key reservations with their stored responses, and the
 * webhook outbox with its attempt log. Part of `Store` (ports/store.ts). The outbox row of a task's terminal event
 * is written by `TaskStore.finish` in the same transaction as the state change; this port adds the rest.
 *
 * Times are epoch milliseconds.
 */

// ---------------------------------------------------------------------------------------------- idempotency

export type IdempotencyReservation =
  /** This caller owns the key now; `token` proves it to `complete`, `release` and `NewTask.idempotency`. */
  | { readonly state: 'reserved'; readonly token: string }
  /** The key was used with a different request body (or `?webhook=`). */
  | { readonly state: 'mismatch' }
  /** Another request holds the key and has not stored its response yet; `taskId` once it created its task. */
  | { readonly state: 'pending'; readonly taskId?: string; readonly reservedAt: number }
  /** The stored first response, to replay as is. */
  | { readonly state: 'done'; readonly status: number; readonly body: string };

export interface IdempotencyStore {
  /**
   * Atomically: forgets the key if its row is older than `ttlMs` (or a reservation older than `leaseMs` that never
   * created a task), then inserts a reservation or reports the existing row. Keys are per account.
   */
  reserve(input: {
    accountId: string;
    key: string;
    bodyHash: string;
    now: number;
    ttlMs: number;
    leaseMs: number;
  }): Promise<IdempotencyReservation>;
  /** Stores the response once; false when one is already stored (the first writer wins). */
  complete(input: { accountId: string; key: string; status: number; body: string; now: number }): Promise<boolean>;
  /** Drops a reservation that created nothing (the request failed), so a retry runs afresh. */
  release(accountId: string, key: string, token: string): Promise<void>;
  /** Deletes rows created at or before `before`; returns how many. */
  purge(before: number): Promise<number>;
}

/**
 * The Idempotency-Key reservation an operator's balance change (top-up, adjustment) runs under. The store checks
 * that the reservation is still this token's and records the answer on it (`status`, body `balanceAnswer(new
 * balance)`) in the transaction that moves the money: a committed change always has its answer stored, so a retry
 * replays it and never credits twice. When the reservation is no longer this token's (its lease ran out and another
 * request took the key), nothing is written and the store says `idempotency_lost`.
 */
export interface BalanceChangeReservation {
  /** Where the key lives (`reserve`'s accountId): operator keys have a scope of their own (app/idempotency.ts). */
  readonly scope: string;
  readonly key: string;
  readonly token: string;
  readonly status: number;
}

/**
 * An account created under an operator's Idempotency-Key (`POST /admin/v1/accounts`, whose opening balance is money):
 * its answer is known before the transaction (the route builds the account's id, secret and time itself), so the
 * store records `body` on the reservation in the transaction that creates the account.
 */
export interface AccountCreationReservation extends BalanceChangeReservation {
  readonly body: string;
}

/** The answer of a top-up or adjustment, as sent and as stored for replays. */
export const balanceAnswer = (balance: number): string => JSON.stringify({ balance });

// ---------------------------------------------------------------------------------------------- webhooks

export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'gone';

export interface WebhookDelivery {
  readonly id: string;
  /** Its place among all deliveries, in the order they were written: what a list pages by. */
  readonly seq: number;
  /** `webhook-id`: one per task event, the same on every attempt, replay and redelivery, so receivers can dedupe. */
  readonly messageId: string;
  readonly taskId: string;
  readonly accountId: string;
  readonly url: string;
  readonly state: DeliveryState;
  readonly attempts: number;
  readonly nextAttemptAt?: number;
  readonly lastStatus?: number;
  /** The delivery this one re-sends (admin replay / redeliver). */
  readonly replayOf?: string;
  readonly createdAt: number;
  readonly finishedAt?: number;
}

export interface WebhookAttempt {
  readonly id: number;
  readonly deliveryId: string;
  readonly at: number;
  /** HTTP status; absent when no response came (refused, timeout, blocked address). */
  readonly status?: number;
  readonly error?: string;
  readonly latencyMs: number;
  /** The first bytes of the receiver's answer. */
  readonly responseBody?: string;
}

export type NewWebhookAttempt = Omit<WebhookAttempt, 'id' | 'deliveryId'>;

/** What an attempt leads to: `pending` with the next try, or a final state. */
export type DeliveryStep =
  | { readonly state: 'pending'; readonly nextAttemptAt: number }
  | { readonly state: 'delivered' | 'failed' | 'gone' };

export interface WebhookFilter {
  readonly taskId?: string;
  readonly state?: DeliveryState;
  /** Only deliveries older than this one (its `seq`): the next page of a list, newest first. */
  readonly beforeSeq?: number;
  readonly limit: number;
}

export interface WebhookStore {
  /**
   * Up to `limit` pending deliveries due at `now` and not leased, leased to the caller until `now + leaseMs`. An
   * account gets no more than `perAccount` leased at once (its unexpired leases, whoever holds them, count; claims
   * from several nodes never pass it together). Oldest first while that keeps everyone within their cap; otherwise
   * every account with room gets its oldest due row before any account gets its second, and so on.
   */
  claimDue(now: number, limit: number, leaseMs: number, perAccount: number): Promise<WebhookDelivery[]>;
  /** Logs the attempt and applies its step in one transaction; clears the lease. */
  recordAttempt(deliveryId: string, attempt: NewWebhookAttempt, step: DeliveryStep): Promise<void>;
  /**
   * The earliest time after `after` (default: any) at which a pending delivery can be claimed (due and unleased),
   * or undefined when there is none.
   */
  nextDueAt(after?: number): Promise<number | undefined>;
  /** Whether any of these tasks has a pending delivery (one point read for the lot). */
  anyPending(taskIds: readonly string[]): Promise<boolean>;
  /**
   * Clears leases; returns how many. With no argument, every lease: at start-up a single node owns none, whatever a
   * crash left. With `leases`, only those rows, and only while each still holds the lease given (the `now + leaseMs`
   * its claim set) and is pending: a node that stops hands back what it claimed and never attempted, so another node
   * (and the account's cap) need not wait for the lease to run out, but a lease that did run out and was claimed
   * again since belongs to its new holder.
   */
  releaseLeases(leases?: ReadonlyArray<{ readonly id: string; readonly leaseUntil: number }>): Promise<number>;
  /**
   * A new pending delivery of a finished task's event, due now: to `url` when given, else to the URL the task
   * resolves to (its own `?webhook=`, the key's, then the account's callback URL). Undefined when there is none.
   */
  enqueueForTask(taskId: string, options: { url?: string; replayOf?: string; now: number }): Promise<WebhookDelivery | undefined>;
  getDelivery(id: string): Promise<WebhookDelivery | undefined>;
  listDeliveries(filter: WebhookFilter): Promise<WebhookDelivery[]>;
  attempts(deliveryId: string): Promise<WebhookAttempt[]>;
  /** Deletes the deliveries that ended at or before `before` (never a pending one), with their attempts; returns how many. */
  purge(before: number): Promise<number>;
}
