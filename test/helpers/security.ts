import { expect, it } from 'vitest';
import { issueKey } from '../../src/app/key-secrets';
import type { TestRelay } from './relay';

export interface RouteUnderTest {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
}

/**
 * The standard authentication cases, run against any route given only how to call it (Unkey's common-tests idea):
 * no header, wrong scheme, empty bearer, malformed key, well-formed unknown key, revoked key, expired key, a key of a
 * suspended account, and the admin token used as an API key. Each must be 401 in the envelope, before the body is even looked at.
 */
export function itRejectsBadApiKeys(relay: () => TestRelay, route: () => RouteUnderTest): void {
  const cases: Array<[string, (t: TestRelay) => Promise<string | undefined>]> = [
    ['no Authorization header', async () => undefined],
    ['a Basic scheme', async () => 'Basic dXNlcjpwYXNz'],
    ['an empty bearer', async () => 'Bearer '],
    ['a malformed key', async () => 'Bearer not-a-key'],
    ['a well-formed unknown key', async () => `Bearer ${issueKey().plaintext}`],
    ['the right key id with a wrong secret', async (t) => `Bearer ${t.devKey.slice(0, -4)}AAAA`],
    ['the admin token', async (t) => `Bearer ${t.adminToken}`],
    [
      'a revoked key',
      async (t) => {
        const account = await t.admin.post('/admin/v1/accounts', { name: 'revoked', balance: 1000 });
        const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
        expect((await t.admin.delete(`/admin/v1/keys/${key.body.id}`)).status).toBe(204);
        return `Bearer ${key.body.key}`;
      },
    ],
    [
      'an expired key',
      async (t) => {
        // Written to the store as it is once its expires_at has passed (the API takes only future ones).
        const account = await t.admin.post('/admin/v1/accounts', { name: 'expired', balance: 1000 });
        const issued = issueKey();
        await t.relay.store.accounts.createKey({ id: issued.keyId, accountId: account.body.id, secretHash: issued.secretHash, createdAt: 1, expiresAt: 2 });
        return `Bearer ${issued.plaintext}`;
      },
    ],
    [
      'a key of a suspended account',
      async (t) => {
        const account = await t.admin.post('/admin/v1/accounts', { name: 'suspended', balance: 1000 });
        const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
        expect((await t.admin.request('PATCH', `/admin/v1/accounts/${account.body.id}`, { suspended: true })).status).toBe(200);
        return `Bearer ${key.body.key}`;
      },
    ],
  ];
  it.each(cases)('401 for %s', async (_name, header) => {
    const t = relay();
    const { method, path, body } = route();
    const authorization = await header(t);
    const res = await t.relay.app.inject({
      method: method as 'GET',
      url: path,
      headers: { ...(authorization !== undefined ? { authorization } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().Response.Error.Code).toBe('AuthFailure');
    expect(res.json().Response.Error.Message).toMatch(/^Authorization: /);
    // RFC 9110: a 401 names the scheme it wants.
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });
}
