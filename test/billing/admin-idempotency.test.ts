import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { body, devAccountId, SUBMIT } from '../delivery/fixtures';

/**
 * `Idempotency-Key` on the operator's balance changes (`POST …/top-ups`, `POST …/adjustments`), with the submit
 * route's semantics: a billing system that retries after a timeout must not credit twice. The answer is stored in the
 * transaction that moves the money. `reference` stays free to repeat: two real top-ups may share an invoice.
 */
let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

const topUps = (id: string) => `/admin/v1/accounts/${id}/top-ups`;
const adjustments = (id: string) => `/admin/v1/accounts/${id}/adjustments`;
const newAccount = async (balance = 0): Promise<string> => (await t.admin.post('/admin/v1/accounts', { name: 'billing', balance })).body.id;
const balanceOf = async (id: string): Promise<number> => (await t.admin.get(`/admin/v1/accounts/${id}`)).body.balance;
const ledgerOf = async (id: string) => (await t.admin.get(`/admin/v1/accounts/${id}/ledger`)).body.entries as Array<Record<string, unknown>>;

describe('POST /admin/v1/accounts/{id}/top-ups with Idempotency-Key', () => {
  it('a retry with the same key and body credits once and replays the first answer, byte for byte', async () => {
    const id = await newAccount();
    const headers = { 'idempotency-key': 'inv-1-attempt' };
    const first = await t.admin.post(topUps(id), { amount: 50, reference: 'inv-1' }, headers);
    expect(first).toMatchObject({ status: 201, body: { balance: 50 } });
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    // The same JSON, keys in another order, is the same request.
    for (const payload of [{ amount: 50, reference: 'inv-1' }, '{"reference":"inv-1","amount":50}']) {
      const again = await t.admin.post(topUps(id), payload, headers);
      expect(again.status).toBe(201);
      expect(again.text).toBe(first.text);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    }
    expect(await balanceOf(id)).toBe(50);
    expect(await ledgerOf(id)).toEqual([expect.objectContaining({ kind: 'topup', amount: 50, reference: 'inv-1' })]);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('10 concurrent sends of one key: one credit, ten identical answers', async () => {
    const id = await newAccount();
    const sends = await Promise.all(
      Array.from({ length: 10 }, () => t.admin.post(topUps(id), { amount: 7, reference: 'inv-c' }, { 'idempotency-key': 'concurrent' })),
    );
    expect(sends.map((r) => [r.status, r.text])).toEqual(Array.from({ length: 10 }, () => [201, '{"balance":7}']));
    expect(sends.filter((r) => r.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    expect(await ledgerOf(id)).toHaveLength(1);
  });

  it('without a key two equal top-ups are two top-ups (a reference may repeat); a new key is a new top-up', async () => {
    const id = await newAccount();
    await t.admin.post(topUps(id), { amount: 5, reference: 'inv-2' });
    await t.admin.post(topUps(id), { amount: 5, reference: 'inv-2' });
    await t.admin.post(topUps(id), { amount: 5, reference: 'inv-2' }, { 'idempotency-key': 'a' });
    await t.admin.post(topUps(id), { amount: 5, reference: 'inv-2' }, { 'idempotency-key': 'b' });
    expect(await balanceOf(id)).toBe(20);
  });

  it('the same key with another body (or on the adjustments route) is 422 IdempotencyKeyReused; nothing moves', async () => {
    const id = await newAccount();
    const headers = { 'idempotency-key': 'k-1' };
    expect((await t.admin.post(topUps(id), { amount: 50, reference: 'inv-1' }, headers)).status).toBe(201);
    for (const [path, payload] of [
      [topUps(id), { amount: 60, reference: 'inv-1' }],
      [topUps(id), { amount: 50 }],
      [adjustments(id), { amount: 50, reason: 'inv-1' }],
    ] as const) {
      const res = await t.admin.post(path, payload, headers);
      expect(res.status).toBe(422);
      expect(res.body.Response.Error.Code).toBe('FailedOperation.IdempotencyKeyReused');
      expect(res.body.Response.Error.Message).toMatch(/^Idempotency-Key: /);
    }
    expect(await balanceOf(id)).toBe(50);
    expect(await ledgerOf(id)).toHaveLength(1);
  });

  it('an unusable key is a 400 naming the header, before anything is credited; a key is per account', async () => {
    const id = await newAccount();
    for (const key of ['x'.repeat(256), ' padded', 'caf\u00e9']) {
      const res = await t.relay.app.inject({
        method: 'POST',
        url: topUps(id),
        headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json', 'idempotency-key': key },
        payload: '{"amount":5}',
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().Response.Error.Message).toMatch(/^Idempotency-Key: /);
    }
    expect(await balanceOf(id)).toBe(0);
    // The same key on another account is that account's own.
    const other = await newAccount();
    await t.admin.post(topUps(id), { amount: 5 }, { 'idempotency-key': 'shared' });
    const elsewhere = await t.admin.post(topUps(other), { amount: 5 }, { 'idempotency-key': 'shared' });
    expect(elsewhere.headers.get('idempotent-replayed')).toBeNull();
    expect([await balanceOf(id), await balanceOf(other)]).toEqual([5, 5]);
  });

  it("security: an operator's key and the account's own clients' keys never meet; API keys cannot top up", async () => {
    const accountId = await devAccountId(t);
    const key = { 'idempotency-key': 'same-key-both-sides' };
    const submitted = await t.api.post(SUBMIT, body('fox'), key);
    expect(submitted.status).toBe(200);
    // The task captures its price when it finishes, in the background: the balance is read once it has, so that only
    // the top-ups below move it (read before, it raced the capture, and lost on a loaded host).
    await waitForTask(t.relay, submitted.body.request_id as string);
    const before = await balanceOf(accountId);
    const credited = await t.admin.post(topUps(accountId), { amount: 1000 }, key);
    expect(credited.status).toBe(201);
    expect(credited.headers.get('idempotent-replayed')).toBeNull();
    expect(credited.body.balance).toBe(before + 1000);
    // The client's key still replays its own task, not the top-up.
    const replayed = await t.api.post(SUBMIT, body('fox'), key);
    expect(replayed.text).toBe(submitted.text);
    for (const token of [undefined, t.devKey, 'x'.repeat(32)]) {
      const res = await apiClient(t.url, token).post(topUps(accountId), { amount: 1000 }, key);
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
    }
    expect(await balanceOf(accountId)).toBe(before + 1000);
  });
});

describe('POST /admin/v1/accounts/{id}/adjustments with Idempotency-Key', () => {
  it('a retried adjustment takes the credits once and replays the first answer', async () => {
    const id = await newAccount(100);
    const headers = { 'idempotency-key': 'undo-inv-1' };
    const first = await t.admin.post(adjustments(id), { amount: -40, reason: 'top-up entered twice' }, headers);
    expect(first).toMatchObject({ status: 201, body: { balance: 60 } });
    const again = await t.admin.post(adjustments(id), { amount: -40, reason: 'top-up entered twice' }, headers);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await ledgerOf(id)).map((e) => [e.kind, e.amount])).toEqual([['adjust', -40], ['topup', 100]]);
  });

  it('a refused adjustment (402) does not use up its key: fixed and sent again with it, it goes through once', async () => {
    const id = await newAccount(100);
    const headers = { 'idempotency-key': 'claw-back' };
    const refused = await t.admin.post(adjustments(id), { amount: -101, reason: 'claw back' }, headers);
    expect(refused.status).toBe(402);
    expect(refused.body.Response.Error.Code).toBe('FailedOperation.InsufficientBalance');
    expect((await t.admin.post(adjustments(id), { amount: -100, reason: 'claw back' }, headers)).status).toBe(201);
    expect((await t.admin.post(adjustments(id), { amount: -100, reason: 'claw back' }, headers)).headers.get('idempotent-replayed')).toBe('true');
    expect(await balanceOf(id)).toBe(0);
  });

  it('401 for an API key or no token, whatever the Idempotency-Key', async () => {
    const id = await newAccount(100);
    for (const token of [undefined, t.devKey]) {
      const res = await apiClient(t.url, token).post(adjustments(id), { amount: -100, reason: 'x' }, { 'idempotency-key': 'k' });
      expect(res.status).toBe(401);
    }
    expect(await balanceOf(id)).toBe(100);
  });
});

describe('POST /admin/v1/accounts with Idempotency-Key', () => {
  const accountIds = async (): Promise<string[]> => (await t.admin.get('/admin/v1/accounts?limit=1000')).body.accounts.map((a: { id: string }) => a.id);

  it('a retried creation makes one funded account and replays the first answer, secret included, byte for byte', async () => {
    const before = await accountIds();
    const headers = { 'idempotency-key': 'onboard-customer-42' };
    const first = await t.admin.post('/admin/v1/accounts', { name: 'customer 42', balance: 500 }, headers);
    expect(first).toMatchObject({ status: 201, body: { name: 'customer 42', balance: 500, held: 0, available: 500 } });
    expect(first.body.webhook_secret).toMatch(/^whsec_/);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await t.admin.post('/admin/v1/accounts', { balance: 500, name: 'customer 42' }, headers);
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await accountIds()).filter((id) => !before.includes(id))).toEqual([first.body.id]);
    expect(await ledgerOf(first.body.id)).toEqual([expect.objectContaining({ kind: 'topup', amount: 500, reference: 'opening balance' })]);
    // What the replay says is what was stored: the account as it is read back.
    const stored = (await t.admin.get(`/admin/v1/accounts/${first.body.id}`)).body;
    expect(first.body).toEqual(stored);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('5 concurrent sends of one key: one account; another body with the key is 422; a refused one keeps the key free', async () => {
    const before = await accountIds();
    const sends = await Promise.all(
      Array.from({ length: 5 }, () => t.admin.post('/admin/v1/accounts', { name: 'burst', balance: 3 }, { 'idempotency-key': 'burst' })),
    );
    expect(new Set(sends.map((r) => `${r.status} ${r.text}`)).size).toBe(1);
    expect((await accountIds()).filter((id) => !before.includes(id))).toHaveLength(1);
    const reused = await t.admin.post('/admin/v1/accounts', { name: 'burst', balance: 4 }, { 'idempotency-key': 'burst' });
    expect(reused.status).toBe(422);
    expect(reused.body.Response.Error.Code).toBe('FailedOperation.IdempotencyKeyReused');
    // A blank name is refused (400) before anything is written; the key stays usable.
    const blank = await t.admin.post('/admin/v1/accounts', { name: '  ', balance: 9 }, { 'idempotency-key': 'fix-and-retry' });
    expect(blank.status).toBe(400);
    expect((await t.admin.post('/admin/v1/accounts', { name: 'fixed', balance: 9 }, { 'idempotency-key': 'fix-and-retry' })).status).toBe(201);
    expect((await accountIds()).filter((id) => !before.includes(id))).toHaveLength(2);
  });

  it('without a key two equal creations are two accounts (names need not be unique); an API key gets 401', async () => {
    const before = await accountIds();
    await t.admin.post('/admin/v1/accounts', { name: 'twin' });
    await t.admin.post('/admin/v1/accounts', { name: 'twin' });
    expect((await accountIds()).filter((id) => !before.includes(id))).toHaveLength(2);
    const res = await apiClient(t.url, t.devKey).post('/admin/v1/accounts', { name: 'mine', balance: 1000 }, { 'idempotency-key': 'k' });
    expect(res.status).toBe(401);
  });
});

describe('/openapi.json', () => {
  it('documents the cursors, next_cursor and the Idempotency-Key header of the money routes', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const params = (path: string, method: string) => (doc.paths[path][method].parameters as Array<{ name: string; in: string }>).map((p) => `${p.in}:${p.name}`);
    expect(params('/admin/v1/accounts/{id}/ledger', 'get')).toEqual(expect.arrayContaining(['query:limit', 'query:cursor']));
    expect(params('/admin/v1/accounts', 'get')).toEqual(expect.arrayContaining(['query:limit', 'query:cursor']));
    expect(params('/admin/v1/accounts/{id}/top-ups', 'post')).toContain('header:idempotency-key');
    expect(params('/admin/v1/accounts/{id}/adjustments', 'post')).toContain('header:idempotency-key');
    expect(params('/admin/v1/accounts', 'post')).toContain('header:idempotency-key');
    const ok = (path: string) => doc.paths[path].get.responses['200'].content['application/json'].schema;
    expect(Object.keys(ok('/admin/v1/accounts/{id}/ledger').properties)).toEqual(['entries', 'next_cursor']);
    expect(Object.keys(ok('/admin/v1/accounts').properties)).toEqual(['accounts', 'next_cursor']);
    expect(Object.keys(doc.paths['/admin/v1/accounts/{id}/top-ups'].post.responses)).toContain('422');
  });
});
