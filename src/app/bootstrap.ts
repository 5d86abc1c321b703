import type { Clock } from '../ports/clock';
import type { Store } from '../ports/store';
import { createAccount } from './accounts';
import { createApiKey } from './api-keys';

/**
 * On an empty database: a `dev` account with a starting balance and one key, so the first `npm start` can be
 * tried at once. Returns the key's plaintext that one time; never again.
 */
export async function ensureDevAccount(
  store: Store,
  clock: Clock,
  balance: number,
): Promise<{ accountId: string; key: string } | undefined> {
  if ((await store.accounts.countAccounts()) > 0) return undefined;
  const account = await createAccount(store, clock, { name: 'dev', balance });
  const { plaintext } = await createApiKey(store, clock, account.id, { name: 'dev' });
  return { accountId: account.id, key: plaintext };
}
