import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, type ApiResponse } from '../helpers/api';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * `GET /admin/v1/accounts/{id}/ledger` and `GET /admin/v1/accounts` page like `/admin/v1/tasks`: `?limit=&cursor=`,
 * the answer's `next_cursor` (null on the last page). Before, both stopped at `limit` (at most 1,000): an account with
 * more ledger rows than that had rows, its opening top-up among them, that no call could read.
 */
let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

/** Every page of a list, following next_cursor until it is null. */
async function allPages(client: ApiClient, path: string, field: string, limit: number) {
  const pages: Array<Array<Record<string, any>>> = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const res: ApiResponse = await client.get(`${path}${sep}limit=${limit}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
    expect(res.status).toBe(200);
    pages.push(res.body[field]);
    cursor = res.body.next_cursor;
    expect(pages.length).toBeLessThan(20); // a cursor that does not move would loop for ever
  } while (cursor !== null);
  return pages;
}

describe('GET /admin/v1/accounts/{id}/ledger', () => {
  it('pages past 1,000 rows, newest first: every row exactly once, down to the opening top-up', async () => {
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'busy', balance: 5 })).body;
    // 1,001 rows (the opening balance and 1,000 top-ups), written through the store: 1,000 HTTP calls add nothing.
    for (let i = 1; i <= 1000; i++) await t.relay.store.accounts.topUp(account.id, 1, `inv-${i}`, Date.now());
    const pages = await allPages(t.admin, `/admin/v1/accounts/${account.id}/ledger`, 'entries', 1000);
    expect(pages.map((p) => p.length)).toEqual([1000, 1]);
    const rows = pages.flat();
    const ids = rows.map((e) => e.id);
    expect(new Set(ids).size).toBe(1001);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(rows[0]).toMatchObject({ kind: 'topup', amount: 1, reference: 'inv-1000' });
    expect(rows[1000]).toMatchObject({ kind: 'topup', amount: 5, reference: 'opening balance' });
  });

  it('small pages: next_cursor on every full page, null on the last; the pages add up to the whole ledger', async () => {
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'small', balance: 10 })).body;
    for (let i = 1; i <= 9; i++) expect((await t.admin.post(`/admin/v1/accounts/${account.id}/top-ups`, { amount: i })).status).toBe(201);
    const whole = (await t.admin.get(`/admin/v1/accounts/${account.id}/ledger`)).body;
    expect(whole.entries).toHaveLength(10);
    expect(whole.next_cursor).toBeNull();
    const pages = await allPages(t.admin, `/admin/v1/accounts/${account.id}/ledger`, 'entries', 4);
    expect(pages.map((p) => p.length)).toEqual([4, 4, 2]);
    expect(pages.flat()).toEqual(whole.entries);
    // A page that is exactly full says there may be more; the next one is then empty, with a null cursor.
    const exact = await allPages(t.admin, `/admin/v1/accounts/${account.id}/ledger`, 'entries', 5);
    expect(exact.map((p) => p.length)).toEqual([5, 5, 0]);
  });

  it('a bad cursor or limit is a 400 naming it; an unknown account is a 404; unknown parameters are ignored, as on /admin/v1/tasks', async () => {
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'bad-cursor', balance: 10 })).body;
    for (const query of ['cursor=abc', 'cursor=0', 'cursor=-1', 'cursor=', 'limit=0', 'limit=1001']) {
      const res = await t.admin.get(`/admin/v1/accounts/${account.id}/ledger?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(new RegExp(`^${query.split('=')[0]}: `));
    }
    const missing = await t.admin.get('/admin/v1/accounts/acct_nope/ledger?cursor=5');
    expect(missing.status).toBe(404);
    expect(missing.body.Response.Error.Code).toBe('ResourceNotFound');
    const tasks = await t.admin.get('/admin/v1/tasks?offset=5');
    const ledger = await t.admin.get(`/admin/v1/accounts/${account.id}/ledger?offset=5`);
    expect([tasks.status, ledger.status]).toEqual([200, 200]);
    expect(ledger.body.entries).toHaveLength(1);
  });

  it('401 without the admin token, with an API key (even the account’s own) or a wrong token', async () => {
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'private', balance: 10 })).body;
    const ownKey = (await t.admin.post(`/admin/v1/accounts/${account.id}/keys`, {})).body.key;
    for (const token of [undefined, t.devKey, ownKey, 'x'.repeat(32)]) {
      const res = await apiClient(t.url, token).get(`/admin/v1/accounts/${account.id}/ledger?cursor=1`);
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
      expect(res.text).not.toContain('opening balance');
    }
  });
});

describe('GET /admin/v1/accounts', () => {
  it('pages newest first: every account exactly once, in the order of one big page', async () => {
    for (let i = 0; i < 7; i++) expect((await t.admin.post('/admin/v1/accounts', { name: `listed-${i}` })).status).toBe(201);
    const whole = (await t.admin.get('/admin/v1/accounts?limit=1000')).body;
    expect(whole.next_cursor).toBeNull();
    expect(whole.accounts.length).toBeGreaterThanOrEqual(8);
    const pages = await allPages(t.admin, '/admin/v1/accounts', 'accounts', 3);
    expect(pages.slice(0, -1).every((p) => p.length === 3)).toBe(true);
    expect(pages.flat()).toEqual(whole.accounts);
    // Newest first (accounts made in the same millisecond in id order, so only the set is certain here).
    expect(whole.accounts.slice(0, 7).map((a: { name: string }) => a.name).sort()).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `listed-${i}`));
  });

  it('a cursor that names no account, or a bad limit, is a 400 naming it', async () => {
    for (const query of ['cursor=acct_nope', 'cursor=', `cursor=${'a'.repeat(65)}`, 'limit=0', 'limit=x']) {
      const res = await t.admin.get(`/admin/v1/accounts?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(new RegExp(`^${query.split('=')[0]}: `));
    }
  });

  it('401 without the admin token or with an API key', async () => {
    for (const token of [undefined, t.devKey, 'x'.repeat(32)]) {
      const res = await apiClient(t.url, token).get('/admin/v1/accounts?limit=1');
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
    }
  });
});
