import { expect } from 'vitest';
import { apiClient, type ApiClient } from '../helpers/api';
import { PROMPT_BODY, type TestRelay } from '../helpers/relay';

/** What PROMPT_BODY (GEM 3.0, 1080P 16:9 → class 1K) costs on a relay, read from its price table. */
export async function promptPrice(admin: ApiClient): Promise<number> {
  const res = await admin.get('/admin/v1/prices');
  expect(res.status).toBe(200);
  return res.body.prices['GEM:3.0']['1K'] as number;
}

export interface TestAccount {
  readonly accountId: string;
  readonly keyId: string;
  readonly key: string;
  readonly api: ApiClient;
}

/** An account with one key, made through the admin API like an operator would. */
export async function accountWithKey(
  t: Pick<TestRelay, 'url' | 'admin'>,
  balance: number,
  limits: { rpm?: number; max_concurrency?: number; spend_cap?: number } = {},
): Promise<TestAccount> {
  const account = await t.admin.post('/admin/v1/accounts', { name: 'billing-test', balance });
  expect(account.status).toBe(201);
  const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, limits);
  expect(key.status).toBe(201);
  return { accountId: account.body.id, keyId: key.body.id, key: key.body.key, api: apiClient(t.url, key.body.key) };
}

export const submit = (api: ApiClient, prompt: string = PROMPT_BODY.prompt) => api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt });
