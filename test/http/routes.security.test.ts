import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { itRejectsBadApiKeys } from '../helpers/security';

let t: TestRelay;
let taskId: string;
let otherApi: ReturnType<typeof apiClient>;
beforeAll(async () => {
  t = await startTestRelay();
  const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  taskId = res.body.request_id;
  await waitForTask(t.relay, taskId);
  const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 1000 });
  otherApi = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key);
});
afterAll(() => t.close());

const customerRoutes = () => [
  { method: 'POST', path: '/tencent-vod/v1/aigc-image', body: PROMPT_BODY },
  { method: 'GET', path: `/tencent-vod/v1/requests/${taskId}/status` },
  { method: 'GET', path: `/tencent-vod/v1/requests/${taskId}` },
  { method: 'PUT', path: `/tencent-vod/v1/requests/${taskId}/cancel` },
  { method: 'GET', path: `/tencent-vod/v1/query/${taskId}` },
  { method: 'GET', path: '/tencent-vod/v1/account' },
  { method: 'GET', path: '/tencent-vod/v1/account/ledger' },
  { method: 'GET', path: '/tencent-vod/v1/prices' },
  { method: 'GET', path: '/tencent-vod/v1/requests' },
];

describe.each([0, 1, 2, 3, 4, 5, 6, 7, 8])('customer route #%i rejects bad keys', (index) => {
  itRejectsBadApiKeys(() => t, () => customerRoutes()[index]!);
});

describe('tenant isolation', () => {
  it.each(['/status', '', '/cancel'])('another account gets 404 for requests/{id}%s', async (suffix) => {
    const res = suffix === '/cancel'
      ? await otherApi.put(`/tencent-vod/v1/requests/${taskId}${suffix}`)
      : await otherApi.get(`/tencent-vod/v1/requests/${taskId}${suffix}`);
    expect(res.status).toBe(404);
    expect(res.body.Response.Error.Code).toBe('ResourceNotFound');
  });

  it('another account gets 404 for the Tencent query view', async () => {
    expect((await otherApi.get(`/tencent-vod/v1/query/${taskId}`)).status).toBe(404);
  });

  it("another account cannot download an image with its key (the owner can)", async () => {
    const result = await t.api.get(`/tencent-vod/v1/requests/${taskId}`);
    const fileId = result.body.images[0].file_id;
    expect((await otherApi.get(`/tencent-vod/v1/files/${fileId}`)).status).toBe(404);
    expect((await t.api.get(`/tencent-vod/v1/files/${fileId}`)).status).toBe(200);
  });

  it('a tampered file signature is refused with 403', async () => {
    const result = await t.api.get(`/tencent-vod/v1/requests/${taskId}`);
    const url = new URL(result.body.images[0].url);
    url.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 1));
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).Response.Error.Code).toBe('AuthFailure.SignatureFailure');
  });
});

describe('admin routes', () => {
  it.each([
    ['no token', undefined],
    ['an API key', () => t.devKey],
    ['a wrong token', () => 'x'.repeat(32)],
  ])('401 with %s', async (_name, token) => {
    const client = apiClient(t.url, token?.());
    const accountId = (await t.relay.store.accounts.getKey(t.devKey.slice(3).split('.')[0]!))!.accountId;
    const before = (await t.relay.store.accounts.getAccount(accountId))!.webhookSecret;
    for (const res of [
      await client.get('/admin/v1/prices'),
      await client.post('/admin/v1/accounts', { name: 'x' }),
      await client.post(`/admin/v1/accounts/${accountId}/webhook-secret`),
    ]) {
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
    }
    expect((await t.relay.store.accounts.getAccount(accountId))!.webhookSecret).toBe(before);
  });

  it('rotates a webhook secret with no body (the replaced one kept a day); 400 naming the field, 404 for no such account', async () => {
    const account = await t.admin.post('/admin/v1/accounts', { name: 'rotating' });
    const rotated = await t.admin.post(`/admin/v1/accounts/${account.body.id}/webhook-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ id: account.body.id, webhook_secret: expect.stringMatching(/^whsec_/) });
    expect(rotated.body.webhook_secret).not.toBe(account.body.webhook_secret);
    expect(Date.parse(rotated.body.previous_webhook_secret_until)).toBeGreaterThan(Date.now());
    const tooLong = await t.admin.post(`/admin/v1/accounts/${account.body.id}/webhook-secret`, { previous_valid_seconds: 8 * 24 * 3600 });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.Response.Error.Message).toMatch(/^previous_valid_seconds: /);
    const unknown = await t.admin.post('/admin/v1/accounts/acct_nope/webhook-secret', { previous_valid_seconds: 0 });
    expect(unknown.status).toBe(404);
    expect((await t.admin.get(`/admin/v1/accounts/${account.body.id}`)).body.webhook_secret).toBe(rotated.body.webhook_secret);
  });

  it('creates an account and a key; the key works and is stored only as a hash', async () => {
    const account = await t.admin.post('/admin/v1/accounts', { name: 'acme', balance: 500 });
    expect(account.status).toBe(201);
    expect(account.body).toMatchObject({ name: 'acme', balance: 500, held: 0 });
    const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { name: 'ci', rpm: 60 });
    expect(key.status).toBe(201);
    expect(key.body.key).toMatch(/^ar_key_/);
    const stored = await t.relay.store.accounts.getKey(key.body.id);
    expect(JSON.stringify(stored)).not.toContain(key.body.key.split('.')[1]);
    const submit = await apiClient(t.url, key.body.key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(submit.status).toBe(200);
    const topUp = await t.admin.post(`/admin/v1/accounts/${account.body.id}/top-ups`, { amount: 100 });
    expect(topUp).toMatchObject({ status: 201, body: { balance: 600 } });
  });

  it('rejects bad admin bodies with 400 naming the field', async () => {
    const res = await t.admin.post('/admin/v1/accounts', { name: 'x', balance: -5 });
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toMatch(/^balance: /);
    const unknown = await t.admin.post('/admin/v1/accounts', { name: 'x', colour: 1 });
    expect(unknown.status).toBe(400);
    expect(unknown.body.Response.Error.Message).toMatch(/^colour: unknown field/);
    const missing = await t.admin.post('/admin/v1/accounts', {});
    expect(missing.body.Response.Error).toMatchObject({ Code: 'MissingParameter' });
    expect(missing.body.Response.Error.Message).toMatch(/^name: /);
  });
});
