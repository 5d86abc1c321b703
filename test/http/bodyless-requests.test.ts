import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

/**
 * Many clients send `Content-Type: application/json` on every call (the seed page's samples do; SDK sessions set it
 * once). A call with no body then goes on as it would without the header.
 */
const send = async (method: string, path: string, token: string) => {
  const res = await fetch(`${t.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
};

describe('Content-Type: application/json with no body', () => {
  it('a cancel, a file delete and admin actions that take no body are answered as without the header', async () => {
    const task = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    expect([202, 400]).toContain((await send('PUT', `/tencent-vod/v1/requests/${task}/cancel`, t.devKey)).status);
    expect((await send('PUT', '/tencent-vod/v1/requests/no-such-task/cancel', t.devKey)).status).toBe(404);
    expect((await send('DELETE', '/tencent-vod/v1/files/file_nope', t.devKey)).status).toBe(404);
    expect((await send('DELETE', '/admin/v1/prices', t.adminToken)).status).toBe(200);
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'bodyless', balance: 1 })).body.id as string;
    const key = await send('POST', `/admin/v1/accounts/${account}/keys`, t.adminToken);
    expect(key.status).toBe(201);
    expect((await send('DELETE', `/admin/v1/keys/${key.body.id}`, t.adminToken)).status).toBeLessThan(300);
  });

  it('a file delete with an empty chunked body and a JSON Content-Type is answered as without the header', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${t.url}/tencent-vod/v1/files/file_nope`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => (res.resume(), resolve(res.statusCode!)));
      req.on('error', reject);
      req.end(); // only the last chunk: 0\r\n\r\n
    });
    expect(status).toBe(404);
  });

  it('a call that needs a body says it is missing, naming it', async () => {
    const submit = await send('POST', '/tencent-vod/v1/aigc-image', t.devKey);
    expect(submit.status).toBe(400);
    expect(submit.body.Response.Error).toMatchObject({ Code: 'MissingParameter', Message: 'body: empty or null; send a JSON object' });
    const upload = await send('POST', '/tencent-vod/v1/files', t.devKey);
    expect(upload.status).toBe(400);
    expect(upload.body.Response.Error.Message).toMatch(/^file: required/);
    const account = await send('POST', '/admin/v1/accounts', t.adminToken);
    expect(account.status).toBe(400);
    expect(account.body.Response.Error.Message).toMatch(/^body: /);
  });
});
