import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { movableClock } from '../helpers/clock';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope } from '../hostile/envelope';
import { finishedTaskWithFile } from './task-with-file';

/**
 * A key's `expires_at`: set when it is created or by a PATCH (null removes it), shown in its view, and from then on
 * the key is refused 401 as a revoked one is. The relay's clock is a test's to move, so "then" comes without waiting.
 */
const HOUR = 3_600_000;
const clock = movableClock();
let t: TestRelay;
let accountId: string;
beforeAll(async () => {
  t = await startTestRelay({ overrides: { clock } });
  accountId = (await t.admin.post('/admin/v1/accounts', { name: 'expiring', balance: 1_000_000 })).body.id;
});
afterAll(() => t.close());

const inAnHour = () => new Date(clock.now() + HOUR).toISOString();
const patch = (keyId: string, body: unknown, token = t.adminToken) => apiClient(t.url, token).request('PATCH', `/admin/v1/keys/${keyId}`, body);
const newKey = async (body: Record<string, unknown> = {}) => {
  const res = await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, body);
  expect(res.status, res.text).toBe(201);
  return { id: res.body.id as string, view: res.body, api: apiClient(t.url, res.body.key as string) };
};
const refusedNaming = (res: { status: number; text: string }, field: string) => {
  const body = expectEnvelope(res.status, res.text);
  expect(res.status, res.text).toBe(400);
  expect(body.Response.Error.Code).toBe('InvalidParameterValue');
  expect(body.Response.Error.Message).toMatch(new RegExp(`^${field}: `));
};
const expectExpired = (res: { status: number; body: any }) => {
  expect(res.status).toBe(401);
  expect(res.body.Response.Error).toEqual({ Code: 'AuthFailure', Message: 'Authorization: this API key expired' });
};

describe('key expiry on the admin API', () => {
  it('a key created with expires_at shows it (ISO, UTC) in its view, in GET and in the list; one without shows null', async () => {
    const at = Math.floor((clock.now() + 2 * HOUR) / 1000) * 1000;
    const withOffset = new Date(at + 2 * HOUR).toISOString().replace('Z', '+02:00'); // the same instant, written at +02:00
    const { id, view } = await newKey({ name: 'ci', expires_at: withOffset });
    expect(view).toMatchObject({ name: 'ci', expires_at: new Date(at).toISOString(), revoked_at: null });
    expect((await t.admin.get(`/admin/v1/keys/${id}`)).body.expires_at).toBe(new Date(at).toISOString());
    const listed = (await t.admin.get(`/admin/v1/accounts/${accountId}/keys`)).body.keys.find((k: { id: string }) => k.id === id);
    expect(listed.expires_at).toBe(new Date(at).toISOString());
    expect((await newKey()).view.expires_at).toBeNull();
  });

  it('PATCH sets, moves and removes (null) the expiry, and leaves it when absent', async () => {
    const { id } = await newKey();
    const at = inAnHour();
    expect((await patch(id, { expires_at: at })).body).toMatchObject({ id, expires_at: at });
    expect((await patch(id, { rpm: 10 })).body).toMatchObject({ rpm: 10, expires_at: at });
    expect((await patch(id, { expires_at: null })).body.expires_at).toBeNull();
  });

  it.each([
    ['a past time', () => new Date(clock.now() - 1000).toISOString()],
    ['now, to the millisecond', () => new Date(clock.now()).toISOString()],
    ['a date without a time', () => '2099-01-01'],
    ['a time without a zone', () => '2099-01-01T00:00:00'],
    ['an impossible day', () => '2099-02-30T00:00:00Z'],
    ['an offset without its colon', () => '2099-01-01T00:00:00+0200'],
    ['words', () => 'tomorrow'],
    ['a number', () => 4_102_444_800_000],
  ])('%s as expires_at: 400 InvalidParameterValue naming expires_at on create and on PATCH; nothing written', async (_name, value) => {
    const before = (await t.admin.get(`/admin/v1/accounts/${accountId}/keys`)).body.keys.length;
    refusedNaming(await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { expires_at: value() }), 'expires_at');
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}/keys`)).body.keys).toHaveLength(before);

    const { id } = await newKey({ expires_at: inAnHour() });
    const kept = (await t.admin.get(`/admin/v1/keys/${id}`)).body.expires_at;
    refusedNaming(await patch(id, { expires_at: value() }), 'expires_at');
    expect((await t.admin.get(`/admin/v1/keys/${id}`)).body.expires_at).toBe(kept);
  });

  it('setting an expiry needs the admin token: none, or an API key, is 401 and changes nothing', async () => {
    const { id, api } = await newKey();
    for (const token of [undefined, t.devKey]) {
      const client = apiClient(t.url, token);
      const created = await client.post(`/admin/v1/accounts/${accountId}/keys`, { expires_at: inAnHour() });
      expect(created.status).toBe(401);
      expect(created.body.Response.Error.Code).toBe('AuthFailure');
      expect((await client.request('PATCH', `/admin/v1/keys/${id}`, { expires_at: inAnHour() })).status).toBe(401);
    }
    expect((await t.admin.get(`/admin/v1/keys/${id}`)).body.expires_at).toBeNull();
    expect((await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).status).toBe(200);
  });
});

describe('an expired key', () => {
  it('works until its expires_at, then is refused 401 on submit, status, result and download; a later expiry (or none) lets it in again', async () => {
    const { id, view, api } = await newKey({ expires_at: inAnHour() });
    const { taskId, fileId } = await finishedTaskWithFile(t, api);

    // The clock runs on in real time, however long finishing the task took (seconds on a loaded machine): move it
    // to points set by the key's own expiry, not by when the key was made. The exact boundary (expires_at <= now) is
    // test/app/auth.test.ts's; a request's own latency must not decide which side of it this one lands.
    const expiresAt = Date.parse(view.expires_at);
    clock.advance(expiresAt - 60_000 - clock.now()); // a minute before its expires_at
    expect((await api.get(`/tencent-vod/v1/requests/${taskId}/status`)).status).toBe(200);
    clock.advance(expiresAt - clock.now()); // its expires_at, or just after: expired

    expectExpired(await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY));
    expectExpired(await api.get(`/tencent-vod/v1/requests/${taskId}/status`));
    expectExpired(await api.get(`/tencent-vod/v1/requests/${taskId}`));
    expectExpired(await api.get(`/tencent-vod/v1/files/${fileId}`));
    expect((await t.relay.store.tasks.listTasks({ accountId, limit: 1000 })).filter((task) => task.keyId === id)).toHaveLength(1);

    expect((await patch(id, { expires_at: inAnHour() })).status).toBe(200);
    expect((await api.get(`/tencent-vod/v1/requests/${taskId}/status`)).status).toBe(200);
    clock.advance(HOUR);
    expectExpired(await api.get(`/tencent-vod/v1/requests/${taskId}/status`));
    expect((await patch(id, { expires_at: null })).status).toBe(200);
    expect((await api.get(`/tencent-vod/v1/requests/${taskId}/status`)).status).toBe(200);
  });

  it('checks in order: a wrong secret is an unknown key, then revoked, then expired', async () => {
    const { id, api } = await newKey({ expires_at: inAnHour() });
    const plaintext = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key as string;
    clock.advance(HOUR);
    const wrongSecret = apiClient(t.url, `ar_${id}.${plaintext.split('.')[1]}`);
    expect((await wrongSecret.get('/tencent-vod/v1/requests/nope/status')).body.Response.Error.Message).toBe('Authorization: unknown API key');
    expectExpired(await api.get('/tencent-vod/v1/requests/nope/status'));
    expect((await t.admin.delete(`/admin/v1/keys/${id}`)).status).toBe(204);
    expect((await api.get('/tencent-vod/v1/requests/nope/status')).body.Response.Error.Message).toBe('Authorization: this API key was revoked');
    // A revoked key stays revoked, whatever its expiry.
    expect((await patch(id, { expires_at: null })).status).toBe(200);
    expect((await api.get('/tencent-vod/v1/requests/nope/status')).status).toBe(401);
  });
});
