import { notFound } from '../domain/errors';
import { TEXT_MAX, withinLength } from '../domain/operator-limits';
import type { Clock } from '../ports/clock';
import type { ApiKeyRecord, KeyPatch, Store } from '../ports/store';
import { getAccount } from './accounts';
import { issueKey } from './key-secrets';

/**
 * Operator use cases over API keys; the admin routes and the CLI both call these (key secrets: key-secrets.ts).
 * Limits are read by the store on every submit, so a change applies to the key's next request on every node; a
 * revoked key is refused from its next request on (nothing caches keys).
 */
export async function createApiKey(
  store: Store,
  clock: Clock,
  accountId: string,
  input: { name?: string; rpm?: number; maxConcurrency?: number; spendCap?: number; callbackUrl?: string },
): Promise<{ record: ApiKeyRecord; plaintext: string }> {
  if (input.name !== undefined) withinLength('name', input.name, TEXT_MAX.name);
  if (input.callbackUrl !== undefined) withinLength('callback_url', input.callbackUrl, TEXT_MAX.callbackUrl);
  if (!(await store.accounts.getAccount(accountId))) throw notFound('account', accountId);
  const issued = issueKey();
  const record = await store.accounts.createKey({
    id: issued.keyId,
    accountId,
    secretHash: issued.secretHash,
    createdAt: clock.now(),
    ...(input.name !== undefined ? { name: input.name } : {}),
    ...(input.rpm !== undefined ? { rpm: input.rpm } : {}),
    ...(input.maxConcurrency !== undefined ? { maxConcurrency: input.maxConcurrency } : {}),
    ...(input.spendCap !== undefined ? { spendCap: input.spendCap } : {}),
    ...(input.callbackUrl !== undefined ? { callbackUrl: input.callbackUrl } : {}),
  });
  return { record, plaintext: issued.plaintext };
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
