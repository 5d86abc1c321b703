import fc from 'fast-check';
import { runInNewContext } from 'node:vm';
import v8 from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope, expectNamesAField } from './envelope';

/**
 * 10,000 random bodies at the submit route, in process (`app.inject`): random JSON of every shape, the valid body
 * with fields swapped for random values or added, random text and random bytes. Whatever arrives, the answer is a
 * 200 for a body that happens to be valid, or a 4xx in the envelope whose message names a field; never a 500, and
 * the process keeps its memory.
 */
const RUNS = 10_000;
let t: TestRelay;

beforeAll(async () => {
  t = await startTestRelay({
    env: {
      // A provider that does not drain, so the run measures the HTTP path; and enough credits for every valid body.
      AIGC_RELAY_PREVIEW_DELAY_MS: '600000',
      AIGC_RELAY_PREVIEW_CONCURRENCY: '1',
      AIGC_RELAY_DEV_BALANCE: String(1e12),
    },
  });
});
afterAll(() => t.close());

const anyJson = fc.jsonValue({ maxDepth: 4 });
const valid = PROMPT_BODY as Record<string, unknown>;

/** Field values a client might plausibly get wrong: right and wrong types, edge strings and numbers. */
const oddValue = fc.oneof(
  anyJson,
  fc.constantFrom('', ' ', 'GEM', 'gem', 'Qwen', '3.0', '2.5', '0925', '1080P', '4K', '16:9', '1:1', 'File', 'Url', 'Enabled', 'Temporary', '-0', '+10', '11', '1e3', 'NaN'),
  fc.constantFrom(0, -0, 1, -1, 10, -10, 11, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2),
  fc.string({ maxLength: 2000, unit: 'grapheme' }),
  fc.constant(null),
);
const fileInfo = fc.dictionary(fc.constantFrom('type', 'file_id', 'url', 'text', 'extra'), oddValue, { maxKeys: 5 });
const outputConfig = fc.dictionary(
  fc.constantFrom('storage_mode', 'resolution', 'aspect_ratio', 'person_generation', 'input_compliance_check', 'output_compliance_check', 'Resolution'),
  oddValue,
  { maxKeys: 6 },
);

/** The valid body with some fields replaced, removed or added. */
const mutated = fc
  .record(
    {
      replace: fc.dictionary(
        fc.constantFrom(...Object.keys(valid), 'negative_prompt', 'enhance_prompt', 'session_id', 'session_context', 'tasks_priority', 'ext_info', 'file_infos'),
        oddValue,
        { maxKeys: 4 },
      ),
      drop: fc.subarray(Object.keys(valid)),
      extra: fc.dictionary(fc.string({ maxLength: 20 }), anyJson, { maxKeys: 2 }),
      files: fc.option(fc.array(fileInfo, { maxLength: 16 })),
      output: fc.option(outputConfig),
    },
    { requiredKeys: ['replace', 'drop'] },
  )
  .map(({ replace, drop, extra, files, output }) => {
    const body: Record<string, unknown> = { ...valid, ...replace, ...(extra ?? {}) };
    for (const key of drop) delete body[key];
    if (files) body.file_infos = files;
    if (output) body.output_config = output;
    return JSON.stringify(body);
  });

/** Bodies that are mostly valid: plausible values everywhere, so the accepting path is exercised too. */
const plausible = fc
  .record({
    model_name: fc.constantFrom('GEM', 'gem', 'Hunyuan', 'Qwen'),
    model_version: fc.constantFrom('3.0', '2.5', '0925'),
    prompt: fc.string({ minLength: 1, maxLength: 300, unit: 'grapheme' }),
    output_config: fc.record(
      { resolution: fc.constantFrom('720P', '1080P', '2K', '4K', '1024x1024'), aspect_ratio: fc.constantFrom('1:1', '16:9', '9:16', '') },
      { requiredKeys: [] },
    ),
    tasks_priority: fc.oneof(fc.integer({ min: -10, max: 10 }), fc.integer({ min: -10, max: 10 }).map(String)),
    session_context: fc.string({ maxLength: 100 }),
  }, { requiredKeys: ['model_name', 'model_version', 'prompt'] })
  .map((body) => JSON.stringify(body));

type Payload = { readonly payload: string | Buffer; readonly contentType: string };
const payloads: fc.Arbitrary<Payload> = fc.oneof(
  { weight: 5, arbitrary: mutated.map((payload) => ({ payload, contentType: 'application/json' })) },
  { weight: 1, arbitrary: plausible.map((payload) => ({ payload, contentType: 'application/json' })) },
  { weight: 2, arbitrary: anyJson.map((v) => ({ payload: JSON.stringify(v) ?? 'null', contentType: 'application/json' })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300 }).map((payload) => ({ payload, contentType: 'application/json' })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ payload: Buffer.from(b), contentType: 'application/json' })) },
  {
    weight: 1,
    arbitrary: fc.record({
      payload: mutated,
      contentType: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/jsonx', ''),
    }),
  },
);

function gc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe(`${RUNS} random submit bodies`, () => {
  it('never crash the relay or get a 500; every refusal is an envelope naming a field', async () => {
    const collect = gc();
    const statuses = new Map<number, number>();
    let heapAfterWarmup = 0;
    let run = 0;
    await fc.assert(
      // Sometimes with an Idempotency-Key (printable or not): its fingerprint walks the whole body.
      fc.asyncProperty(payloads, fc.option(fc.string({ maxLength: 300 }), { freq: 5 }), async ({ payload, contentType }, key) => {
        const res = await t.relay.app.inject({
          method: 'POST',
          url: '/tencent-vod/v1/aigc-image',
          headers: {
            authorization: `Bearer ${t.devKey}`,
            ...(contentType ? { 'content-type': contentType } : {}),
            ...(key !== null ? { 'idempotency-key': key } : {}),
          },
          payload,
        });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode === 200) {
          expect(JSON.parse(res.body).status).toBe('IN_QUEUE');
        } else {
          const body = expectEnvelope(res.statusCode, res.body, res.headers['x-request-id'] as string);
          expectNamesAField(body.Response.Error.Message);
        }
        if (++run === 1000) {
          collect();
          heapAfterWarmup = process.memoryUsage().heapUsed;
        }
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20_240_901) },
    );
    // Both outcomes were exercised (a fuzzer that only ever hits one branch tests little).
    expect(statuses.get(200) ?? 0).toBeGreaterThan(100);
    expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThan(1);
    expect([...statuses.keys()].some((s) => s >= 500)).toBe(false);

    // Bounded memory: what 9,000 more requests leave behind after a full GC is small (accepted tasks are rows in
    // SQLite and ids in the queue index, not request objects).
    collect();
    const grown = process.memoryUsage().heapUsed - heapAfterWarmup;
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    expect((await t.api.get('/healthz')).status).toBe(200);
    // The time limit guards against a hang; it is not what this test measures (npm run bench does). About 20 s alone,
    // but one at a time each accepted submit waits for a writer-thread round trip, and the run needs some 35 s of CPU:
    // beside the other test files and other work on 2 cores (load 10 to 15), where this process got a quarter of a
    // core or less, it took 135 s to 185 s, and once ran past the 180 s it had here.
  }, 600_000);
});
