import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { seedBody } from '../helpers/seed';
import { solidPng } from '../helpers/images';

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

describe('operations endpoints', () => {
  it('/healthz and /readyz answer without auth', async () => {
    expect((await t.api.get('/healthz')).body).toEqual({ status: 'ok' });
    expect((await t.api.get('/readyz')).body).toMatchObject({ status: 'ready', database: true, accepting: true });
  });

  it('/readyz answers not ready when the database does not answer, instead of hanging with it', async () => {
    const stalled = await startTestRelay();
    try {
      let pings = 0;
      stalled.relay.store.ping = () => (pings++, new Promise<boolean>(() => {})); // a lock or a dead connection: no answer, ever
      const res = await stalled.api.get('/readyz');
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ status: 'not ready', database: false, accepting: true });
      // Probes that follow wait on the ping still in flight rather than start one each (each would hold a connection).
      expect((await stalled.api.get('/readyz')).status).toBe(503);
      expect(pings).toBe(1);
    } finally {
      await stalled.close();
    }
  });

  it('/metrics exposes request, task and queue metrics in Prometheus text', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    await waitForTask(t.relay, res.body.request_id);
    const metrics = await t.api.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    expect(metrics.text).toMatch(/aigc_relay_http_requests_total\{route="\/tencent-vod\/v1\/aigc-image",method="POST",status="200"\} 1/);
    // Node's default process metrics under the relay's prefix, once (not aigc_relay_process_process_…).
    expect(metrics.text).toMatch(/^aigc_relay_process_cpu_user_seconds_total \d/m);
    expect(metrics.text).not.toMatch(/process_process/);
    expect(metrics.text).toMatch(/aigc_relay_tasks\{state="succeeded"\} 1/);
    expect(metrics.text).toMatch(/aigc_relay_tasks_finished_total\{outcome="succeeded",provider="local-preview"\} 1/);
    expect(metrics.text).toMatch(/aigc_relay_queue_depth 0/);
    expect(metrics.text).toMatch(/aigc_relay_task_inference_seconds_count\{provider="local-preview"\} 1/);
  });

  it('/openapi.json is generated from the route schemas, including the submit body and error envelope', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    expect(doc.openapi).toMatch(/^3\./);
    const submit = doc.paths['/tencent-vod/v1/aigc-image'].post;
    const body = submit.requestBody.content['application/json'].schema;
    expect(body.properties.model_name).toBeDefined();
    const outputConfig = body.properties.output_config.anyOf.find((s: { type?: string }) => s.type === 'object');
    expect(outputConfig.properties.resolution).toBeDefined();
    expect(body.additionalProperties).toBe(false);
    expect(Object.keys(submit.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '402', '413', '415', '429', '500', '503']));
    // The download's refusals come from the one code → status table too (403 for a refused link, 416 for a range).
    const download = doc.paths['/tencent-vod/v1/files/{id}'].get.responses;
    expect(download['403'].description).toBe('AuthFailure.SignatureFailure, AuthFailure.SignatureExpire');
    expect(download['401'].description).toBe('AuthFailure');
    expect(download['416'].description).toBe('InvalidParameterValue.Range');
    // What the public routes answer when they succeed, in its real content type.
    expect(Object.keys(doc.paths['/tencent-vod/v1/files/{id}'].get.responses['200'].content)).toEqual(['image/jpeg', 'image/png', 'image/webp']);
    expect(doc.paths['/tencent-vod/v1/files/{id}'].get.responses).toHaveProperty('206');
    expect(doc.paths['/tencent-vod/v1/files/{id}'].get.responses).toHaveProperty('304');
    expect(doc.paths['/tencent-vod/v1/files/{id}'].get.security).toEqual([{}, { bearer: [] }]); // a signed link, or the owner's key
    expect(Object.keys(doc.paths['/tencent-vod/v1/files'].post.requestBody.content)).toEqual(['multipart/form-data', 'image/jpeg', 'image/png', 'image/webp']);
    expect(Object.keys(doc.paths['/tencent-vod/v1/requests/{id}/events'].get.responses['200'].content)).toEqual(['text/event-stream']);
    expect(Object.keys(doc.paths['/readyz'].get.responses)).toEqual(['200', '503']);
    const detail = doc.paths['/tencent-vod/v1/query/{id}'].get.responses['200'].content['application/json'].schema.properties.Response;
    expect(detail.properties.AigcImageTask.properties.Output.properties.FileInfos.items.properties).toHaveProperty('FileUrl');
    for (const path of ['/tencent-vod/v1/requests/{id}/status', '/tencent-vod/v1/requests/{id}', '/tencent-vod/v1/requests/{id}/cancel', '/tencent-vod/v1/query/{id}', '/admin/v1/accounts']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    // An admin route that reads a body answers a body's refusals too; one that reads none, not.
    expect(Object.keys(doc.paths['/admin/v1/accounts'].post.responses)).toEqual(expect.arrayContaining(['201', '400', '401', '413', '415']));
    expect(Object.keys(doc.paths['/admin/v1/prices'].get.responses)).not.toContain('415');
    // The client's own account, ledger, prices and tasks.
    for (const path of ['/tencent-vod/v1/account', '/tencent-vod/v1/account/ledger', '/tencent-vod/v1/prices', '/tencent-vod/v1/requests']) {
      expect(doc.paths[path]?.get?.security, path).toEqual([{ bearer: [] }]);
    }
    // The client's status words, listed for generated clients (matched in any case all the same: client-account.test.ts).
    const statusParam = doc.paths['/tencent-vod/v1/requests'].get.parameters.find((p: { name: string }) => p.name === 'status');
    expect(statusParam.schema.anyOf.flatMap((s: { enum: string[] }) => s.enum)).toEqual(['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED']);
    // A busy or unavailable database is a 503 on any route that reads or writes it: every route with errors says so.
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>)) {
      for (const [method, operation] of Object.entries(methods)) {
        if (operation.responses['500']) expect(operation.responses, `${method} ${path}`).toHaveProperty('503');
      }
    }
  });

  it('/openapi.json names AIGC_RELAY_PUBLIC_URL as its server (a path prefix there reaches clients), and no server without one', async () => {
    expect((await t.api.get('/openapi.json')).body.servers).toBeUndefined();
    const behindProxy = await startTestRelay({ env: { AIGC_RELAY_PUBLIC_URL: 'https://relay.example.com/api' } });
    try {
      const doc = (await behindProxy.relay.app.inject({ method: 'GET', url: '/openapi.json' })).json();
      expect(doc.servers).toEqual([{ url: 'https://relay.example.com/api' }]);
    } finally {
      await behindProxy.close();
    }
  });

  it("/openapi.json's submit body, compiled by a client's validator, accepts what the relay accepts and refuses what it refuses", async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const schema = doc.paths['/tencent-vod/v1/aigc-image'].post.requestBody.content['application/json'].schema;
    // OpenAPI 3.0: `example` is its keyword and `nullable` its way of writing null.
    const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
    // The seed's example with an image of this relay in place of the seed's VOD FileId, so the relay takes it whole:
    // `"type": "file"` and `"url": ""` in its file_infos.
    const upload = await fetch(`${t.url}/tencent-vod/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'image/png' },
      body: new Uint8Array((await solidPng('#123456', 16, 16)).data),
    });
    expect(upload.status).toBe(201);
    const fileId = ((await upload.json()) as { file_id: string }).file_id;
    const seed = seedBody() as Record<string, unknown> & { file_infos: Array<Record<string, unknown>> };
    const seedWithOurFile = { ...seed, session_id: '', file_infos: [{ ...seed.file_infos[0], file_id: fileId }] };
    expect(seedWithOurFile.file_infos[0]).toMatchObject({ type: 'file', url: '' });
    const accepted: Array<Record<string, unknown>> = [
      seedWithOurFile,
      { ...PROMPT_BODY, model_name: 'gem', tasks_priority: '-3', file_infos: '', output_config: null, session_id: null },
      { ...PROMPT_BODY, output_config: { resolution: '2k', storage_mode: 'PERMANENT', aspect_ratio: '' } },
    ];
    for (const example of accepted) {
      expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
      const res = await t.api.post('/tencent-vod/v1/aigc-image', example);
      expect(res.status, res.text).toBe(200);
    }
    // Not sent (nothing here may fetch a URL), only checked: a URL input in other letter cases.
    expect(validate({ ...seed, file_infos: [{ type: 'URL', url: 'HTTPS://Example.COM/a.png', file_id: '' }] })).toBe(true);
    const refused: Array<[Record<string, unknown>, string]> = [
      [{ ...PROMPT_BODY, model_name: 'Gemini' }, 'model_name'],
      [{ ...PROMPT_BODY, unknown: 1 }, 'unknown'],
      [{ ...PROMPT_BODY, tasks_priority: 11 }, 'tasks_priority'],
      [{ ...PROMPT_BODY, output_config: { resolution: '3K' } }, 'output_config.resolution'],
      [{ ...seedWithOurFile, file_infos: [{ ...seedWithOurFile.file_infos[0], type: 'Base64' }] }, 'file_infos[0].type'],
    ];
    for (const [example, field] of refused) {
      expect(validate(example), field).toBe(false);
      const res = await t.api.post('/tencent-vod/v1/aigc-image', example);
      expect(res.status).toBe(400);
      expect(res.body.Response.Error.Message.startsWith(`${field}: `), res.body.Response.Error.Message).toBe(true);
    }
  });

  it("/openapi.json's Idempotency-Key, compiled by a client's validator, accepts the keys the relay takes and refuses the rest", async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const cases: Array<[string, boolean]> = [['a', true], ['a b', true], ['k'.repeat(255), true], ['', false], ['ü', false], ['k'.repeat(256), false]];
    const routes: Array<[string, string, unknown]> = [
      ['/tencent-vod/v1/aigc-image', '/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, model_name: 'nope' }],
      ['/admin/v1/accounts/{id}/top-ups', '/admin/v1/accounts/acct_missing/top-ups', { amount: 1 }],
    ];
    for (const [path, url, body] of routes) {
      const parameter = doc.paths[path].post.parameters.find((p: { name: string }) => p.name === 'idempotency-key');
      const validate = new Ajv({ strict: false }).compile(parameter.schema);
      // Only checked (fetch trims a header's ends): the relay refuses spaces there, so the schema must too.
      expect([validate(' a'), validate('a ')]).toEqual([false, false]);
      for (const [key, taken] of cases) {
        expect(validate(key), `${path} ${JSON.stringify(key)}`).toBe(taken);
        // Each request is refused later for its body or account (400 naming model_name, 404), never for its key.
        const res = await (path.startsWith('/admin') ? t.admin : t.api).post(url, body, { 'idempotency-key': key });
        expect(res.body.Response.Error.Message.startsWith('Idempotency-Key: '), `${path} ${JSON.stringify(key)}`).toBe(!taken);
      }
    }
  });

  it('/openapi.json is OpenAPI 3.0 throughout: schema examples are `example`, never a JSON Schema `examples` array', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const arrays: string[] = [];
    const visit = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'examples' && Array.isArray(value)) arrays.push(path);
        if (key !== 'example') visit(value, `${path}/${key}`);
      }
    };
    visit(doc, '');
    expect(arrays).toEqual([]);
    const fileInfo = doc.paths['/tencent-vod/v1/aigc-image'].post.requestBody.content['application/json'].schema.properties.file_infos;
    expect(fileInfo.anyOf[0].items.properties.file_id.example).toBe('387702299774574677');
  });

  it('/openapi.json documents a success answer for every operation (a client generated from it knows every shape)', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const undocumented: string[] = [];
    for (const [path, operations] of Object.entries<Record<string, { responses?: Record<string, unknown> }>>(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (!Object.keys(operation.responses ?? {}).some((code) => /^[23]\d\d$/.test(code))) undocumented.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(undocumented).toEqual([]);
    // Every success that has a body says what it is (only 204 and 304 have none): /healthz and /metrics included.
    const shapeless: string[] = [];
    for (const [path, operations] of Object.entries<Record<string, { responses: Record<string, { content?: unknown }> }>>(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const [code, response] of Object.entries(operation.responses)) {
          if (/^[23]\d\d$/.test(code) && code !== '204' && code !== '304' && !response.content) shapeless.push(`${method.toUpperCase()} ${path} ${code}`);
        }
      }
    }
    expect(shapeless).toEqual([]);
    // The admin answers are described field by field, in the API's style.
    const task = doc.paths['/admin/v1/tasks/{id}'].get.responses['200'].content['application/json'].schema;
    expect(Object.keys(task.properties)).toEqual(expect.arrayContaining(['account_id', 'created_at', 'started_at', 'input', 'result', 'logs']));
  });

  it('/openapi.json gives every operation a unique camelCase operationId, and keeps the ones clients already use', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const ids: Record<string, string | undefined> = {};
    for (const [path, operations] of Object.entries<Record<string, { operationId?: string }>>(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) ids[`${method.toUpperCase()} ${path}`] = operation.operationId;
    }
    expect(Object.entries(ids).filter(([, id]) => id === undefined).map(([operation]) => operation)).toEqual([]);
    expect(Object.values(ids).filter((id) => !/^[a-z][A-Za-z0-9]+$/.test(id ?? ''))).toEqual([]);
    const values = Object.values(ids);
    expect(values.filter((id, i) => values.indexOf(id) !== i)).toEqual([]);
    // Generated clients name their methods after these: renaming one breaks them. New operations may be added.
    expect(ids).toMatchObject({
      'GET /healthz': 'getHealth',
      'GET /readyz': 'getReadiness',
      'GET /metrics': 'getMetrics',
      'POST /tencent-vod/v1/aigc-image': 'submitImageTask',
      'GET /tencent-vod/v1/requests/{id}/status': 'getRequestStatus',
      'GET /tencent-vod/v1/requests/{id}': 'getRequestResult',
      'PUT /tencent-vod/v1/requests/{id}/cancel': 'cancelRequest',
      'GET /tencent-vod/v1/query/{id}': 'describeTaskDetail',
      'GET /tencent-vod/v1/requests/{id}/events': 'streamRequestEvents',
      'GET /tencent-vod/v1/files/{id}': 'downloadFile',
      'POST /tencent-vod/v1/files': 'uploadFile',
      'DELETE /tencent-vod/v1/files/{id}': 'deleteFile',
      'POST /admin/v1/accounts': 'createAccount',
      'GET /admin/v1/accounts': 'listAccounts',
      'GET /admin/v1/accounts/{id}': 'getAccount',
      'PATCH /admin/v1/accounts/{id}': 'updateAccount',
      'POST /admin/v1/accounts/{id}/webhook-secret': 'rotateWebhookSecret',
      'POST /admin/v1/accounts/{id}/keys': 'createApiKey',
      'GET /admin/v1/accounts/{id}/keys': 'listApiKeys',
      'GET /admin/v1/keys/{id}': 'getApiKey',
      'PATCH /admin/v1/keys/{id}': 'updateApiKey',
      'DELETE /admin/v1/keys/{id}': 'revokeApiKey',
      'POST /admin/v1/accounts/{id}/top-ups': 'topUpAccount',
      'POST /admin/v1/accounts/{id}/adjustments': 'adjustBalance',
      'GET /admin/v1/accounts/{id}/ledger': 'listLedgerEntries',
      'GET /admin/v1/prices': 'getPrices',
      'PUT /admin/v1/prices': 'replacePrices',
      'DELETE /admin/v1/prices': 'resetPrices',
      'GET /admin/v1/tasks': 'listTasks',
      'GET /admin/v1/tasks/{id}': 'getTask',
      'POST /admin/v1/tasks/{id}/fail': 'forceFailTask',
      'POST /admin/v1/tasks/{id}/poll': 'repollTask',
      'POST /admin/v1/tasks/{id}/redeliver': 'redeliverTaskWebhook',
      'GET /admin/v1/audit': 'runAudit',
      'GET /admin/v1/webhooks': 'listWebhookDeliveries',
      'POST /admin/v1/webhooks/{id}/replay': 'replayWebhookDelivery',
      'POST /admin/v1/channels': 'createChannel',
      'GET /admin/v1/channels': 'listChannels',
      'GET /admin/v1/channels/{id}': 'getChannel',
      'PATCH /admin/v1/channels/{id}': 'updateChannel',
      'DELETE /admin/v1/channels/{id}': 'deleteChannel',
    });
  });

  it('/openapi.json lists the 400 an operation answers for an id over the router’s length, or a query parameter given twice', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const longId = 'x'.repeat(200);
    const undocumented: string[] = [];
    const check = async (method: string, path: string, url: string) => {
      const operation = doc.paths[path][method];
      const admin = JSON.stringify(operation.security ?? []).includes('admin');
      const res = await (admin ? t.admin : t.api).request(method.toUpperCase(), url, ['post', 'patch', 'put'].includes(method) ? {} : undefined);
      if (!(String(res.status) in operation.responses)) undocumented.push(`${method.toUpperCase()} ${path} → ${res.status}`);
    };
    for (const [path, operations] of Object.entries<Record<string, unknown>>(doc.paths)) {
      if (!path.includes('{')) continue;
      for (const method of Object.keys(operations)) await check(method, path, path.replace(/\{[^}]+\}/g, longId));
    }
    await check('get', '/tencent-vod/v1/files/{id}', '/tencent-vod/v1/files/file_x?expires=0&expires=1&signature=s');
    expect(undocumented).toEqual([]);
  });

  it('/openapi.json names the headers the relay answers with: X-Request-Id, Retry-After, Idempotent-Replayed, Preference-Applied', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    const missing: string[] = [];
    type Operation = { parameters?: Array<{ in: string; name: string }>; responses: Record<string, { headers?: object; content?: object }> };
    for (const [path, operations] of Object.entries<Record<string, Operation>>(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const asked = (operation.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
        for (const [code, response] of Object.entries(operation.responses)) {
          const want = ['x-request-id'];
          if ((code === '429' || code === '503') && JSON.stringify(response.content ?? {}).includes('ErrorEnvelope')) want.push('retry-after');
          if (code.startsWith('2') && asked.includes('idempotency-key')) want.push('idempotent-replayed');
          if (code === '200' && asked.includes('prefer')) want.push('preference-applied');
          const documented = Object.keys(response.headers ?? {}).map((name) => name.toLowerCase());
          for (const name of want) if (!documented.includes(name)) missing.push(`${method.toUpperCase()} ${path} ${code} ${name}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('/openapi.json documents a body that may be left out as optional, and only such a body', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    expect(doc.paths['/admin/v1/accounts/{id}/keys'].post.requestBody.required).toBe(false);
    expect(doc.paths['/admin/v1/tasks/{id}/fail'].post.requestBody.required).toBe(false);
    expect(doc.paths['/admin/v1/keys/{id}'].patch.requestBody.required).toBe(true);
    expect(doc.paths['/tencent-vod/v1/aigc-image'].post.requestBody.required).toBe(true);
  });

  it('/docs serves the rendered reference', async () => {
    const res = await fetch(`${t.url}/docs/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/swagger/i);
  });

  it('unknown routes are 404 in the envelope with a request id', async () => {
    const res = await t.api.get('/nope');
    expect(res.status).toBe(404);
    expect(res.body.Response.Error.Code).toBe('ResourceNotFound');
    expect(res.body.Response.RequestId).toBe(res.headers.get('x-request-id'));
  });

  it('a known path with a method it does not take is 405 with Allow, in the envelope; an unknown one stays 404', async () => {
    const cases: Array<[string, string, string]> = [
      ['GET', '/tencent-vod/v1/aigc-image', 'POST'],
      ['DELETE', '/tencent-vod/v1/requests/some-id/status', 'GET, HEAD'],
      ['POST', '/tencent-vod/v1/requests/some-id/cancel', 'PUT'],
      ['PUT', '/admin/v1/accounts', 'GET, HEAD, POST'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await t.relay.app.inject({ method: method as 'GET', url: `${url}?x=1` });
      expect(res.statusCode, `${method} ${url}`).toBe(405);
      expect(res.headers.allow).toBe(allow);
      const body = res.json();
      expect(body.Response.Error.Code).toBe('UnsupportedOperation.Method');
      expect(body.Response.Error.Message).toBe(`${method} ${url}: not supported here; use ${allow.split(', ').join(' or ')}`);
      expect(body.Response.RequestId).toBe(res.headers['x-request-id']);
    }
    // A segment past the router's parameter length is no route's, whatever the method (its lookup is not to be trusted).
    const long = 'x'.repeat(101);
    for (const [method, url] of [['DELETE', '/nope'], ['GET', '/tencent-vod/v1/requests/a/b/c'], ['DELETE', `/tencent-vod/v1/requests/${long}`], ['PATCH', `/tencent-vod/v1/requests/${long}/status`]]) {
      const res = await t.relay.app.inject({ method: method as 'GET', url });
      expect(res.statusCode).toBe(404);
      expect(res.headers.allow).toBeUndefined();
    }
  });
});
