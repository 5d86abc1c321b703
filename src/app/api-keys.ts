import { parseDateTime } from '../domain/date-time';
import { FieldError, notFound } from '../domain/errors';
import { TEXT_MAX, withinLength } from '../domain/operator-limits';
import type { Clock } from '../ports/clock';
import type { ApiKeyRecord, KeyPatch, Store } from '../ports/store';
import { getAccount } from './accounts';
import { issueKey } from './key-secrets';

/**
 * Operator use cases over API keys; the admin routes and the CLI both call these (key secrets: key-secrets.ts).
 * Limits are read by the store on every submit, so a change applies to the key's next request on every node; a
 * revoked key is refused from its next request on (nothing caches keys), and so is one whose `expires_at` has come.
 */
export async function createApiKey(
  store: Store,
  clock: Clock,
  accountId: string,
  input: { name?: string; rpm?: number; maxConcurrency?: number; spendCap?: number; callbackUrl?: string; expiresAt?: string },
): Promise<{ record: ApiKeyRecord; plaintext: string }> {
  if (input.name !== undefined) withinLength('name', input.name, TEXT_MAX.name);
  if (input.callbackUrl !== undefined) withinLength('callback_url', input.callbackUrl, TEXT_MAX.callbackUrl);
  const expiresAt = input.expiresAt === undefined ? undefined : keyExpiry(input.expiresAt, clock.now());
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
    ...(expiresAt !== undefined ? { expiresAt } : {}),
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

/** A key's changes as the operator gives them: `expiresAt` as RFC 3339 text (null: it never expires). */
export type KeyChanges = Omit<KeyPatch, 'expiresAt'> & { readonly expiresAt?: string | null };

export async function updateKey(store: Store, clock: Clock, keyId: string, changes: KeyChanges): Promise<ApiKeyRecord> {
  if (changes.name) withinLength('name', changes.name, TEXT_MAX.name);
  if (changes.callbackUrl) withinLength('callback_url', changes.callbackUrl, TEXT_MAX.callbackUrl);
  const { expiresAt, ...rest } = changes;
  const patch: KeyPatch = expiresAt === undefined ? rest : { ...rest, expiresAt: expiresAt === null ? null : keyExpiry(expiresAt, clock.now()) };
  const key = await store.accounts.updateKey(keyId, patch);
  if (!key) throw notFound('key', keyId);
  return key;
}

/**
 * An expiry the operator gives (RFC 3339) → epoch ms. It must be in the future, when created and when changed: a
 * past one would refuse the key at once, more likely a typo in the year than a wish (revoking says that plainly).
 * An expired key may be given a later expiry, or none, and works again; a revoked one never does.
 */
export function keyExpiry(text: string, now: number): number {
  const at = parseDateTime(text);
  if (at === undefined) throw new FieldError('InvalidParameterValue', 'expires_at', `${JSON.stringify(text)} is not an RFC 3339 date-time, e.g. 2030-01-31T00:00:00Z`);
  if (at <= now) throw new FieldError('InvalidParameterValue', 'expires_at', `${JSON.stringify(text)} is not in the future (now is ${new Date(now).toISOString()})`);
  return at;
}

/** Idempotent, as a DELETE is: revoking a revoked key is done already (it keeps its first revocation time). */
export async function revokeKey(store: Store, keyId: string, now: number): Promise<void> {
  if (await store.accounts.revokeKey(keyId, now)) return;
  if (!(await store.accounts.getKey(keyId))) throw notFound('key', keyId);
}
