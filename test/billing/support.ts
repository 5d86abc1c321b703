import pino from 'pino';
import { expect } from 'vitest';
import { loadConfig } from '../../src/config/env';
import { createRelay, type Relay, type RelayOverrides } from '../../src/main';
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

/** Polls across processes or timers (no event to await), failing after `ms`. */
export async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A second start on an existing data dir (startTestRelay insists on a fresh one). */
export async function reopenRelay(dataDir: string, env: Record<string, string> = {}, overrides: RelayOverrides = {}): Promise<{ relay: Relay; url: string }> {
  const config = loadConfig({
    AIGC_RELAY_DATA_DIR: dataDir,
    AIGC_RELAY_HOST: '127.0.0.1',
    AIGC_RELAY_PORT: '0',
    AIGC_RELAY_LOG_LEVEL: 'silent',
    AIGC_RELAY_PREVIEW_DELAY_MS: '0',
    ...env,
  });
  const relay = await createRelay(config, { logger: pino({ level: 'silent' }), ...overrides });
  return { relay, url: await relay.listen() };
}

/** A clock the test can move forward; everything else in the relay keeps reading real time plus the offset. */
export function movableClock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms: number) => void (offset += ms) };
}
