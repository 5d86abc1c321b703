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

  it.each([
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
