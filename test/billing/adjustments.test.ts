import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { expectEnvelope } from '../hostile/envelope';
import { accountWithKey, promptPrice, submit } from './support';

/**
 * `POST /admin/v1/accounts/{id}/adjustments {amount, reason}`: an operator's signed correction (a wrong top-up, a
 * claw-back, a goodwill credit), written as a ledger row of kind `adjust`. Only available credits can be taken:
 * those held by unfinished tasks stay theirs. One relay whose preview renderer takes a minute, so a submitted task
 * stays held for the whole file.
 */
let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '60000' } });
});
afterAll(() => t.close());

const adjustments = (accountId: string) => `/admin/v1/accounts/${accountId}/adjustments`;
const accountOf = async (accountId: string) => (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body;
const ledgerOf = async (accountId: string) => (await t.admin.get(`/admin/v1/accounts/${accountId}/ledger`)).body.entries;
const newAccount = async (balance: number): Promise<string> => {
  const res = await t.admin.post('/admin/v1/accounts', { name: 'adjusted', balance });
  expect(res.status).toBe(201);
  return res.body.id;
};

describe('adjustments', () => {
  it('adds and takes away credits, each a ledger row of kind adjust with its reason; the audit stays clean', async () => {
    const accountId = await newAccount(1000);
    const up = await t.admin.post(adjustments(accountId), { amount: 250, reason: 'goodwill for the outage' });
    expect(up).toMatchObject({ status: 201, body: { balance: 1250 } });
    const down = await t.admin.post(adjustments(accountId), { amount: -400, reason: 'top-up entered twice' });
    expect(down).toMatchObject({ status: 201, body: { balance: 850 } });
    expect(await accountOf(accountId)).toMatchObject({ balance: 850, held: 0, available: 850 });
    expect(await ledgerOf(accountId)).toEqual([
      expect.objectContaining({ kind: 'adjust', amount: -400, reference: 'top-up entered twice', task_id: null }),
      expect.objectContaining({ kind: 'adjust', amount: 250, reference: 'goodwill for the outage', task_id: null }),
      expect.objectContaining({ kind: 'topup', amount: 1000 }),
    ]);
    expect((await t.admin.get('/admin/v1/audit')).body).toEqual({ ok: true, differences: [] });
  });

  it('refuses to take credits held by an unfinished task: 402 naming what is available, and nothing written', async () => {
    const price = await promptPrice(t.admin);
    const owner = await accountWithKey(t, price + 30);
    const held = await submit(owner.api);
    expect(held.status).toBe(200);
    expect(await accountOf(owner.accountId)).toMatchObject({ balance: price + 30, held: price, available: 30 });
    const ledger = await ledgerOf(owner.accountId);

    const refused = await t.admin.post(adjustments(owner.accountId), { amount: -31, reason: 'claw back' });
    const body = expectEnvelope(refused.status, refused.text);
    expect(body.Response.Error.Code).toBe('FailedOperation.InsufficientBalance');
    expect(body.Response.Error.Message).toMatch(/takes 31 credits; the account has 30 available/);
    expect(await accountOf(owner.accountId)).toMatchObject({ balance: price + 30, held: price, available: 30 });
    expect(await ledgerOf(owner.accountId)).toEqual(ledger);

    // All that is available may go; the held task is still the task's.
    expect(await t.admin.post(adjustments(owner.accountId), { amount: -30, reason: 'claw back' })).toMatchObject({ status: 201, body: { balance: price } });
    expect(await accountOf(owner.accountId)).toMatchObject({ balance: price, held: price, available: 0 });
    expect((await t.relay.store.tasks.getTask(held.body.request_id))!.state).toMatch(/^(queued|running)$/);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it.each([
    ['amount 0', { amount: 0, reason: 'x' }, 'amount'],
    ['amount -0', '{"amount": -0, "reason": "x"}', 'amount'],
    ['a fractional amount', { amount: 1.5, reason: 'x' }, 'amount'],
    ['an amount as a string', { amount: '5', reason: 'x' }, 'amount'],
    ['an amount as a boolean', { amount: true, reason: 'x' }, 'amount'],
    ['an amount past 2^53 - 1', { amount: -(Number.MAX_SAFE_INTEGER + 2), reason: 'x' }, 'amount'],
    ['no amount', { reason: 'x' }, 'amount'],
    ['no reason', { amount: 5 }, 'reason'],
    ['an empty reason', { amount: 5, reason: '' }, 'reason'],
    ['a reason of spaces', { amount: 5, reason: '   ' }, 'reason'],
    ['a reason over 200 characters', { amount: 5, reason: 'r'.repeat(201) }, 'reason'],
    ['a reason as a number', { amount: 5, reason: 7 }, 'reason'],
    ['an unknown field', { amount: 5, reason: 'x', reference: 'y' }, 'reference'],
  ])('%s: 400 naming the field, and neither the balance nor the ledger moves', async (_name, payload, field) => {
    const accountId = await newAccount(100);
    const res = await t.admin.post(adjustments(accountId), payload);
    const body = expectEnvelope(res.status, res.text);
    expect(res.status).toBe(400);
    expect(body.Response.Error.Message).toMatch(new RegExp(`^${field}: `));
    expect((await accountOf(accountId)).balance).toBe(100);
    expect(await ledgerOf(accountId)).toHaveLength(1);
  });

  it('an unknown account is a 404', async () => {
    const res = await t.admin.post(adjustments('acct_nope'), { amount: 5, reason: 'x' });
    expect(res.status).toBe(404);
    expect(res.body.Response.Error).toEqual({ Code: 'ResourceNotFound', Message: 'account "acct_nope" does not exist' });
    expect((await t.admin.post(adjustments('acct_nope'), { amount: -5, reason: 'x' })).status).toBe(404);
  });

  it.each([
    ['no token', () => undefined],
    ['a wrong admin token', () => 'x'.repeat(32)],
    ['the admin token with one character changed', () => `${t.adminToken.slice(0, -1)}${t.adminToken.endsWith('A') ? 'B' : 'A'}`],
    ['a client API key', () => t.devKey],
    ["the account's own API key", (key: string) => key],
  ])('401 with %s, and nothing written', async (_name, token) => {
    const owner = await accountWithKey(t, 100);
    const client = apiClient(t.url, token(owner.key));
    for (const amount of [500, -50]) {
      const res = await client.post(adjustments(owner.accountId), { amount, reason: 'not yours to give' });
      expect(res.status).toBe(401);
      expect(res.body.Response.Error.Code).toBe('AuthFailure');
    }
    expect(await accountOf(owner.accountId)).toMatchObject({ balance: 100, held: 0 });
    expect(await ledgerOf(owner.accountId)).toHaveLength(1);
  });

  it('/openapi.json documents the route: its body, its 201 and its 402', async () => {
    const operation = (await t.api.get('/openapi.json')).body.paths['/admin/v1/accounts/{id}/adjustments'].post;
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['201', '400', '401', '402', '404']));
    expect(operation.responses['402'].description).toBe('FailedOperation.InsufficientBalance');
    const body = operation.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(['amount', 'reason']);
    expect(body.additionalProperties).toBe(false);
  });
});

describe('a held task settles normally after an adjustment took everything else', () => {
  it('the capture still comes out of the balance that was left for it', async () => {
    // A relay with an instant renderer: the task finishes, and its capture meets the adjusted balance.
    const quick = await startTestRelay();
    try {
      const price = await promptPrice(quick.admin);
      const owner = await accountWithKey(quick, 2 * price);
      expect((await quick.admin.post(adjustments(owner.accountId), { amount: -price, reason: 'half back' })).status).toBe(201);
      const done = await waitForTask(quick.relay, (await submit(owner.api)).body.request_id);
      expect(done.state).toBe('succeeded');
      expect((await quick.admin.get(`/admin/v1/accounts/${owner.accountId}`)).body).toMatchObject({ balance: 0, held: 0 });
      expect((await quick.admin.get('/admin/v1/audit')).body.ok).toBe(true);
    } finally {
      await quick.close();
    }
  });
});
