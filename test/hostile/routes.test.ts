import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { expectEnvelope, expectNamesAField } from './envelope';

/**
 * The routes other than submit, fed garbage: task routes with ids that are not ids, the admin API with bodies that
 * are not what it takes, file links with forged signatures. Answers are 2xx for what is valid and otherwise 4xx in
 * the envelope; never a 500.
 */
let t: TestRelay;
let accountId: string;
let fileUrl: URL;

beforeAll(async () => {
  t = await startTestRelay({ env: { AIGC_RELAY_INSTANT_PROVIDER: '1' } });
  const submitted = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  const task = await waitForTask(t.relay, submitted.body.request_id);
  accountId = task.accountId;
  const result = await t.api.get(`/tencent-vod/v1/requests/${task.id}`);
  fileUrl = new URL(result.body.images[0].url);
});
afterAll(() => t.close());

const inject = (method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, headers: Record<string, string> = {}, payload?: string) =>
  t.relay.app.inject({ method, url, headers: { ...headers, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(payload !== undefined ? { payload } : {}) });

const noServerError = (res: { statusCode: number; body: string; headers: Record<string, unknown> }) => {
  expect(res.statusCode, res.body).toBeLessThan(500);
  if (res.statusCode >= 400) expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
};

describe('task routes with ids that are not ids', () => {
  const routes = (id: string): Array<['GET' | 'PUT', string]> => [
    ['GET', `/tencent-vod/v1/requests/${id}/status`],
    ['GET', `/tencent-vod/v1/requests/${id}/status?logs=1`],
    ['GET', `/tencent-vod/v1/requests/${id}`],
    ['PUT', `/tencent-vod/v1/requests/${id}/cancel`],
    ['GET', `/tencent-vod/v1/query/${id}`],
  ];

  it('answers 404 (or 400 for ids the router refuses) in the envelope for random ids', async () => {
    const auth = { authorization: `Bearer ${t.devKey}` };
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 120, unit: 'binary' }), async (raw) => {
        for (const [method, url] of routes(encodeURIComponent(raw))) {
          const res = await inject(method, url, auth);
          noServerError(res);
          expect([400, 404]).toContain(res.statusCode);
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it.each([
    ['path traversal', '..%2F..%2Fadmin-token'],
    ['a SQL fragment', "x'%20OR%20'1'%3D'1"],
    ['another account-looking id', '00000000-0000-4000-8000-000000000000'],
  ])('answers 404 in the envelope for %s', async (_name, id) => {
    for (const [method, url] of routes(id)) {
      const res = await inject(method, url, { authorization: `Bearer ${t.devKey}` });
      expectEnvelope(res.statusCode, res.body);
      expect(res.statusCode).toBe(404);
    }
  });
});

describe('the admin API with bodies it does not take', () => {
  const adminHeaders = () => ({ authorization: `Bearer ${t.adminToken}` });
  const anyJson = fc.jsonValue({ maxDepth: 3 });
  const odd = fc.oneof(anyJson, fc.constantFrom(-1, 0, 1.5, 1e308, Number.MAX_SAFE_INTEGER + 2, '', 'x'.repeat(5000), null));

  it.each([
    ['create account', 'POST', (): string => '/admin/v1/accounts', ['name', 'balance', 'callback_url', 'extra']],
    ['create key', 'POST', (): string => `/admin/v1/accounts/${accountId}/keys`, ['name', 'rpm', 'max_concurrency', 'spend_cap', 'extra']],
    ['top up', 'POST', (): string => `/admin/v1/accounts/${accountId}/top-ups`, ['amount', 'reference', 'extra']],
  ] as const)('%s: 2xx when valid, else 400 in the envelope naming a field', async (_name, method, url, keys) => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(anyJson.map((v) => JSON.stringify(v) ?? 'null'), fc.dictionary(fc.constantFrom(...keys), odd, { maxKeys: 4 }).map((v) => JSON.stringify(v))),
        async (payload) => {
          const res = await inject(method, url(), adminHeaders(), payload);
          noServerError(res);
          if (res.statusCode >= 400) {
            expect(res.statusCode, res.body).toBe(400);
            expectNamesAField(JSON.parse(res.body).Response.Error.Message);
          }
        },
      ),
      { numRuns: 300, seed: 11 },
    );
    // The books still balance after whatever was accepted.
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('a top-up that would take the balance past 2^53 - 1 is a 400 naming amount, and writes nothing', async () => {
    const before = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance as number;
    const res = await inject('POST', `/admin/v1/accounts/${accountId}/top-ups`, adminHeaders(), JSON.stringify({ amount: Number.MAX_SAFE_INTEGER }));
    const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
    expect(body.Response.Error.Message).toMatch(/^amount: /);
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance).toBe(before);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('answers 4xx in the envelope for garbage ids and query strings', async () => {
    for (const url of [
      '/admin/v1/accounts/%E0%A4%A',
      `/admin/v1/accounts/${'a'.repeat(300)}`,
      '/admin/v1/accounts/nope',
      '/admin/v1/accounts/nope/ledger?limit=-5',
      '/admin/v1/tasks?limit=abc',
      '/admin/v1/tasks?status=exploded',
      '/admin/v1/tasks?limit=99999999999999999999',
      '/admin/v1/tasks?cursor=abc',
      '/admin/v1/tasks?cursor=99999999999999999999',
      '/admin/v1/tasks/..%2F..',
    ]) {
      const res = await inject('GET', url, adminHeaders());
      expectEnvelope(res.statusCode, res.body);
    }
  });
});

describe('file links with forged signatures', () => {
  const fileId = () => fileUrl.pathname.split('/').pop()!;

  it('serves the genuine link', async () => {
    const res = await inject('GET', `${fileUrl.pathname}${fileUrl.search}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('image/png');
  });

  it('answers 403 AuthFailure.SignatureFailure in the envelope naming the signature for any tampered link', async () => {
    const expires = fileUrl.searchParams.get('expires')!;
    const signature = fileUrl.searchParams.get('signature')!;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          expires: fc.oneof(fc.constant(expires), fc.string({ maxLength: 30 }), fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String)),
          signature: fc.oneof(fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 64 }), fc.constant(`${signature.slice(0, -1)}A`)),
        }),
        async (q) => {
          fc.pre(q.signature !== signature);
          const res = await inject('GET', `/tencent-vod/v1/files/${fileId()}?expires=${encodeURIComponent(q.expires)}&signature=${encodeURIComponent(q.signature)}`);
          noServerError(res);
          expect(res.statusCode).toBe(403);
          const { Code, Message } = JSON.parse(res.body).Response.Error;
          // A forged signature never verifies, so it never gets as far as the expiry check.
          expect([Code, Message]).toEqual(['AuthFailure.SignatureFailure', expect.stringMatching(/^signature: /)]);
        },
      ),
      { numRuns: 300, seed: 13 },
    );
  });

  it('answers 4xx in the envelope for repeated or missing parameters and foreign ids', async () => {
    for (const url of [
      `/tencent-vod/v1/files/${fileId()}?expires=1&expires=2&signature=a&signature=b`,
      `/tencent-vod/v1/files/${fileId()}?signature=abc`,
      `/tencent-vod/v1/files/${fileId()}?expires=${fileUrl.searchParams.get('expires')}`,
      `/tencent-vod/v1/files/file_doesnotexist?${fileUrl.searchParams}`,
      `/tencent-vod/v1/files/${fileId()}`,
    ]) {
      const res = await inject('GET', url);
      expectEnvelope(res.statusCode, res.body);
    }
  });
});

describe('NUL characters, which no field takes and PostgreSQL cannot store', () => {
  const nulIn = async (method: 'GET' | 'PUT' | 'POST', url: string, headers: Record<string, string>, payload?: string) => {
    const res = await inject(method, url, headers, payload);
    const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
    expect(body.Response.Error.Code).toBe('InvalidParameterValue');
    expectNamesAField(body.Response.Error.Message);
    return body.Response.Error.Message;
  };

  it('in a JSON body: 400 naming the field, and nothing is charged', async () => {
    const auth = { authorization: `Bearer ${t.devKey}` };
    const before = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance;
    const body = (patch: object) => JSON.stringify({ ...PROMPT_BODY, ...patch });
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, body({ prompt: 'a\u0000b' }))).toMatch(/^prompt: /);
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, body({ output_config: { resolution: '1080P\u0000' } }))).toMatch(
      /^output_config\.resolution: /,
    );
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, body({ file_infos: [{ type: 'Url', url: 'http://x/\u0000' }] }))).toMatch(
      /^file_infos\[0\]\.url: /,
    );
    const adminHeaders = { authorization: `Bearer ${t.adminToken}` };
    expect(await nulIn('POST', '/admin/v1/accounts', adminHeaders, JSON.stringify({ name: 'x\u0000' }))).toMatch(/^name: /);
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance).toBe(before);
  });

  it('a lone UTF-16 surrogate (valid JSON, not Unicode) likewise, in a value or a key; a surrogate pair is fine', async () => {
    const auth = { authorization: `Bearer ${t.devKey}` };
    const before = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance;
    const raw = (text: string) => `{"model_name":"GEM","model_version":"3.0",${text}}`;
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, raw('"prompt":"a\\ud800b"'))).toMatch(/^prompt: .*lone UTF-16 surrogate/);
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, raw('"prompt":"a\\uDFFF"'))).toMatch(/^prompt: /);
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, raw('"prompt":"x","session_id":"\\udc00\\ud800"'))).toMatch(/^session_id: /);
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image', auth, raw('"prompt":"x","output_config":{"\\ud800":1}'))).toMatch(
      /^output_config: a key that contains a lone/,
    );
    expect((await t.admin.get(`/admin/v1/accounts/${accountId}`)).body.balance).toBe(before);
    const pair = await inject('POST', '/tencent-vod/v1/aigc-image', auth, raw('"prompt":"a \\ud83e\\udd8a"'));
    expect(pair.statusCode, pair.body).toBe(200);
  });

  it('in a URL (an id, a query parameter): 400 before any store is asked, naming the path or the parameter', async () => {
    const auth = { authorization: `Bearer ${t.devKey}` };
    const admin = { authorization: `Bearer ${t.adminToken}` };
    expect(await nulIn('GET', '/tencent-vod/v1/requests/a%00b/status', auth)).toMatch(/^path: /);
    expect(await nulIn('PUT', '/tencent-vod/v1/requests/a%00b/cancel', auth)).toMatch(/^path: /);
    expect(await nulIn('GET', '/admin/v1/tasks/a%00b', admin)).toMatch(/^path: /);
    // A NUL in the query is in a parameter, not the path: the message names the parameter a client has to fix.
    expect(await nulIn('GET', `/admin/v1/tasks?limit=5&account=${accountId}%00`, admin)).toMatch(/^account: /);
    expect(await nulIn('GET', '/admin/v1/webhooks?ta%73k=x%00', admin)).toMatch(/^task: /);
    expect(await nulIn('POST', '/tencent-vod/v1/aigc-image?webhook=https://example.com/%00', auth, '{}')).toMatch(/^webhook: /);
  });
});
