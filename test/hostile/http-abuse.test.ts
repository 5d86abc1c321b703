import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope, expectNamesAField } from './envelope';
import { rawRequest } from './raw-http';

/**
 * Abuse of the HTTP layer itself, sent byte for byte over real loopback sockets where the interesting part is
 * what Node's parser does: every refusal is still a 4xx in the envelope, and nothing a client sends ends up as a
 * response header.
 */
let t: TestRelay;
let host: string;

beforeAll(async () => {
  t = await startTestRelay({ env: { AIGC_RELAY_INSTANT_PROVIDER: '1' } });
  host = new URL(t.url).host;
});
afterAll(() => t.close());

const raw = (lines: string[], body = '') => rawRequest(t.url, `${lines.join('\r\n')}\r\n\r\n${body}`);

describe('headers', () => {
  it.each([
    ['a header', [`GET /healthz HTTP/1.1`, `X-Big: ${'a'.repeat(20_000)}`]],
    ['the URL', [`GET /healthz?${'a'.repeat(20_000)} HTTP/1.1`]],
  ])('answers 431 in the envelope when %s takes the headers over 16 KiB (413 would say the body was too large)', async (_what, lines) => {
    const res = await raw([...lines, `Host: ${host}`, 'Connection: close']);
    const body = expectEnvelope(res.status, res.body, res.headers['x-request-id']);
    expect(res.status).toBe(431);
    expect(body.Response.Error.Code).toBe('RequestSizeLimitExceeded.Headers');
    expect(body.Response.Error.Message).toMatch(/^headers: larger than \d+ bytes \(the URL counts too\)$/);
  });

  it('serves a request that carries a thousand small headers', async () => {
    const many = Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${i}`);
    const res = await raw([`GET /healthz HTTP/1.1`, `Host: ${host}`, ...many, 'Connection: close']);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
  });

  it.each([
    ['a bare CR inside a header value', [`X-A: a\rInjected: yes`]],
    ['a space before the colon', ['X-A : b']],
    ['an obsolete folded header line', ['X-A: a', ' folded: yes']],
    ['a header name with a control character', ['X-\u0001A: b']],
    ['Content-Length and Transfer-Encoding together (smuggling)', ['Content-Length: 3', 'Transfer-Encoding: chunked']],
    ['two different Content-Lengths', ['Content-Length: 1', 'Content-Length: 2']],
    ['a non-numeric Content-Length', ['Content-Length: 12abc']],
  ])('answers 400 in the envelope for %s', async (_name, extra) => {
    const res = await raw([`POST /healthz HTTP/1.1`, `Host: ${host}`, ...extra, 'Connection: close'], 'abc');
    const body = expectEnvelope(res.status, res.body, res.headers['x-request-id']);
    expect(res.status).toBe(400);
    expect(body.Response.Error.Message).toMatch(/^request: not well-formed HTTP\/1\.1/);
    expect(res.headers.injected).toBeUndefined();
    expect(res.headers.folded).toBeUndefined();
  });

  it('answers 400 in the envelope for an unknown method and a broken request line', async () => {
    for (const line of ['BREW /healthz HTTP/1.1', 'GET /healthz HTTP/9.9', 'GET  HTTP/1.1', 'GET /a\u0000b HTTP/1.1']) {
      const res = await raw([line, `Host: ${host}`, 'Connection: close']);
      expectEnvelope(res.status, res.body);
      expect(res.status, line).toBe(400);
    }
  });

  it('never reflects a CR/LF smuggled through the URL into a response header', async () => {
    const res = await raw([
      `GET /tencent-vod/v1/requests/%0d%0aSet-Cookie:%20pwned=1/status HTTP/1.1`,
      `Host: ${host}`,
      `Authorization: Bearer ${t.devKey}`,
      'Connection: close',
    ]);
    expectEnvelope(res.status, res.body, res.headers['x-request-id']);
    expect(res.status).toBe(404);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.raw.split('\r\n\r\n')[0]).not.toMatch(/pwned/);
  });
});

describe('Authorization', () => {
  const statusRoute = '/tencent-vod/v1/requests/00000000-0000-4000-8000-000000000000/status';
  const forms = (key: string): Array<[string, string | undefined]> => {
    const [id, secret] = key.slice('ar_'.length).split('.');
    return [
      ['absent', undefined],
      ['empty', ''],
      ['the scheme alone', 'Bearer'],
      ['the scheme and spaces', 'Bearer    '],
      ['Basic credentials', 'Basic dXNlcjpwYXNz'],
      ['another scheme', `Token ${key}`],
      ['two tokens', `Bearer ${key} ${key}`],
      ['a token of 10k characters', `Bearer ${'x'.repeat(10_000)}`],
      ['a token that is not a key', 'Bearer not-a-key'],
      ['non-ASCII text', 'Bearer ключ🔑'],
      ['a well-formed unknown key', `Bearer ar_key_AAAAAAAAAAAAAAAA.${'A'.repeat(43)}`],
      ['the right key id with a wrong secret', `Bearer ar_${id}.${'B'.repeat(43)}`],
      ['the right secret with the key id changed', `Bearer ar_key_BBBBBBBBBBBBBBBB.${secret}`],
      ['the key with a trailing dot', `Bearer ${key}.`],
    ];
  };

  it('answers 401 naming Authorization for every malformed or wrong form, on every kind of route', async () => {
    for (const [name, value] of forms(t.devKey)) {
      for (const [method, url, payload] of [
        ['GET', statusRoute, undefined],
        ['POST', '/tencent-vod/v1/aigc-image', JSON.stringify(PROMPT_BODY)],
        ['GET', '/admin/v1/prices', undefined],
      ] as const) {
        const res = await t.relay.app.inject({
          method,
          url,
          headers: { ...(value !== undefined ? { authorization: value } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
          ...(payload ? { payload } : {}),
        });
        const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
        expect(res.statusCode, `${name} on ${url}`).toBe(401);
        expectNamesAField(body.Response.Error.Message);
        expect(body.Response.Error.Message).toMatch(/^Authorization: /);
      }
    }
  });

  it('does not accept the admin token as an API key, nor an API key as the admin token', async () => {
    const asKey = await t.relay.app.inject({ method: 'GET', url: statusRoute, headers: { authorization: `Bearer ${t.adminToken}` } });
    expect(asKey.statusCode).toBe(401);
    const asAdmin = await t.relay.app.inject({ method: 'GET', url: '/admin/v1/prices', headers: { authorization: `Bearer ${t.devKey}` } });
    expect(asAdmin.statusCode).toBe(401);
  });

  it('still serves the right key afterwards', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status).toBe(200);
  });
});

describe('URLs the router cannot take apart', () => {
  it.each([
    ['bad percent-encoding', '/tencent-vod/v1/requests/%E0%A4%A/status'],
    ['a lone percent sign', '/tencent-vod/v1/requests/%/status'],
    ['an id of 300 characters', `/tencent-vod/v1/requests/${'a'.repeat(300)}/status`],
  ])('answers 400 in the envelope for %s', async (_name, url) => {
    const res = await t.relay.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${t.devKey}` } });
    const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
    expect(res.statusCode).toBe(400);
    expect(body.Response.Error.Message).toMatch(/^path: /);
  });

  it('is still up and well after all of the above', async () => {
    expect((await t.api.get('/healthz')).status).toBe(200);
    expect((await t.api.get('/readyz')).status).toBe(200);
  });
});
