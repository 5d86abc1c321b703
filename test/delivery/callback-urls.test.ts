import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type TestRelay } from '../helpers/relay';

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

describe('stored callback URLs', () => {
  it("a key's callback_url is set and cleared with PATCH, and shown on the key", async () => {
    const account = await t.admin.post('/admin/v1/accounts', { name: 'hooks', balance: 10 });
    const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
    const set = await t.admin.request('PATCH', `/admin/v1/keys/${key.body.id}`, { callback_url: 'https://hooks.example.com/relay' });
    expect(set.status).toBe(200);
    expect(set.body.callback_url).toBe('https://hooks.example.com/relay');
    const created = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { callback_url: 'https://hooks.example.com/k2' });
    expect(created.status).toBe(201);
    expect((await t.admin.get(`/admin/v1/keys/${created.body.id}`)).body.callback_url).toBe('https://hooks.example.com/k2');
    const cleared = await t.admin.request('PATCH', `/admin/v1/keys/${key.body.id}`, { callback_url: null });
    expect(cleared.body.callback_url).toBeNull();
  });

  it("an account's callback_url (and name) is changed and cleared with PATCH; other fields stay; unknown account 404; admin only", async () => {
    const account = await t.admin.post('/admin/v1/accounts', { name: 'acct-hooks', balance: 10, callback_url: 'https://hooks.example.com/a' });
    const path = `/admin/v1/accounts/${account.body.id}`;
    const set = await t.admin.request('PATCH', path, { callback_url: 'https://hooks.example.com/b' });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ name: 'acct-hooks', balance: 10, callback_url: 'https://hooks.example.com/b' });
    const renamed = await t.admin.request('PATCH', path, { name: 'renamed' });
    expect(renamed.body).toMatchObject({ name: 'renamed', callback_url: 'https://hooks.example.com/b' });
    const cleared = await t.admin.request('PATCH', path, { callback_url: null });
    expect(cleared.body.callback_url ?? null).toBeNull();
    expect((await t.admin.get(path)).body).toMatchObject({ name: 'renamed', balance: 10 });
    const unknown = await t.admin.request('PATCH', '/admin/v1/accounts/acct_nope', { name: 'x' });
    expect(unknown.status).toBe(404);
    const badField = await t.admin.request('PATCH', path, { balance: 1_000_000 }); // money moves only by top-ups and adjustments
    expect(badField.status).toBe(400);
    expect(badField.body.Response.Error.Message).toMatch(/^balance: unknown field/);
    const asClient = await t.api.request('PATCH', path, { name: 'mine now' });
    expect(asClient.status).toBe(401);
    expect((await t.admin.get(path)).body.name).toBe('renamed');
  });

  it.each([
    ['an account, changed', async () => {
      const account = await t.admin.post('/admin/v1/accounts', { name: 'p', balance: 10 });
      return t.admin.request('PATCH', `/admin/v1/accounts/${account.body.id}`, { callback_url: 'http://127.0.0.1/hook' });
    }],
    ['a key', async () => {
      const account = await t.admin.post('/admin/v1/accounts', { name: 'k', balance: 10 });
      const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
      return t.admin.request('PATCH', `/admin/v1/keys/${key.body.id}`, { callback_url: 'http://169.254.169.254/latest' });
    }],
    ['an account', async () => t.admin.post('/admin/v1/accounts', { name: 'a', callback_url: 'http://10.0.0.1/hook' })],
  ])('a private callback_url on %s is refused with 400 naming the field', async (_what, call) => {
    const res = await call();
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toMatch(/^callback_url: /);
  });

  it('a plain http callback_url to a public host is refused on an account and a key; https is taken', async () => {
    const plain = 'http://hooks.example.com/relay';
    const https = /^callback_url: refused: webhooks are sent to https URLs only/;
    const account = await t.admin.post('/admin/v1/accounts', { name: 'plain', callback_url: plain });
    expect(account.status).toBe(400);
    expect(account.body.Response.Error.Message).toMatch(https);
    const ok = await t.admin.post('/admin/v1/accounts', { name: 'secure', callback_url: 'https://hooks.example.com/relay' });
    expect(ok.status).toBe(201);
    const key = await t.admin.post(`/admin/v1/accounts/${ok.body.id}/keys`, { callback_url: plain });
    expect(key.status).toBe(400);
    expect(key.body.Response.Error.Message).toMatch(https);
  });
});
