import { FieldError, notFound } from '../domain/errors';
import { TEXT_MAX, withinLength } from '../domain/operator-limits';
import type { Account, ApiKeyRecord, KeyPatch, Store } from '../ports/store';

/**
 * Operator use cases over keys and accounts beyond creating them (app/accounts.ts); the admin routes and the CLI
 * both call these. Limits are read by the store on every submit, so a change applies to the key's next request on
 * every node; a revoked key is refused from its next request on (nothing caches keys).
 */
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

/** Renames an account or sets its callback URL (`null` removes it); 404 for an unknown account. */
export async function updateAccount(store: Store, accountId: string, patch: { name?: string; callbackUrl?: string | null }): Promise<Account> {
  if (patch.name !== undefined) {
    if (!patch.name.trim()) throw new FieldError('InvalidParameterValue', 'name', 'must not be empty');
    withinLength('name', patch.name, TEXT_MAX.name);
  }
  if (patch.callbackUrl) withinLength('callback_url', patch.callbackUrl, TEXT_MAX.callbackUrl);
  const account = await store.accounts.updateAccount(accountId, patch);
  if (!account) throw notFound('account', accountId);
  return account;
}

export async function listKeys(store: Store, accountId: string): Promise<ApiKeyRecord[]> {
  await getAccount(store, accountId);
  return store.accounts.listKeys(accountId);
}

export async function getKey(store: Store, keyId: string): Promise<ApiKeyRecord> {
  const key = await store.accounts.getKey(keyId);
  if (!key) throw notFound('key', keyId);
  return key;
}

export async function updateKey(store: Store, keyId: string, patch: KeyPatch): Promise<ApiKeyRecord> {
  if (patch.name) withinLength('name', patch.name, TEXT_MAX.name);
  if (patch.callbackUrl) withinLength('callback_url', patch.callbackUrl, TEXT_MAX.callbackUrl);
  const key = await store.accounts.updateKey(keyId, patch);
  if (!key) throw notFound('key', keyId);
  return key;
}

/** Idempotent, as a DELETE is: revoking a revoked key is done already (it keeps its first revocation time). */
export async function revokeKey(store: Store, keyId: string, now: number): Promise<void> {
  if (await store.accounts.revokeKey(keyId, now)) return;
  if (!(await store.accounts.getKey(keyId))) throw notFound('key', keyId);
}
