import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * Routes whose schemas Fastify's Ajv checks (the admin API, query strings) say what is wrong in the words the submit
 * route's own validator uses, not Ajv's ("must NOT have fewer than 1 characters", "must match format \"uri\"").
 */
describe('schema failures, as a client reads them', () => {
  let t: TestRelay;
  let account: string;
  beforeAll(async () => {
    t = await startTestRelay();
    account = (await t.admin.post('/admin/v1/accounts', { name: 'messages' })).body.id as string;
  });
  afterAll(() => t.close());

  const message = async (answer: Promise<{ status: number; body: unknown }>) => {
    const { status, body } = await answer;
    expect(status).toBe(400);
    return (body as { Response: { Error: { Message: string } } }).Response.Error.Message;
  };
  const patch = (path: string, body: unknown) =>
    fetch(`${t.url}${path}`, { method: 'PATCH', headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
      async (r) => ({ status: r.status, body: await r.json() }),
    );

  it('name the field and the rule in plain words', async () => {
    expect(await message(t.admin.post('/admin/v1/accounts', { name: '' }))).toBe('name: must not be empty');
    expect(await message(t.admin.post('/admin/v1/accounts', { name: 'x', callback_url: 'not a url' }))).toBe('callback_url: must be a URL (https://…)');
    expect(await message(t.admin.post(`/admin/v1/accounts/${account}/top-ups`, { amount: null }))).toBe('amount: expected a whole number');
    expect(await message(t.admin.post(`/admin/v1/accounts/${account}/top-ups`, { amount: -5 }))).toBe('amount: must be at least 1');
    expect(await message(patch('/admin/v1/channels/ch_none', {}))).toBe('body: give at least one field');
  });

  it('in a query string too: a number that is not one, a bound, a parameter given twice', async () => {
    expect(await message(t.admin.get('/admin/v1/tasks?limit=abc'))).toBe('limit: expected a whole number');
    expect(await message(t.api.get('/tencent-vod/v1/requests?limit=1000'))).toBe('limit: must be at most 100');
    expect(await message(t.admin.get('/admin/v1/tasks?account=a&account=b'))).toBe('account: given more than once; give it once');
  });
});
