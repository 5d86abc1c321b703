import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVodApi } from '../../src/adapters/tencent/client';
import { makeAccount } from './harness';
import { TencentTestServer } from './server';
import { signature, utcDate } from './tc3';

/**
 * The protocol server checks TC3-HMAC-SHA256 like Tencent: what the official SDK signs passes, anything else is an
 * HTTP 200 carrying Response.Error AuthFailure.*.
 */
const account = makeAccount(1);
let server: TencentTestServer;
beforeAll(async () => {
  server = await TencentTestServer.start({ accounts: [account] });
});
afterAll(() => server.close());

const hostOf = () => new URL(server.url).hostname;

/** A request signed by hand (our own signer, independent of the SDK), optionally spoiled afterwards. */
async function raw(options: { secretKey?: string; timestamp?: number; body?: string; sentBody?: string; signedHost?: string; secretId?: string; service?: string }) {
  const body = options.body ?? JSON.stringify({ SubAppId: account.subAppId, Limit: 1 });
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const service = options.service ?? hostOf().split('.')[0]!;
  const sig = signature({
    secretKey: options.secretKey ?? account.secretKey,
    service,
    timestamp,
    host: options.signedHost ?? hostOf(),
    contentType: 'application/json',
    body,
  });
  const res = await fetch(`${server.url}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-tc-action': 'DescribeTasks',
      'x-tc-version': '2018-07-17',
      'x-tc-timestamp': String(timestamp),
      authorization: `TC3-HMAC-SHA256 Credential=${options.secretId ?? account.secretId}/${utcDate(timestamp)}/${service}/tc3_request, SignedHeaders=content-type;host, Signature=${sig}`,
    },
    body: options.sentBody ?? body,
  });
  return { status: res.status, body: (await res.json()) as { Response: { Error?: { Code: string; Message: string }; TaskSet?: unknown[] } } };
}

describe('TC3-HMAC-SHA256 on the test server', () => {
  it('accepts what the official SDK signs (host without port, content-type;host, payload hash, date scope)', async () => {
    const api = createVodApi({ secretId: account.secretId, secretKey: account.secretKey, endpoint: server.url });
    try {
      const res = await api.describeTasks({ SubAppId: account.subAppId, Limit: 1 }, { timeoutMs: 2000 });
      expect(res.TaskSet).toEqual([]);
    } finally {
      api.close();
    }
  });

  it('accepts a request signed independently of the SDK with the same rules', async () => {
    const res = await raw({});
    expect(res.status).toBe(200);
    expect(res.body.Response.Error).toBeUndefined();
  });

  it('answers a wrong key with HTTP 200 and AuthFailure.SignatureFailure, which the SDK surfaces as the code', async () => {
    const res = await raw({ secretKey: 'wrong' });
    expect(res.status).toBe(200);
    expect(res.body.Response.Error!.Code).toBe('AuthFailure.SignatureFailure');
    const api = createVodApi({ secretId: account.secretId, secretKey: 'wrong', endpoint: server.url });
    try {
      await expect(api.describeTasks({ SubAppId: account.subAppId }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'AuthFailure.SignatureFailure' });
    } finally {
      api.close();
    }
  });

  it.each([
    ['a body changed after signing', { sentBody: JSON.stringify({ SubAppId: account.subAppId, Limit: 100 }) }, 'AuthFailure.SignatureFailure'],
    ['a host other than the one signed', { signedHost: 'vod.tencentcloudapi.com' }, 'AuthFailure.SignatureFailure'],
    ['a credential scope for another service', { service: 'cvm' }, 'AuthFailure.SignatureFailure'],
    ['a timestamp 10 minutes old', { timestamp: Math.floor(Date.now() / 1000) - 600 }, 'AuthFailure.SignatureExpire'],
    ['an unknown SecretId', { secretId: 'AKIDnobody' }, 'AuthFailure.SecretIdNotFound'],
  ])('rejects %s', async (_what, options, code) => {
    const res = await raw(options);
    expect(res.status).toBe(200);
    expect(res.body.Response.Error!.Code).toBe(code);
  });
});
