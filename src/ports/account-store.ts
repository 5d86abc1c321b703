import type { AccountCreationReservation, BalanceChangeReservation } from './delivery-store';

// The store's accounts, keys, ledger and price tables (ports/store.ts: the whole store). Every method that moves
// money does it in one transaction with whatever it moves it for. Times are epoch milliseconds; money is whole credits.

export interface Account {
  readonly id: string;
  readonly name: string;
  /** Credits owned (top-ups and adjustments minus captures). */
  readonly balance: number;
  /** Credits reserved by unfinished tasks; `balance - held` is what can still be spent. */
  readonly held: number;
  readonly callbackUrl?: string;
  /** Signs this account's webhooks (Standard Webhooks, `whsec_…`). */
  readonly webhookSecret: string;
  /** The secret a rotation replaced: deliveries are signed with it too until `until` (epoch ms). */
  readonly previousWebhookSecret?: { readonly secret: string; readonly until: number };
  readonly createdAt: number;
  /** Since when (epoch ms) the account is suspended: every key of it is refused until an operator resumes it. */
  readonly suspendedAt?: number;
}

export interface ApiKeyRecord {
  readonly id: string;
  readonly accountId: string;
  readonly name?: string;
  /** SHA-256 (hex) of the key's secret part; the plaintext is never stored. */
  readonly secretHash: string;
  readonly rpm?: number;
  readonly maxConcurrency?: number;
  /** Most credits this key may have committed (held + captured) at once over its life; released credits return. */
  readonly spendCap?: number;
  /** Credits this key has committed: held by its unfinished tasks plus captured by its succeeded ones. */
  readonly spent: number;
  /** Where this key's task webhooks go when a task names no `?webhook=`; before the account's callback URL. */
  readonly callbackUrl?: string;
  readonly createdAt: number;
  readonly revokedAt?: number;
  /** From this time on (epoch ms) the key is refused, as a revoked one is; unlike a revocation, a PATCH can move it. */
  readonly expiresAt?: number;
}

/**
 * A key as authentication reads it: with its account's suspension, read in the same query (a join), so that letting
 * a key in stays one store lookup per request.
 */
export interface KeyWithAccount extends ApiKeyRecord {
  /** The key's account is suspended (Account.suspendedAt): the key is refused until the account is resumed. */
  readonly accountSuspended: boolean;
}

/** A change to a key's settings: a value sets it, `null` removes the limit, absent leaves it as it is. */
export interface KeyPatch {
  readonly name?: string | null;
  readonly rpm?: number | null;
  readonly maxConcurrency?: number | null;
  readonly spendCap?: number | null;
  /** The key's webhook URL (checked against the outbound rules by the caller); null removes it. */
  readonly callbackUrl?: string | null;
  /** When the key stops working (epoch ms; checked to be in the future by the caller); null: it never expires. */
  readonly expiresAt?: number | null;
}

/** The operator's price table as stored (PUT /admin/v1/prices); `prices: null` means "back to the file/default". */
export interface StoredPriceTable {
  readonly prices: unknown;
  readonly updatedAt: number;
}

export type LedgerKind = 'topup' | 'hold' | 'capture' | 'release' | 'adjust';

export interface LedgerEntry {
  readonly id: number;
  readonly accountId: string;
  readonly taskId?: string;
  readonly kind: LedgerKind;
  readonly amount: number;
  readonly reference?: string;
  readonly createdAt: number;
}

/**
 * One disagreement found by the audit. `balance`/`held`: the account row against the ledger; `held_by_tasks`: the
 * account's held against its unfinished tasks; `key_spent`: a key's counter against its tasks; `task`: a task whose
 * ledger rows break the rules (domain/ledger-rules.ts); `ledger`: a row that belongs to no task it could.
 */
export interface AuditDifference {
  readonly accountId: string;
  readonly field: 'balance' | 'held' | 'held_by_tasks' | 'key_spent' | 'task' | 'ledger';
  /** The value stored (or found), and the value the ledger/tasks say it should be; 0/0 where counts do not apply. */
  readonly stored: number;
  readonly fromLedger: number;
  readonly taskId?: string;
  readonly keyId?: string;
  /** One line a human can act on. */
  readonly message: string;
}

export type AdjustOutcome =
  | { readonly ok: true; readonly balance: number }
  | { readonly ok: false; readonly reason: 'unknown_account' }
  /** What the account had available (`balance - held`) when the adjustment was refused. */
  | { readonly ok: false; readonly reason: 'insufficient_balance'; readonly available: number }
  /** The balance would pass Number.MAX_SAFE_INTEGER. */
  | { readonly ok: false; readonly reason: 'balance_limit'; readonly balance: number }
  /** The Idempotency-Key reservation was no longer this request's (BalanceChangeReservation). */
  | { readonly ok: false; readonly reason: 'idempotency_lost' };

export interface NewAccount {
  readonly id: string;
  readonly name: string;
  readonly balance: number;
  readonly callbackUrl?: string;
  readonly webhookSecret: string;
  readonly now: number;
}

/** A change to an account: a value sets it, `null` removes it, absent leaves it as it is. */
export interface AccountPatch {
  readonly name?: string;
  readonly callbackUrl?: string | null;
  readonly suspendedAt?: number | null;
}

export interface AccountStore {
  /**
   * The account and its opening-balance ledger row. With `idempotency`, its answer is recorded in the same
   * transaction; `idempotency_lost`, nothing written, when the reservation is no longer its token's.
   */
  createAccount(input: NewAccount): Promise<Account>;
  createAccount(input: NewAccount, idempotency: AccountCreationReservation): Promise<Account | 'idempotency_lost'>;
  getAccount(id: string): Promise<Account | undefined>;
  /**
   * Changes what is given (`callbackUrl: null` removes it); the account as it now is, undefined if there is none.
   * `suspendedAt`: a time suspends the account from then, unless it is suspended already (it keeps its first time);
   * null resumes it.
   */
  updateAccount(id: string, patch: AccountPatch): Promise<Account | undefined>;
  /**
   * Makes `secret` the account's webhook secret. The one it replaces signs beside it until `previousUntil` (epoch
   * ms); with no `previousUntil` it stops at once (a secret that leaked). A secret that an earlier rotation kept is
   * dropped either way: at most two sign at once. The account as it now is, undefined if there is none.
   */
  rotateWebhookSecret(id: string, secret: string, previousUntil: number | undefined): Promise<Account | undefined>;
  countAccounts(): Promise<number>;
  createKey(input: Omit<ApiKeyRecord, 'revokedAt' | 'spent'>): Promise<ApiKeyRecord>;
  /** The key with its account's suspension, in one query: every authenticated request makes it. */
  getKey(id: string): Promise<KeyWithAccount | undefined>;
  /** False when the key does not exist or was already revoked. */
  revokeKey(id: string, now: number): Promise<boolean>;
  /**
   * Adds credits and writes the ledger row; returns the new balance. Undefined, and nothing written, for an unknown
   * account or when the balance would pass Number.MAX_SAFE_INTEGER (money must stay exact as a JS number).
   * With `idempotency`, its answer is recorded in the same transaction; `idempotency_lost`, nothing written, when
   * the reservation is no longer its token's.
   */
  topUp(
    accountId: string,
    amount: number,
    reference: string | undefined,
    now: number,
    idempotency?: BalanceChangeReservation,
  ): Promise<number | undefined | 'idempotency_lost'>;
  /**
   * An operator's correction: adds `amount` (a non-zero safe integer; negative takes credits away) to the balance and
   * writes the ledger row (kind `adjust`, `reason` as its reference), in one transaction with the account's row
   * locked. Refused, with nothing written, for an unknown account, when a negative amount would leave less than
   * nothing available (`balance - held`: credits held by unfinished tasks cannot be taken back), or when the balance
   * would pass Number.MAX_SAFE_INTEGER. `idempotency` as for `topUp`.
   */
  adjust(accountId: string, amount: number, reason: string, now: number, idempotency?: BalanceChangeReservation): Promise<AdjustOutcome>;
  /** Newest first (by id); `beforeId`: only older rows, the next page after the row with that id. */
  ledger(accountId: string, limit: number, beforeId?: number): Promise<LedgerEntry[]>;
  /**
   * Recomputes every account's balance and held from the ledger and checks each task's ledger rows against its
   * state; returns every disagreement (empty when the books are clean).
   */
  audit(): Promise<AuditDifference[]>;
  /**
   * Newest first (created_at, then id, both descending: a total order); `afterId`: only accounts after that one in
   * this order, the next page. An unknown `afterId` gives nothing (accounts are never deleted).
   */
  listAccounts(limit: number, afterId?: string): Promise<Account[]>;
  /** The account's keys, revoked ones included, oldest first. */
  listKeys(accountId: string): Promise<ApiKeyRecord[]>;
  /** Applies the patch; undefined for an unknown key. Takes effect on the key's next request. */
  updateKey(id: string, patch: KeyPatch): Promise<ApiKeyRecord | undefined>;
  /** The operator's newest price table, or undefined if none was ever saved. */
  currentPrices(): Promise<StoredPriceTable | undefined>;
  /** Appends a price table (already validated); `null` reverts to the configured file or the built-in table. */
  savePrices(prices: unknown, now: number): Promise<void>;
}
