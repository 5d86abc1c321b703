import { afterEach, describe, expect, it, vi } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { refusalError } from '../../src/app/limits';
import { apiClient } from '../helpers/api';
import { movableClock } from '../helpers/clock';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { accountWithKey, promptPrice, submit } from './support';

const PNG = await solidPng('#345678');

let t: TestRelay | undefined;
let blocking: ControlledProvider | undefined;
afterEach(async () => {
  // Close first (dispatch stops), then let the held runs end so the drain does not wait for them.
  const closing = t?.close();
  for (const run of [...(blocking?.running.values() ?? [])]) run.fail(new Error('test over'));
  await closing;
  t = undefined;
  blocking = undefined;
});

/** A relay whose provider holds every task until the test finishes it, so tasks stay queued/running. */
async function blockingRelay(clock?: { now(): number }) {
  const provider = new ControlledProvider('blocking', 1, PNG);
  blocking = provider;
  t = await startTestRelay({ overrides: { providers: [provider], ...(clock ? { clock } : {}) } });
  return { t, provider };
}

const ledgerRows = async (relay: TestRelay, accountId: string) => (await relay.relay.store.accounts.ledger(accountId, 1000)).length;

describe('per-key rpm', () => {
  it('the 6th submit within a minute is 429 RequestLimitExceeded with Retry-After; the window slides', async () => {
    const clock = movableClock();
    const { t } = await blockingRelay(clock);
    const { accountId, api } = await accountWithKey(t, 1_000_000, { rpm: 5 });
    for (let i = 0; i < 5; i++) expect((await submit(api, `rpm ${i}`)).status).toBe(200);

    const refused = await submit(api, 'rpm 6');
    expect(refused.status).toBe(429);
    expect(refused.body.Response.Error.Code).toBe('RequestLimitExceeded');
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // An invalid body is still a request, but a refused one does not extend the wait.
    expect((await api.post('/tencent-vod/v1/aigc-image', { model_name: 'nope' })).status).toBe(429);
    expect((await t.relay.store.tasks.listTasks({ accountId, limit: 100 })).length).toBe(5);

    clock.advance(60_001);
    expect((await submit(api, 'next minute')).status).toBe(200);
  });

  it('a PATCH applies from the next request, and null removes the limit', async () => {
    const { t } = await blockingRelay();
    const { keyId, api } = await accountWithKey(t, 1_000_000);
    expect((await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { rpm: 2 })).body).toMatchObject({ id: keyId, rpm: 2 });
    expect((await submit(api)).status).toBe(200);
    expect((await submit(api)).status).toBe(200);
    expect((await submit(api)).status).toBe(429);
    expect((await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { rpm: null })).body.rpm).toBeNull();
    expect((await submit(api)).status).toBe(200);
  });
});

describe('per-key rpm and Idempotency-Key', () => {
  it('every submit counts, a replay too, and one past the rpm is refused before its key is reserved (nothing written)', async () => {
    const { t } = await blockingRelay(movableClock());
    const { api } = await accountWithKey(t, 1_000_000, { rpm: 2 });
    const first = await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY, { 'idempotency-key': 'rpm-replay' });
    expect(first.status).toBe(200);
    // A client looping on one Idempotency-Key: README says every authenticated submit counts against rpm.
    const replays = [];
    for (let i = 0; i < 10; i++) replays.push((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY, { 'idempotency-key': 'rpm-replay' })).status);
    expect(replays.filter((status) => status === 429).length).toBeGreaterThan(0);
    expect((await submit(api, 'after the replays')).status).toBe(429);

    // Past the rpm, a fresh key per request: refused before anything is written (no reservation made and dropped).
    const reserve = vi.spyOn(t.relay.store.idempotency, 'reserve');
    for (let i = 0; i < 5; i++) {
      const refused = await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt: `fresh ${i}` }, { 'idempotency-key': `fresh-${i}` });
      expect(refused.status).toBe(429);
      expect(refused.body.Response.Error.Code).toBe('RequestLimitExceeded');
    }
    expect(reserve).not.toHaveBeenCalled();
  });
});

describe('per-key max_concurrency', () => {
  it('50 concurrent submits with max_concurrency 2: exactly 2 accepted, 48 × 429 with Retry-After, nothing charged for them', async () => {
    const { t, provider } = await blockingRelay();
    const price = await promptPrice(t.admin);
    const { accountId, keyId, api } = await accountWithKey(t, 1_000_000, { max_concurrency: 2 });

    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => submit(api, `concurrent ${i}`)));
    const accepted = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(2);
    expect(refused).toHaveLength(48);
    for (const r of refused) {
      expect(r.body.Response.Error.Code).toBe('LimitExceeded.Concurrency');
      expect(r.body.Response.Error.Message).toMatch(/^This API key allows 2 tasks queued or running at once/);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}`)).body).toMatchObject({ held: 2 * price });
    expect(await ledgerRows(t, accountId)).toBe(1 + 2); // opening top-up + two holds

    // A finished task frees a slot.
    await provider.whenRunning(1);
    const first = [...provider.running.values()][0]!;
    first.succeed();
    await waitForTask(t.relay, first.job.taskId);
    expect((await submit(api)).status).toBe(200);
    expect((await submit(api)).status).toBe(429);

    // Removing the limit lets more in at once.
    await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { max_concurrency: null });
    expect((await submit(api)).status).toBe(200);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });
});

describe('per-key spend cap', () => {
  it('refuses with 402 once held + captured would pass the cap; released credits come back, captured ones do not', async () => {
    const { t, provider } = await blockingRelay();
    const price = await promptPrice(t.admin);
    const { keyId, api } = await accountWithKey(t, 1_000_000, { spend_cap: 2 * price + price / 2 });

    const a = await submit(api, 'a');
    const b = await submit(api, 'b');
    expect([a.status, b.status]).toEqual([200, 200]);
    const over = await submit(api, 'c');
    expect(over.status).toBe(402);
    expect(over.body.Response.Error.Code).toBe('FailedOperation.InsufficientBalance');
    expect(over.body.Response.Error.Message).toMatch(/spend cap/);
    expect((await t.admin.get(`/admin/v1/keys/${keyId}`)).body).toMatchObject({ spent: 2 * price, spend_cap: 2 * price + price / 2 });

    // b is queued behind a (provider concurrency 1): cancelling it releases its hold and its share of the cap.
    expect((await api.put(`/tencent-vod/v1/requests/${b.body.request_id}/cancel`)).status).toBe(202);
    await waitForTask(t.relay, b.body.request_id);
    const c = await submit(api, 'c again');
    expect(c.status).toBe(200);

    // Success keeps the credits counted.
    (await provider.whenStarted(a.body.request_id)).succeed();
    await waitForTask(t.relay, a.body.request_id);
    expect((await t.admin.get(`/admin/v1/keys/${keyId}`)).body.spent).toBe(2 * price);
    expect((await submit(api, 'd')).status).toBe(402);

    await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { spend_cap: 10 * price });
    expect((await submit(api, 'e')).status).toBe(200);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });
});

describe('keys', () => {
  it('a revoked key is 401 on its very next request', async () => {
    const { t } = await blockingRelay();
    const { keyId, key, api } = await accountWithKey(t, 1_000_000);
    const task = await submit(api);
    expect(task.status).toBe(200);
    expect((await t.admin.delete(`/admin/v1/keys/${keyId}`)).status).toBe(204);
    const after = await submit(api);
    expect(after.status).toBe(401);
    expect(after.body.Response.Error.Code).toBe('AuthFailure');
    expect((await apiClient(t.url, key).get(`/tencent-vod/v1/requests/${task.body.request_id}/status`)).status).toBe(401);
    const revokedAt = (await t.admin.get(`/admin/v1/keys/${keyId}`)).body.revoked_at;
    expect(revokedAt).toEqual(expect.any(String));
    // Revoking again is done already (it said "does not exist" of a key that does); the first time is kept.
    expect((await t.admin.delete(`/admin/v1/keys/${keyId}`)).status).toBe(204);
    expect((await t.admin.get(`/admin/v1/keys/${keyId}`)).body.revoked_at).toBe(revokedAt);
    expect((await t.admin.delete('/admin/v1/keys/key_doesnotexist')).status).toBe(404);
  });

  it('lists an account’s keys with their limits and never a secret', async () => {
    const { t } = await blockingRelay();
    const first = await accountWithKey(t, 100, { rpm: 7, max_concurrency: 3, spend_cap: 50 });
    const second = await t.admin.post(`/admin/v1/accounts/${first.accountId}/keys`, { name: 'second' });
    const list = await t.admin.get(`/admin/v1/accounts/${first.accountId}/keys`);
    expect(list.status).toBe(200);
    expect(list.body.keys).toEqual([
      expect.objectContaining({ id: first.keyId, rpm: 7, max_concurrency: 3, spend_cap: 50, spent: 0, revoked_at: null }),
      expect.objectContaining({ id: second.body.id, name: 'second', rpm: null, max_concurrency: null, spend_cap: null }),
    ]);
    const text = JSON.stringify(list.body);
    for (const secret of [first.key, second.body.key]) expect(text).not.toContain(secret.split('.')[1]);
    expect(text).not.toMatch(/hash/i);
    expect((await t.admin.get('/admin/v1/accounts/acct_nope/keys')).status).toBe(404);
  });

  it('creates a key from a POST with no body at all (every field is optional); a PATCH with no body is still a 400', async () => {
    const { t } = await blockingRelay();
    const { accountId, keyId } = await accountWithKey(t, 100);
    const created = await t.admin.post(`/admin/v1/accounts/${accountId}/keys`);
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ key: expect.stringMatching(/^ar_key_/), rpm: null, max_concurrency: null, spend_cap: null });
    expect((await apiClient(t.url, created.body.key).get('/tencent-vod/v1/requests/task_nope/status')).status).toBe(404);
    // A PATCH that changes nothing is more likely a client that lost its body than a request for a no-op.
    const patch = await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`);
    expect(patch.status).toBe(400);
    expect(patch.body.Response.Error.Message).toMatch(/^body/);
  });

  it('rejects bad limit values with 400 naming the field, and unknown keys with 404', async () => {
    const { t } = await blockingRelay();
    const { keyId } = await accountWithKey(t, 100);
    const zero = await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { rpm: 0 });
    expect(zero.status).toBe(400);
    expect(zero.body.Response.Error.Message).toMatch(/^rpm/);
    const negative = await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { spend_cap: -1 });
    expect(negative.status).toBe(400);
    expect(negative.body.Response.Error.Message).toMatch(/^spend_cap/);
    expect((await t.admin.request('PATCH', '/admin/v1/keys/key_nope', { rpm: 5 })).status).toBe(404);
  });
});

describe('the concurrency refusal', () => {
  it('counts in the right number', () => {
    const refused = (limit: number) => refusalError({ ok: false, reason: 'concurrency_limit', limit } as Parameters<typeof refusalError>[0], 10).message;
    expect(refused(1)).toMatch(/^This API key allows 1 task queued or running at once;/);
    expect(refused(3)).toMatch(/^This API key allows 3 tasks queued/);
  });
});
