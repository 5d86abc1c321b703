import fc from 'fast-check';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { seedBody } from '../helpers/seed';

/** The seed page's own example body, verbatim. */
const SEED_BODY = seedBody() as Record<string, unknown> & { output_config: Record<string, unknown> };

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

const inject = (payload: unknown, headers: Record<string, string> = {}) =>
  t.relay.app.inject({
    method: 'POST',
    url: '/tencent-vod/v1/aigc-image',
    headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
  });

/** What the dev account can still spend, from one read: a capture between two reads would count its price twice. */
async function balance(): Promise<number> {
  const key = await t.relay.store.accounts.getKey(t.devKey.slice(3).split('.')[0]!);
  const account = (await t.relay.store.accounts.getAccount(key!.accountId))!;
  return account.balance - account.held;
}

describe('POST /tencent-vod/v1/aigc-image — errors', () => {
  it("the seed's example passes validation and fails only on its unknown file, naming it", async () => {
    const before = await balance();
    const res = await inject(SEED_BODY);
    expect(res.statusCode).toBe(400);
    const error = res.json().Response.Error;
    expect(error.Code).toBe('InvalidParameterValue');
    expect(error.Message).toMatch(/^file_infos\[0\]\.file_id: file "387702299774574677" does not exist/);
    expect(res.json().Response.RequestId).toBe(res.headers['x-request-id']);
    expect(await balance()).toBe(before); // nothing charged
  });

  it('with VOD FileIds on but no Tencent channel for the model, the refusal of the seed\'s FileId says why', async () => {
    const vod = await startTestRelay({ env: { AIGC_RELAY_VOD_FILE_IDS: 'on' } });
    try {
      const res = await vod.api.post('/tencent-vod/v1/aigc-image', SEED_BODY);
      expect(res.status).toBe(400);
      expect(res.body.Response.Error.Message).toBe(
        'file_infos[0].file_id: file "387702299774574677" is not a file of this relay, and a Tencent VOD FileId is passed ' +
          'upstream only to a Tencent channel; none serves GEM 3.0 now',
      );
      // An id that is no VOD FileId is simply unknown.
      const ours = await vod.api.post('/tencent-vod/v1/aigc-image', { ...SEED_BODY, file_infos: [{ type: 'File', file_id: 'file_nope' }] });
      expect(ours.body.Response.Error.Message).toMatch(/^file_infos\[0\]\.file_id: file "file_nope" does not exist/);
    } finally {
      await vod.close();
    }
  });

  it.each([
    ['unknown resolution', { ...PROMPT_BODY, output_config: { resolution: '3K' } }, 'InvalidParameterValue', /^output_config\.resolution: .*3K.*720P, 1080P/],
    ['missing model_name', { model_version: '3.0', prompt: 'x' }, 'MissingParameter', /^model_name/],
    ['bad version for the model', { ...PROMPT_BODY, model_name: 'Qwen' }, 'InvalidParameterValue', /^model_version/],
    ['unknown field', { ...PROMPT_BODY, colour: 'red' }, 'InvalidParameter', /^colour: unknown field/],
    ['no prompt and no images', { model_name: 'GEM', model_version: '2.5' }, 'MissingParameter', /^prompt/],
    ['priority out of range', { ...PROMPT_BODY, tasks_priority: 11 }, 'InvalidParameterValue', /^tasks_priority/],
    ['aspect ratio on Hunyuan', { model_name: 'Hunyuan', model_version: '3.0', prompt: 'x', output_config: { aspect_ratio: '1:1' } }, 'InvalidParameterValue', /^output_config\.aspect_ratio/],
  ])('%s → 400 naming the field', async (_name, body, code, message) => {
    const res = await inject(body);
    expect(res.statusCode).toBe(400);
    expect(res.json().Response.Error.Code).toBe(code);
    expect(res.json().Response.Error.Message).toMatch(message);
  });

  it('malformed JSON → 400 InvalidParameter naming the body', async () => {
    const res = await inject('{"model_name": ');
    expect(res.statusCode).toBe(400);
    expect(res.json().Response.Error).toMatchObject({ Code: 'InvalidParameter', Message: 'body: malformed JSON' });
  });

  it('non-JSON content type → 415', async () => {
    const res = await inject('model_name=GEM', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.statusCode).toBe(415);
    expect(res.json().Response.Error.Code).toBe('UnsupportedMediaType');
  });

  it('body over 1 MiB → 413 saying the limit', async () => {
    const res = await inject({ ...PROMPT_BODY, prompt: 'x'.repeat(1_100_000) });
    expect(res.statusCode).toBe(413);
    expect(res.json().Response.Error).toMatchObject({
      Code: 'RequestSizeLimitExceeded',
      Message: 'body: larger than 1048576 bytes (1 MiB), the limit for this route',
    });
  });

  it('a compressed body → 415 naming the encoding (not "invalid UTF-8"); nothing charged', async () => {
    const before = await balance();
    const res = await inject(gzipSync(JSON.stringify(PROMPT_BODY)), { 'content-encoding': 'gzip' });
    expect(res.statusCode).toBe(415);
    expect(res.json().Response.Error).toMatchObject({ Code: 'UnsupportedMediaType', Message: 'Content-Encoding: "gzip" is not accepted; send the body uncompressed' });
    expect((await inject(PROMPT_BODY, { 'content-encoding': 'identity' })).statusCode).toBe(200);
    expect(await balance()).toBe(before - (await t.admin.get('/admin/v1/prices')).body.prices['GEM:3.0']['1K']);
  });

  it('an unknown query parameter (a misspelt ?webhook=) → 400 naming it; nothing charged', async () => {
    const before = await balance();
    const res = await t.relay.app.inject({
      method: 'POST',
      url: '/tencent-vod/v1/aigc-image?webhok=https%3A%2F%2Fhooks.example%2Fdone',
      headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json' },
      payload: JSON.stringify(PROMPT_BODY),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().Response.Error).toMatchObject({ Code: 'InvalidParameter', Message: 'webhok: unknown query parameter (the only one is webhook)' });
    // A name that is not plain is quoted and cut, as an unknown body field's is.
    const odd = await t.relay.app.inject({
      method: 'POST',
      url: `/tencent-vod/v1/aigc-image?${'x'.repeat(500)}%0A=1`,
      headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json' },
      payload: JSON.stringify(PROMPT_BODY),
    });
    expect(odd.statusCode).toBe(400);
    expect(odd.json().Response.Error.Message).toMatch(/^\["x{50,70}…"\]: unknown query parameter/);
    expect(await balance()).toBe(before);
  });

  it('status ?logs takes 1, true, 0 or false; anything else is a 400 naming it', async () => {
    const id = (await inject(PROMPT_BODY)).json().request_id as string;
    for (const logs of ['1', 'true', '0', 'false']) expect((await t.api.get(`/tencent-vod/v1/requests/${id}/status?logs=${logs}`)).status).toBe(200);
    const res = await t.api.get(`/tencent-vod/v1/requests/${id}/status?logs=yes`);
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toMatch(/^logs: must be one of/);
  });

  it('insufficient balance → 402 and nothing written', async () => {
    const account = await t.admin.post('/admin/v1/accounts', { name: 'poor', balance: 1 });
    const key = await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {});
    const res = await t.relay.app.inject({
      method: 'POST',
      url: '/tencent-vod/v1/aigc-image',
      headers: { authorization: `Bearer ${key.body.key}`, 'content-type': 'application/json' },
      payload: JSON.stringify(PROMPT_BODY),
    });
    expect(res.statusCode).toBe(402);
    expect(res.json().Response.Error.Code).toBe('FailedOperation.InsufficientBalance');
    expect(await t.relay.store.tasks.listTasks({ accountId: account.body.id, limit: 10 })).toEqual([]);
    expect((await t.admin.get(`/admin/v1/accounts/${account.body.id}`)).body).toMatchObject({ balance: 1, held: 0 });
  });

  it('property: thousands of random and mutated bodies never yield a 500; every 4xx is the envelope naming a field', async () => {
    // `<field path>: <reason>`, e.g. `output_config.resolution: …`, `file_infos[1].url: …`, `["odd key"]: unknown field`,
    // `body[0][0]: …` (a key deep inside a body that is an array of arrays)
    // `model_name[""][0]: …` (an index under an odd key: seed -1026832884 found the pattern lacking it).
    const fieldNames = /^(body(\[\d+\])*|\w+(\[\d+\])*(\.\w+(\[\d+\])*)*|[\w.[\]]*\[".*"\](\[\d+\]|\.\w+)*): \S/;
    const mutation = fc.oneof(
      fc.jsonValue(),
      fc.record({ key: fc.constantFrom(...Object.keys(SEED_BODY), 'output_config', 'x'), value: fc.jsonValue() }).map(({ key, value }) => ({ ...SEED_BODY, [key]: value })),
      fc.record({ key: fc.constantFrom(...Object.keys(SEED_BODY.output_config)), value: fc.jsonValue() }).map(({ key, value }) => ({
        ...PROMPT_BODY,
        output_config: { ...SEED_BODY.output_config, [key]: value },
      })),
      fc.constantFrom(...Object.keys(SEED_BODY)).map((key) => {
        const copy: Record<string, unknown> = { ...SEED_BODY };
        delete copy[key];
        return copy;
      }),
      fc.string().map((s) => `{"model_name":${s}`), // broken JSON text
    );
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(mutation, async (body) => {
        const res = await inject(typeof body === 'string' ? body : JSON.stringify(body));
        expect(res.statusCode).not.toBe(500);
        if (res.statusCode === 200) {
          accepted++;
          return;
        }
        expect(res.statusCode).toBeGreaterThanOrEqual(400);
        expect(res.statusCode).toBeLessThan(500);
        const error = res.json().Response.Error;
        expect(typeof error.Code).toBe('string');
        expect(error.Message).toMatch(fieldNames);
      }),
      {
        numRuns: 2500,
        // Found by a run whose random seed was 1255522036, once in about fifteen runs: the relay answered it right
        // (400 naming `body[0][0]`), the pattern above did not allow two indices. Kept so every run tries it.
        // Seed -904182823: a poisoning key under an empty one was named `output_config.storage_mode.`; the empty key
        // is now named as the schema's errors name it, `output_config.storage_mode[""]`. Seed -1026832884: the relay
        // named `model_name[""][0]` right; the pattern did not allow an index after an odd key.
        examples: [
          [[[{ ['__proto__']: false }]]],
          [{ ...PROMPT_BODY, output_config: { ...SEED_BODY.output_config, storage_mode: { '': { ['__proto__']: null } } } }],
          [{ ...SEED_BODY, model_name: { '': [JSON.parse('{"__proto__":""}')] } }],
        ],
      },
    );
    expect(accepted).toBeLessThan(2500); // sanity: the generator produced invalid bodies too
  });
});
