import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { movableClock } from '../helpers/clock';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope } from '../hostile/envelope';
import { finishedTaskWithFile } from './task-with-file';

/**
 * `PATCH /admin/v1/accounts/{id} {suspended}`: true suspends the account (its view shows `suspended_at`), and every
 * key of it is refused 401 until `suspended: false` resumes it. The relay's clock is the test's, so times are exact.
 */
const clock = movableClock();
let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay({ overrides: { clock } });
});
afterAll(() => t.close());

const SUSPENDED = { Code: 'AuthFailure', Message: 'Authorization: this account is suspended' };
const patch = (accountId: string, body: unknown, token: string | undefined = t.adminToken) =>
  apiClient(t.url, token).request('PATCH', `/admin/v1/accounts/${accountId}`, body);
const accountOf = async (accountId: string) => (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body;
const newAccount = async (name = 'suspendable') => {
  const account = await t.admin.post('/admin/v1/accounts', { name, balance: 1_000_000 });
  expect(account.status, account.text).toBe(201);
  const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
  expect(key.status, key.text).toBe(201);
  return { accountId: account.body.id as string, keyId: key.body.id as string, api: apiClient(t.url, key.body.key as string) };
};
const expectSuspended = (res: { status: number; body: any; headers?: unknown }) => {
  expect(res.status).toBe(401);
  expect(res.body.Response.Error).toEqual(SUSPENDED);
};

describe('suspending an account on the admin API', () => {
  it('a new account shows suspended_at null; suspend sets it (now), again keeps the first time, resume clears it', async () => {
    const { accountId } = await newAccount();
    expect((await accountOf(accountId)).suspended_at).toBeNull();

    const before = clock.now();
    const suspended = await patch(accountId, { suspended: true });
    const after = clock.now();
    expect(suspended.status, suspended.text).toBe(200);
    expect(suspended.body).toMatchObject({ id: accountId, name: 'suspendable' });
    const at = suspended.body.suspended_at as string;
    expect(Date.parse(at)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(at)).toBeLessThanOrEqual(after);
    expect((await accountOf(accountId)).suspended_at).toBe(at);
    const listed = (await t.admin.get('/admin/v1/accounts?limit=1000')).body.accounts.find((a: { id: string }) => a.id === accountId);
    expect(listed.suspended_at).toBe(at);

    clock.advance(60_000);
    expect((await patch(accountId, { suspended: true })).body.suspended_at).toBe(at);
    expect((await patch(accountId, { name: 'renamed' })).body).toMatchObject({ name: 'renamed', suspended_at: at });
    expect((await patch(accountId, { suspended: false })).body).toMatchObject({ name: 'renamed', suspended_at: null });
    expect((await patch(accountId, { suspended: false })).body.suspended_at).toBeNull();
    // A new suspension takes its own time (the clock was moved a minute on).
    expect(Date.parse((await patch(accountId, { suspended: true })).body.suspended_at)).toBeGreaterThanOrEqual(Date.parse(at) + 60_000);
  });

  it.each([
    ['a string', 'yes'],
    ['a number', 1],
    ['null', null],
    ['an object', {}],
  ])('suspended as %s: 400 naming suspended, nothing changed', async (_name, value) => {
    const { accountId, api } = await newAccount();
    const res = await patch(accountId, { suspended: value });
    const body = expectEnvelope(res.status, res.text);
    expect(res.status, res.text).toBe(400);
    expect(body.Response.Error).toEqual({ Code: 'InvalidParameterValue', Message: 'suspended: expected true or false' });
    expect((await accountOf(accountId)).suspended_at).toBeNull();
    expect((await api.get('/tencent-vod/v1/requests/nope/status')).status).toBe(404);
  });

  it('an unknown account is 404 ResourceNotFound', async () => {
    const res = await patch('acct_doesnotexist', { suspended: true });
    expect(res.status).toBe(404);
    expect(res.body.Response.Error.Code).toBe('ResourceNotFound');
  });

  it('needs the admin token: none, or an API key (even the account’s own), is 401 and changes nothing', async () => {
    const { accountId, api } = await newAccount();
    const ownKey = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key as string;
    for (const token of [undefined, t.devKey, ownKey]) {
      const res = await apiClient(t.url, token).request('PATCH', `/admin/v1/accounts/${accountId}`, { suspended: true });
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
    }
    expect((await accountOf(accountId)).suspended_at).toBeNull();
    expect((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).status).toBe(200);
  });
});

describe('a suspended account', () => {
  it('every key of it is refused 401 on submit, status, result and download; resuming lets them in again', async () => {
    const { accountId, keyId, api } = await newAccount();
    const second = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key as string);
    const { taskId, fileId } = await finishedTaskWithFile(t, api);

    expect((await patch(accountId, { suspended: true })).status).toBe(200);
    expectSuspended(await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY));
    expectSuspended(await api.get(`/tencent-vod/v1/requests/${taskId}/status`));
    expectSuspended(await api.get(`/tencent-vod/v1/requests/${taskId}`));
    expectSuspended(await api.get(`/tencent-vod/v1/files/${fileId}`));
    expectSuspended(await second.get(`/tencent-vod/v1/requests/${taskId}/status`));
    // A key made while suspended is refused too; other accounts are not touched.
    const made = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key as string);
    expectSuspended(await made.get('/tencent-vod/v1/requests/nope/status'));
    expect((await t.api.get('/tencent-vod/v1/requests/nope/status')).status).toBe(404);
    expect((await t.relay.store.tasks.listTasks({ accountId, limit: 1000 })).filter((task) => task.keyId === keyId)).toHaveLength(1);

    expect((await patch(accountId, { suspended: false })).status).toBe(200);
    expect((await api.get(`/tencent-vod/v1/requests/${taskId}/status`)).status).toBe(200);
    expect((await made.get('/tencent-vod/v1/requests/nope/status')).status).toBe(404);
    expect((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).status).toBe(200);
  });

  it('the operator still manages it: top-ups, adjustments, keys and the ledger work while it is suspended', async () => {
    const { accountId, keyId } = await newAccount();
    expect((await patch(accountId, { suspended: true })).status).toBe(200);
    expect(await t.admin.post(`/admin/v1/accounts/${accountId}/top-ups`, { amount: 500, reference: 'while suspended' })).toMatchObject({
      status: 201,
      body: { balance: 1_000_500 },
    });
    expect(await t.admin.post(`/admin/v1/accounts/${accountId}/adjustments`, { amount: -100, reason: 'correction' })).toMatchObject({
      status: 201,
      body: { balance: 1_000_400 },
    });
    expect((await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { rpm: 5 })).body.rpm).toBe(5);
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}/ledger`)).body.entries[0]).toMatchObject({ kind: 'adjust', amount: -100 });
    expect(await accountOf(accountId)).toMatchObject({ balance: 1_000_400, suspended_at: expect.any(String) });
  });

  it('checks in order: a wrong secret is an unknown key, then revoked, then expired, then suspended', async () => {
    const { accountId, keyId, api } = await newAccount();
    const plaintext = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key as string;
    const expiring = await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { expires_at: new Date(clock.now() + 60_000).toISOString() });
    const expiringApi = apiClient(t.url, expiring.body.key as string);
    expect((await patch(accountId, { suspended: true })).status).toBe(200);
    const message = async (client: ReturnType<typeof apiClient>) => (await client.get('/tencent-vod/v1/requests/nope/status')).body.Response.Error.Message;

    expect(await message(apiClient(t.url, `ar_${keyId}.${plaintext.split('.')[1]}`))).toBe('Authorization: unknown API key');
    expect(await message(api)).toBe(SUSPENDED.Message);
    clock.advance(60_000);
    expect(await message(expiringApi)).toBe('Authorization: this API key expired');
    expect((await t.admin.delete(`/admin/v1/keys/${keyId}`)).status).toBe(204);
    expect(await message(api)).toBe('Authorization: this API key was revoked');
    // Resuming lifts the suspension only.
    expect((await patch(accountId, { suspended: false })).status).toBe(200);
    expect(await message(api)).toBe('Authorization: this API key was revoked');
    expect(await message(expiringApi)).toBe('Authorization: this API key expired');
  });

  it('is read with the key: a request makes one account-store call (getKey), suspended or not', async () => {
    const { accountId, api } = await newAccount();
    const accounts = t.relay.store.accounts as unknown as Record<string, unknown>;
    const originals = Object.fromEntries(Object.entries(accounts).filter(([, f]) => typeof f === 'function'));
    const calls: string[] = [];
    for (const [name, f] of Object.entries(originals)) {
      accounts[name] = (...args: unknown[]) => {
        calls.push(name);
        return (f as (...a: unknown[]) => unknown)(...args);
      };
    }
    try {
      expect((await api.get('/tencent-vod/v1/requests/nope/status')).status).toBe(404);
      expect(calls).toEqual(['getKey']);
      await t.relay.store.accounts.updateAccount(accountId, { suspendedAt: clock.now() });
      calls.length = 0;
      expectSuspended(await api.get('/tencent-vod/v1/requests/nope/status'));
      expect(calls).toEqual(['getKey']);
    } finally {
      Object.assign(accounts, originals);
    }
  });
});
