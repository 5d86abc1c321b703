import { randomBytes } from 'node:crypto';
import { FieldError, notFound, RelayError } from '../domain/errors';
import { TEXT_MAX, withinLength } from '../domain/operator-limits';
import type { Clock } from '../ports/clock';
import type { BalanceChangeReservation } from '../ports/delivery-store';
import type { Account, AccountPatch, NewAccount, Store } from '../ports/store';
import { newId } from './ids';

/** The reservation was taken over after its lease ran out (app/idempotency.ts); nothing was written. */
const reservationLost = () =>
  new RelayError('ResourceUnavailable', 'Idempotency-Key: the reservation expired before the change was made; nothing was written; retry.', {
    retryAfterSeconds: 1,
  });

/**
 * Operator use cases over accounts (keys: api-keys.ts); the admin HTTP routes and the CLI both call these.
 *
 * With `idempotency` (an operator's Idempotency-Key: an opening balance is money, so a retried creation must not
 * fund a second account), `answer` renders the account as the route sends it; the store records that answer in the
 * transaction that creates the account. The account is known in full before it is written (its id, secret and time
 * are made here), so the answer is too.
 */
export async function createAccount(
  store: Store,
  clock: Clock,
  input: { name: string; balance?: number; callbackUrl?: string },
  idempotency?: { readonly reservation: BalanceChangeReservation; readonly answer: (account: Account) => string },
): Promise<Account> {
  // The operator's only way to tell accounts apart in listings (the API and the CLI both come through here).
  if (!input.name.trim()) throw new FieldError('InvalidParameterValue', 'name', 'must not be empty');
  withinLength('name', input.name, TEXT_MAX.name);
  if (input.callbackUrl !== undefined) withinLength('callback_url', input.callbackUrl, TEXT_MAX.callbackUrl);
  const account: NewAccount = {
    id: newId('acct'),
    name: input.name,
    balance: input.balance ?? 0,
    webhookSecret: newWebhookSecret(),
    now: clock.now(),
    ...(input.callbackUrl ? { callbackUrl: input.callbackUrl } : {}),
  };
  if (!idempotency) return store.accounts.createAccount(account);
  const { now, ...fields } = account;
  const body = idempotency.answer({ ...fields, held: 0, createdAt: now });
  const created = await store.accounts.createAccount(account, { ...idempotency.reservation, body });
  if (created === 'idempotency_lost') throw reservationLost();
  return created;
}

/** The longest a rotated-out webhook secret may keep signing: a week, for receivers that deploy slowly. */
export const MAX_PREVIOUS_SECRET_SECONDS = 7 * 24 * 3600;
/** How long it signs when the operator does not say: a day, as Standard Webhooks' reference services keep it. */
export const DEFAULT_PREVIOUS_SECRET_SECONDS = 24 * 3600;

/**
 * A new webhook secret for the account. The one it replaces keeps signing beside it for `previousValidSeconds`
 * (default a day) so the account's receivers can switch without refusing a delivery meanwhile; 0 stops it at once,
 * for a secret that leaked.
 */
export async function rotateWebhookSecret(store: Store, clock: Clock, accountId: string, previousValidSeconds = DEFAULT_PREVIOUS_SECRET_SECONDS): Promise<Account> {
  if (!Number.isSafeInteger(previousValidSeconds) || previousValidSeconds < 0 || previousValidSeconds > MAX_PREVIOUS_SECRET_SECONDS) {
    throw new FieldError('InvalidParameterValue', 'previous_valid_seconds', `must be a whole number of seconds from 0 to ${MAX_PREVIOUS_SECRET_SECONDS}`);
  }
  const until = previousValidSeconds > 0 ? clock.now() + previousValidSeconds * 1000 : undefined;
  const account = await store.accounts.rotateWebhookSecret(accountId, newWebhookSecret(), until);
  if (!account) throw notFound('account', accountId);
  return account;
}

const newWebhookSecret = (): string => `whsec_${randomBytes(24).toString('base64')}`;

/** Adds credits; with `idempotency`, the answer is stored on the reservation with the credit (ports/delivery-store.ts). */
export async function topUp(
  store: Store,
  clock: Clock,
  accountId: string,
  amount: number,
  reference?: string,
  idempotency?: BalanceChangeReservation,
): Promise<number> {
  if (reference !== undefined) withinLength('reference', reference, TEXT_MAX.reference);
  const balance = await store.accounts.topUp(accountId, amount, reference, clock.now(), idempotency);
  if (balance === 'idempotency_lost') throw reservationLost();
  if (balance !== undefined) return balance;
  const account = await store.accounts.getAccount(accountId);
  if (!account) throw notFound('account', accountId);
  throw new FieldError('InvalidParameterValue', 'amount', `the balance (${account.balance}) would pass ${Number.MAX_SAFE_INTEGER}`);
}

/**
 * An operator's signed correction of a balance (a wrong top-up, a claw-back, a goodwill credit): a ledger row of kind
 * `adjust` with its reason. A negative amount may take only what is available: credits held by unfinished tasks
 * stay theirs. Returns the new balance.
 */
export async function adjustBalance(
  store: Store,
  clock: Clock,
  accountId: string,
  amount: number,
  reason: string,
  idempotency?: BalanceChangeReservation,
): Promise<number> {
  if (!Number.isSafeInteger(amount)) throw new FieldError('InvalidParameterValue', 'amount', 'must be a whole number of credits');
  if (amount === 0) throw new FieldError('InvalidParameterValue', 'amount', 'must not be 0 (positive adds credits, negative takes them away)');
  // Kept on the ledger for ever: the only record of why the balance moved.
  if (!reason.trim()) throw new FieldError('InvalidParameterValue', 'reason', 'must not be empty');
  withinLength('reason', reason, TEXT_MAX.adjustmentReason);
  const outcome = await store.accounts.adjust(accountId, amount, reason, clock.now(), idempotency);
  if (outcome.ok) return outcome.balance;
  switch (outcome.reason) {
    case 'idempotency_lost':
      throw reservationLost();
    case 'unknown_account':
      throw notFound('account', accountId);
    case 'insufficient_balance':
      throw new RelayError(
        'FailedOperation.InsufficientBalance',
        `This adjustment takes ${-amount} credits; the account has ${outcome.available} available (its balance less the credits held by unfinished tasks). Nothing was changed.`,
      );
    case 'balance_limit':
      throw new FieldError('InvalidParameterValue', 'amount', `the balance (${outcome.balance}) would pass ${Number.MAX_SAFE_INTEGER}`);
  }
}

/** Newest first; `after`: the last account of the page before (its id), whose successors are the next page. */
export async function listAccounts(store: Store, limit = 100, after?: string): Promise<Account[]> {
  if (after !== undefined && !(await store.accounts.getAccount(after))) {
    throw new FieldError('InvalidParameterValue', 'cursor', 'names no account: pass the next_cursor of the page before');
  }
  return store.accounts.listAccounts(limit, after);
}

export async function getAccount(store: Store, accountId: string): Promise<Account> {
  const account = await store.accounts.getAccount(accountId);
  if (!account) throw notFound('account', accountId);
  return account;
}

/** An account's changes as the operator gives them: `suspended` true suspends it (from now), false resumes it. */
export interface AccountChanges {
  readonly name?: string;
  readonly callbackUrl?: string | null;
  readonly suspended?: boolean;
}

/**
 * Renames an account, sets its callback URL (`null` removes it), or suspends or resumes it; 404 for an unknown
 * account. A suspended account's keys are all refused (auth.ts, keyRefusal) from their next request on, on every
 * node; suspending one already suspended keeps its first time, resuming one that is not changes nothing. Tasks already
 * accepted run on and settle, and the operator may still credit the account.
 */
export async function updateAccount(store: Store, clock: Clock, accountId: string, changes: AccountChanges): Promise<Account> {
  if (changes.name !== undefined) {
    if (!changes.name.trim()) throw new FieldError('InvalidParameterValue', 'name', 'must not be empty');
    withinLength('name', changes.name, TEXT_MAX.name);
  }
  if (changes.callbackUrl) withinLength('callback_url', changes.callbackUrl, TEXT_MAX.callbackUrl);
  const { suspended, ...rest } = changes;
  const patch: AccountPatch = suspended === undefined ? rest : { ...rest, suspendedAt: suspended ? clock.now() : null };
  const account = await store.accounts.updateAccount(accountId, patch);
  if (!account) throw notFound('account', accountId);
  return account;
}
