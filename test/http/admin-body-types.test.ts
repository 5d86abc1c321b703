import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PRICES } from '../../src/domain/pricing';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope } from '../hostile/envelope';

/**
 * A JSON body says what type each value is; a value of the wrong type is the operator's mistake, not a value to
 * convert. Ajv's type coercion (which query strings need: they are text) used to apply to admin bodies too, and
 * turned mistakes into money and limits: `{"spend_cap": ""}` removed a key's spend cap, `{"amount": true}` topped
 * up 1 credit, `{"rpm": true}` set a limit of 1, `"12"` became 12 credits.
 */
let t: TestRelay;
let accountId: string;
let keyId: string;
beforeAll(async () => {
  t = await startTestRelay();
  accountId = (await t.admin.post('/admin/v1/accounts', { name: 'types', balance: 100 })).body.id;
  keyId = (await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { rpm: 60, max_concurrency: 4, spend_cap: 500 })).body.id;
});
afterAll(() => t.close());

const refused = async (res: { status: number; text: string }, field: string) => {
  const body = expectEnvelope(res.status, res.text);
  expect(res.status, res.text).toBe(400);
  expect(body.Response.Error.Message).toMatch(new RegExp(`^${field}: `));
};

describe('admin bodies are not type-coerced', () => {
  it.each([
    [{ spend_cap: '' }, 'spend_cap'],
    [{ spend_cap: false }, 'spend_cap'],
    [{ rpm: '' }, 'rpm'],
    [{ rpm: true }, 'rpm'],
    [{ max_concurrency: '3' }, 'max_concurrency'],
    [{ name: 5 }, 'name'],
  ])('PATCH /admin/v1/keys/{id} %j: 400 naming the field, the key unchanged', async (patch, field) => {
    await refused(await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, patch), field);
    expect((await t.admin.get(`/admin/v1/keys/${keyId}`)).body).toMatchObject({ name: null, rpm: 60, max_concurrency: 4, spend_cap: 500 });
  });

  it.each([[{ amount: true }], [{ amount: '5' }], [{ amount: [5] }], [{ amount: 5, reference: 7 }]])(
    'a top-up of %j: 400, and neither the balance nor the ledger moves',
    async (body) => {
      const ledger = (await t.admin.get(`/admin/v1/accounts/${accountId}/ledger`)).body.entries.length;
      await refused(await t.admin.post(`/admin/v1/accounts/${accountId}/top-ups`, body), Object.keys(body).at(-1)!);
      expect((await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance).toBe(100);
      expect((await t.admin.get(`/admin/v1/accounts/${accountId}/ledger`)).body.entries).toHaveLength(ledger);
    },
  );

  it('other admin bodies: a string for a number, a number for a string, a string for a list or a boolean', async () => {
    await refused(await t.admin.post('/admin/v1/accounts', { name: 'x', balance: '12' }), 'balance');
    await refused(await t.admin.post(`/admin/v1/accounts/${accountId}/keys`, { rpm: '10' }), 'rpm');
    const channel = { provider: 'tencent-vod', name: 'c', secret_id: 'AKID', secret_key: 'k', sub_app_id: 1 };
    await refused(await t.admin.post('/admin/v1/channels', { ...channel, sub_app_id: '1' }), 'sub_app_id');
    await refused(await t.admin.post('/admin/v1/channels', { ...channel, models: 'GEM' }), 'models');
    await refused(await t.admin.post('/admin/v1/channels', { ...channel, enabled: 'false' }), 'enabled');
    const prices = { ...DEFAULT_PRICES, 'GEM:3.0': { ...DEFAULT_PRICES['GEM:3.0'], '1K': '40' } };
    await refused(await t.admin.put('/admin/v1/prices', { prices }), 'prices.GEM:3.0.1K');
    expect((await t.admin.get('/admin/v1/channels')).body.channels).toEqual([]);
    expect((await t.admin.get('/admin/v1/prices')).body.source).toBe('default');
  });

  it('an account name of nothing but spaces is refused like an empty one', async () => {
    await refused(await t.admin.post('/admin/v1/accounts', { name: '   ' }), 'name');
  });

  it('query strings and path parameters, which are text, are still read as numbers', async () => {
    const listed = await t.admin.get('/admin/v1/accounts?limit=1');
    expect(listed.status).toBe(200);
    expect(listed.body.accounts).toHaveLength(1);
    expect((await t.admin.get('/admin/v1/tasks?limit=5&status=queued')).status).toBe(200);
  });
});
