import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient } from '../helpers/api';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';

/**
 * What a client sees of its own account with its API key: `GET /tencent-vod/v1/account` (balance, held, available,
 * the calling key), `…/account/ledger`, `…/prices` and `GET /tencent-vod/v1/requests` (its tasks, newest first, with
 * what each cost). The bad-key cases of each route are in routes.security.test.ts.
 */
const QWEN_BODY = { model_name: 'Qwen', model_version: '0925', prompt: 'a teapot' };

describe('a relay whose tasks finish at once', () => {
  let t: TestRelay;
  let accountId: string;
  let second: { id: string; api: ApiClient };
  let other: ApiClient;
  let gem: string;
  let qwen: string;
  beforeAll(async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '0' } });
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'acme', balance: 1000 })).body;
    accountId = account.id;
    const key = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { name: 'ci', rpm: 600, spend_cap: 900 })).body;
    const spare = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { name: 'spare' })).body;
    second = { id: spare.id, api: apiClient(t.url, spare.key) };
    const api = apiClient(t.url, key.key);
    gem = (await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, session_id: 'job-1' })).body.request_id;
    await waitForTask(t.relay, gem);
    qwen = (await second.api.post('/tencent-vod/v1/aigc-image', QWEN_BODY)).body.request_id;
    await waitForTask(t.relay, qwen);
    // Another account's task, which no list of acme's may show.
    await t.api.post('/tencent-vod/v1/aigc-image', QWEN_BODY);
    other = t.api;
  });
  afterAll(() => t.close());

  it('GET /account: the balance after both captures, and the key the request was made with', async () => {
    const prices = (await t.admin.get('/admin/v1/prices')).body.prices;
    const spent = prices['GEM:3.0']['1K'] + prices['Qwen:0925']['1K'];
    const res = await second.api.get('/tencent-vod/v1/account');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: accountId, name: 'acme', balance: 1000 - spent, held: 0, available: 1000 - spent, callback_url: null });
    expect(res.body.key).toMatchObject({ id: second.id, name: 'spare', rpm: null, spend_cap: null, spent: prices['Qwen:0925']['1K'], expires_at: null });
    // The admin view of the same account agrees, and the client's view leaves out what only the operator holds.
    const admin = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body;
    expect(res.body.balance).toBe(admin.balance);
    expect(JSON.stringify(res.body)).not.toContain(admin.webhook_secret);
    expect(Object.keys(res.body)).not.toContain('webhook_secret');
    expect(Object.keys(res.body.key)).not.toEqual(expect.arrayContaining(['secret_hash']));
  });

  it('GET /requests: the account\'s own tasks, newest first, whichever key made them, with what each cost', async () => {
    const prices = (await t.admin.get('/admin/v1/prices')).body.prices;
    const res = await second.api.get('/tencent-vod/v1/requests');
    expect(res.status).toBe(200);
    expect(res.body.next_cursor).toBeNull();
    expect(res.body.requests.map((r: { request_id: string }) => r.request_id)).toEqual([qwen, gem]);
    expect(res.body.requests[1]).toMatchObject({
      status: 'COMPLETED',
      outcome: 'succeeded',
      model_name: 'GEM',
      model_version: '3.0',
      session_id: 'job-1',
      price: prices['GEM:3.0']['1K'],
      charged: prices['GEM:3.0']['1K'],
      progress: 100,
      status_url: `${t.url}/tencent-vod/v1/requests/${gem}/status`,
    });
    expect(res.body.requests[1].finished_at).toEqual(expect.any(String));
    const theirs = (await other.get('/tencent-vod/v1/requests')).body.requests.map((r: { request_id: string }) => r.request_id);
    expect(theirs).toHaveLength(1);
    expect(theirs).not.toContain(gem);
  });

  it('pages with limit and next_cursor, and filters by the status word in any case', async () => {
    const first = await second.api.get('/tencent-vod/v1/requests?limit=1');
    expect(first.body.requests.map((r: { request_id: string }) => r.request_id)).toEqual([qwen]);
    const next = await second.api.get(`/tencent-vod/v1/requests?limit=1&cursor=${encodeURIComponent(first.body.next_cursor)}`);
    expect(next.body.requests.map((r: { request_id: string }) => r.request_id)).toEqual([gem]);
    expect((await second.api.get('/tencent-vod/v1/requests?status=completed')).body.requests).toHaveLength(2);
    expect((await second.api.get('/tencent-vod/v1/requests?status=IN_QUEUE')).body.requests).toEqual([]);
  });

  it('GET /account/ledger: every hold and capture of the account, newest first, without the account id', async () => {
    const res = await second.api.get('/tencent-vod/v1/account/ledger');
    expect(res.status).toBe(200);
    const rows = res.body.entries.map((e: { kind: string; task_id: string | null }) => [e.kind, e.task_id]);
    expect(rows).toEqual([
      ['capture', qwen],
      ['hold', qwen],
      ['capture', gem],
      ['hold', gem],
      ['topup', null],
    ]);
    expect(res.body.entries[4]).toMatchObject({ amount: 1000, reference: 'opening balance' });
    // Neither the account nor the row's id, which counts every account's rows.
    expect(Object.keys(res.body.entries[0]).sort()).toEqual(['amount', 'created_at', 'kind', 'reference', 'task_id']);
    const page = await second.api.get('/tencent-vod/v1/account/ledger?limit=2');
    const rest = await second.api.get(`/tencent-vod/v1/account/ledger?limit=2&cursor=${encodeURIComponent(page.body.next_cursor)}`);
    expect([...page.body.entries, ...rest.body.entries]).toEqual(res.body.entries.slice(0, 4));
  });

  it("a cursor tells nothing of other accounts' rows, and works only for its own list and account", async () => {
    const page = (await second.api.get('/tencent-vod/v1/requests?limit=1')).body.next_cursor as string;
    const ledger = (await second.api.get('/tencent-vod/v1/account/ledger?limit=1')).body.next_cursor as string;
    // Not the task's seq or the ledger row's id, which count every account's rows.
    for (const cursor of [page, ledger]) expect(cursor).not.toMatch(/^\d+$/);
    const refused = [
      await other.get(`/tencent-vod/v1/requests?cursor=${encodeURIComponent(page)}`), // another account's
      await second.api.get(`/tencent-vod/v1/requests?cursor=${encodeURIComponent(ledger)}`), // another list's
      await second.api.get(`/tencent-vod/v1/requests?cursor=${encodeURIComponent(`${page.slice(0, -2)}AA`)}`), // altered
      await second.api.get('/tencent-vod/v1/requests?cursor=2'), // a seq, as the operator's lists take
    ];
    for (const res of refused) {
      expect(res.status).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(/^cursor: /);
    }
  });

  it('GET /prices: the table the operator sees, without where it came from', async () => {
    const admin = (await t.admin.get('/admin/v1/prices')).body;
    const res = await second.api.get('/tencent-vod/v1/prices');
    expect(res.status).toBe(200);
    const { source: _source, ...expected } = admin;
    expect(res.body).toEqual(expected);
  });

  it.each([
    ['/tencent-vod/v1/requests?status=done', 'status'],
    ['/tencent-vod/v1/requests?limit=0', 'limit'],
    ['/tencent-vod/v1/requests?cursor=abc', 'cursor'],
    ['/tencent-vod/v1/account/ledger?limit=101', 'limit'],
    ['/tencent-vod/v1/requests?limit=101', 'limit'],
  ])('%s is a 400 naming %s', async (path, field) => {
    const res = await second.api.get(path);
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Code).toMatch(/^InvalidParameter/);
    expect(res.body.Response.Error.Message).toMatch(new RegExp(`^(querystring/)?${field}\\b`));
  });
});

describe('a relay whose provider does not finish', () => {
  let t: TestRelay;
  beforeAll(async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '600000', AIGC_RELAY_PREVIEW_CONCURRENCY: '1' } });
  });
  afterAll(() => t.close());

  it('a queued task is held, not charged, and a cancel releases it', async () => {
    const before = (await t.api.get('/tencent-vod/v1/account')).body;
    const running = (await t.api.post('/tencent-vod/v1/aigc-image', QWEN_BODY)).body.request_id;
    await waitForTask(t.relay, running, ['running']);
    const queued = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id;
    const price = (await t.relay.store.tasks.getTask(queued))!.price;
    const runningPrice = (await t.relay.store.tasks.getTask(running))!.price;

    const during = (await t.api.get('/tencent-vod/v1/account')).body;
    expect(during).toMatchObject({ balance: before.balance, held: price + runningPrice, available: before.balance - price - runningPrice });
    const listed = (await t.api.get('/tencent-vod/v1/requests')).body.requests;
    expect(listed.map((r: { request_id: string; status: string; charged: number }) => [r.request_id, r.status, r.charged])).toEqual([
      [queued, 'IN_QUEUE', 0],
      [running, 'IN_PROGRESS', 0],
    ]);
    expect((await t.api.get('/tencent-vod/v1/requests?status=in_progress')).body.requests.map((r: { request_id: string }) => r.request_id)).toEqual([running]);

    expect((await t.api.put(`/tencent-vod/v1/requests/${queued}/cancel`)).status).toBe(202);
    await waitForTask(t.relay, queued);
    const after = (await t.api.get('/tencent-vod/v1/account')).body;
    expect(after).toMatchObject({ balance: before.balance, held: runningPrice });
    const item = (await t.api.get('/tencent-vod/v1/requests?status=COMPLETED')).body.requests[0];
    expect(item).toMatchObject({ request_id: queued, outcome: 'cancelled', price, charged: 0 });
    const ledger = (await t.api.get('/tencent-vod/v1/account/ledger?limit=1')).body.entries[0];
    expect(ledger).toMatchObject({ kind: 'release', task_id: queued, amount: price });
  });
});
