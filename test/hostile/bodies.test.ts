import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../src/http/transport-guards';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope, expectNamesAField } from './envelope';

/** Bodies no client should send: too big, too deep, not JSON, not UTF-8. Each gets a 4xx envelope naming the body. */
let t: TestRelay;
const SUBMIT = '/tencent-vod/v1/aigc-image';
const json = { 'content-type': 'application/json' };

beforeAll(async () => {
  t = await startTestRelay({ env: { AIGC_RELAY_INSTANT_PROVIDER: '1' } });
});
afterAll(() => t.close());

const submit = (payload: string | Buffer, headers: Record<string, string> = json) =>
  t.relay.app.inject({ method: 'POST', url: SUBMIT, headers: { authorization: `Bearer ${t.devKey}`, ...headers }, payload });

const refused = (res: { statusCode: number; body: string; headers: Record<string, unknown> }, status: number, code: string) => {
  const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
  expect(res.statusCode).toBe(status);
  expect(body.Response.Error.Code).toBe(code);
  expectNamesAField(body.Response.Error.Message);
  return body.Response.Error.Message;
};

describe('oversized bodies', () => {
  it('answers 413 for a JSON body over 1 MiB, in process and over a real socket', async () => {
    const big = JSON.stringify({ ...PROMPT_BODY, prompt: 'x'.repeat(1024 * 1024) });
    expect(refused(await submit(big), 413, 'RequestSizeLimitExceeded')).toMatch(/^body:/);
    const res = await t.api.post(SUBMIT, big);
    expect(res.status).toBe(413);
    expectEnvelope(res.status, res.text, res.headers.get('x-request-id'));
  });

  it('answers 413 from the Content-Length alone, before reading a huge body', async () => {
    const res = await fetch(`${t.url}${SUBMIT}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.devKey}`, ...json },
      body: Buffer.alloc(8 * 1024 * 1024, 0x20),
    });
    expect(res.status).toBe(413);
    expectEnvelope(res.status, await res.text());
  });
});

describe('deeply nested JSON', () => {
  const deepObject = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
  const deepArray = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;

  it.each([
    ['an object 10k levels deep', deepObject],
    ['an array 10k levels deep', deepArray],
    ['a field holding 10k nested arrays', JSON.stringify({ ...PROMPT_BODY, prompt: '@@' }).replace('"@@"', deepArray)],
  ])('refuses %s with 400 naming the body', async (_name, payload) => {
    expect(refused(await submit(payload), 400, 'InvalidParameterValue')).toBe(`body: nested deeper than ${MAX_JSON_DEPTH} levels`);
  });

  it('refuses it before any recursive work: also with an Idempotency-Key (whose fingerprint walks the body)', async () => {
    refused(await submit(deepObject, { ...json, 'idempotency-key': 'deep-1' }), 400, 'InvalidParameterValue');
  });

  it('refuses it on the admin API too', async () => {
    const res = await t.relay.app.inject({
      method: 'POST',
      url: '/admin/v1/accounts',
      headers: { authorization: `Bearer ${t.adminToken}`, ...json },
      payload: deepObject,
    });
    expectEnvelope(res.statusCode, res.body);
    expect(res.statusCode).toBe(400);
  });

  it('still accepts bodies nested as deep as the API needs', async () => {
    const res = await submit(JSON.stringify({ ...PROMPT_BODY, output_config: { resolution: '1080P', aspect_ratio: '16:9' } }));
    expect(res.statusCode, res.body).toBe(200);
  });
});

describe('wrong content types', () => {
  it.each([
    ['text/plain', 'text/plain'],
    ['a form', 'application/x-www-form-urlencoded'],
    ['multipart', 'multipart/form-data; boundary=x'],
    ['XML', 'application/xml'],
    ['garbage', ';;;'],
  ])('answers 415 for %s', async (_name, type) => {
    const message = refused(await submit(JSON.stringify(PROMPT_BODY), { 'content-type': type }), 415, 'UnsupportedMediaType');
    expect(message).toMatch(/^Content-Type: ".*" is not accepted; send application\/json/);
    expect(message).toContain(JSON.stringify(type));
  });

  it.each([
    ['latin1', 'application/json; charset=latin1'],
    ['a quoted UTF-16', 'application/json; Charset="UTF-16"'],
  ])('answers 415 for JSON declared in %s, naming the charset, rather than reading it as UTF-8', async (_name, type) => {
    const message = refused(await submit(JSON.stringify(PROMPT_BODY), { 'content-type': type }), 415, 'UnsupportedMediaType');
    expect(message).toMatch(/^Content-Type: charset=(latin1|UTF-16) is not accepted; JSON is sent as UTF-8/);
  });

  it.each(['application/json; charset=utf-8', 'application/json;charset="UTF8"', 'application/json; charset=US-ASCII', 'application/json; foo=bar'])('takes %s', async (type) => {
    expect((await submit(JSON.stringify(PROMPT_BODY), { 'content-type': type })).statusCode).toBe(200);
  });

  it("tells a curl user what -d sent and how to send JSON", async () => {
    const message = refused(await submit(JSON.stringify(PROMPT_BODY), { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UnsupportedMediaType');
    expect(message).toBe(
      `Content-Type: "application/x-www-form-urlencoded" is not accepted; send application/json (curl -d sends that type: add -H 'Content-Type: application/json')`,
    );
  });

  it('reads a body sent with no Content-Type as JSON (the seed marks the header optional), and still refuses broken JSON', async () => {
    expect((await submit(JSON.stringify(PROMPT_BODY), {})).statusCode).toBe(200);
    expect(refused(await submit('{"model_name": ', {}), 400, 'InvalidParameter')).toBe('body: malformed JSON');
  });

  it('answers 400 naming the body when there is no body and no Content-Type', async () => {
    const res = await t.relay.app.inject({ method: 'POST', url: SUBMIT, headers: { authorization: `Bearer ${t.devKey}` } });
    expect(refused(res, 400, 'MissingParameter')).toMatch(/^body:/);
  });

  it('answers 400 naming the body for an empty JSON body', async () => {
    expect(refused(await submit(''), 400, 'MissingParameter')).toMatch(/^body:/);
  });
});

describe('invalid UTF-8', () => {
  const withBytes = (bytes: number[]) =>
    Buffer.concat([Buffer.from('{"model_name":"GEM","model_version":"3.0","prompt":"a'), Buffer.from(bytes), Buffer.from('"}')]);

  it.each([
    ['a lone continuation byte', [0x80]],
    ['0xFF', [0xff]],
    ['a truncated sequence', [0xe2, 0x82]],
    ['an overlong encoding of "/"', [0xc0, 0xaf]],
    ['a UTF-16 surrogate encoded as UTF-8', [0xed, 0xa0, 0x80]],
  ])('refuses %s inside a string with 400 (never silently replaced)', async (_name, bytes) => {
    expect(refused(await submit(withBytes(bytes)), 400, 'InvalidParameter')).toBe('body: not valid UTF-8');
  });

  it('accepts real multi-byte text', async () => {
    const res = await submit(Buffer.from(JSON.stringify({ ...PROMPT_BODY, prompt: '雪の中の赤い狐 🦊' }), 'utf8'));
    expect(res.statusCode, res.body).toBe(200);
  });
});

describe('malformed JSON', () => {
  it.each(['{', '{"a":}', '{"model_name":"GEM",}', 'nul', '"unterminated', '\u0000'])(
    'refuses %j with 400 naming the body',
    async (payload) => {
      expect(refused(await submit(payload), 400, 'InvalidParameter')).toMatch(/^body: malformed JSON/);
    },
  );

  it.each(['{"__proto__":{"admin":true}}', '{"prompt":"x","output_config":{"__proto__":{}}}', '{"constructor":{"prototype":{}}}'])(
    'refuses prototype-poisoning keys in well-formed JSON %j, saying so',
    async (payload) => {
      expect(refused(await submit(payload), 400, 'InvalidParameter')).toMatch(/^(body|output_config): a key named "(__proto__|constructor)" is not allowed/);
    },
  );

  it.each([
    ['{"output_config":{"storage_mode":{"":{"__proto__":null}}}}', 'output_config.storage_mode[""]'],
    ['{"":{"__proto__":1}}', '[""]'],
    ['{"output_config":{"odd key":{"constructor":{"prototype":{}}}}}', 'output_config["odd key"]'],
  ])('names an empty or odd key above a poisoning one as the schema errors do: %j → %s', async (payload, field) => {
    expect(refused(await submit(payload), 400, 'InvalidParameter')).toBe(`${field}: a key named ${payload.includes('__proto__') ? '"__proto__"' : '"constructor"'} is not allowed (prototype poisoning)`);
  });
});
