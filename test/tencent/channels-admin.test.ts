import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/app/secret-box';
import { capturedLog } from '../helpers/captured-log';
import { runCli } from '../helpers/child';
import { eventually } from '../helpers/eventually';
import { PROMPT_BODY, startTestRelay, tempDir, waitForTask, type TestRelay } from '../helpers/relay';
import { FAST, LOOPBACK_OUTPUTS, makeAccount } from './harness';
import { TencentTestServer } from './server';

/** /admin/v1/channels as the contract has it, the SecretKey sealed at rest and never shown, and the CLI. */
const account = makeAccount(7);
let server: TencentTestServer;
let t: TestRelay;
const { logger, lines: logLines } = capturedLog('trace');

beforeAll(async () => {
  server = await TencentTestServer.start({ accounts: [account] });
  t = await startTestRelay({ env: LOOPBACK_OUTPUTS, overrides: { logger, tencent: FAST } });
});
afterAll(async () => {
  await t.close();
  await server.close();
});

const body = (extra: Record<string, unknown> = {}) => ({
  provider: 'tencent-vod',
  name: 'primary',
  secret_id: account.secretId,
  secret_key: account.secretKey,
  sub_app_id: account.subAppId,
  endpoint: server.url,
  ...extra,
});

describe('POST/GET/PATCH/DELETE /admin/v1/channels', () => {
  it('the first channel on a relay without AIGC_RELAY_PUBLIC_URL logs, once, that Tencent cannot fetch its files', async () => {
    const warning = /AIGC_RELAY_PUBLIC_URL is not set/;
    expect(logLines.filter((l) => warning.test(l))).toHaveLength(0); // no channel yet: nothing to say
    // A disabled channel sends Tencent nothing: nothing to say either, until it is put in service.
    const first = await t.admin.post('/admin/v1/channels', body({ name: 'warns', enabled: false }));
    expect(first.status).toBe(201);
    expect(logLines.filter((l) => warning.test(l))).toHaveLength(0); // the pool took it in before the 201
    expect((await t.admin.request('PATCH', `/admin/v1/channels/${first.body.id}`, { enabled: true })).status).toBe(200);
    await eventually('the warning', 5_000, () => (logLines.some((l) => warning.test(l)) ? true : undefined));
    const second = await t.admin.post('/admin/v1/channels', body({ name: 'warns again?' }));
    expect(second.status).toBe(201);
    for (const created of [first, second]) expect((await t.admin.delete(`/admin/v1/channels/${created.body.id}`)).status).toBe(204);
    expect(logLines.filter((l) => warning.test(l))).toHaveLength(1);
  });

  it('creates a channel with defaults and health, and never returns the secret key', async () => {
    const res = await t.admin.post('/admin/v1/channels', body());
    expect(res.status).toBe(201);
    expect(res.text).not.toContain(account.secretKey);
    expect(res.body).not.toHaveProperty('secret_key');
    expect(res.body).toMatchObject({
      id: expect.stringMatching(/^ch_/),
      provider: 'tencent-vod',
      name: 'primary',
      secret_id: account.secretId,
      sub_app_id: account.subAppId,
      region: null,
      endpoint: server.url,
      models: ['GEM', 'Qwen', 'Hunyuan'],
      priority: 0,
      weight: 1,
      max_concurrency: 1,
      enabled: true,
      events_enabled: false,
      health: { circuit: 'closed', consecutive_failures: 0, opened_at: null, in_flight: 0, in_flight_elsewhere: 0, recent_errors: [] },
    });
    const list = await t.admin.get('/admin/v1/channels');
    expect(list.body.channels.map((c: { id: string }) => c.id)).toContain(res.body.id);
    expect(list.text).not.toContain(account.secretKey);
    const one = await t.admin.get(`/admin/v1/channels/${res.body.id}`);
    expect(one.body).toEqual(res.body);
  });

  it('keeps the key sealed at rest (AES-256-GCM bound to the channel id) and out of the logs, even in use', async () => {
    const created = (await t.admin.post('/admin/v1/channels', body({ name: 'sealed', max_concurrency: 3 }))).body;
    const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id;
    expect((await waitForTask(t.relay, id)).state).toBe('succeeded'); // the key works for signing
    const rotated = await t.admin.request('PATCH', `/admin/v1/channels/${created.id}`, { secret_key: account.secretKey, priority: 3 });
    expect(rotated.status).toBe(200);
    expect(rotated.text).not.toContain(account.secretKey);

    for (const file of fs.readdirSync(t.dataDir).filter((f) => f.startsWith('relay.db'))) {
      expect(fs.readFileSync(path.join(t.dataDir, file)).includes(account.secretKey)).toBe(false);
    }
    const stored = (await t.relay.store.channels.getChannel(created.id))!;
    const box = createSecretBox(fs.readFileSync(path.join(t.dataDir, 'secret'), 'utf8').trim());
    expect(stored.secretKeySealed).toMatch(/^v1\./);
    expect(box.open(stored.secretKeySealed, created.id)).toBe(account.secretKey);
    expect(() => box.open(stored.secretKeySealed, 'ch_other')).toThrow(/does not open/);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('')).not.toContain(account.secretKey);
  });

  it('PATCH changes what it names; models are canonicalised; DELETE removes it from the list and routing, GET by id shows it deleted', async () => {
    const created = (await t.admin.post('/admin/v1/channels', body({ name: 'temp', priority: -5 }))).body;
    const patched = await t.admin.request('PATCH', `/admin/v1/channels/${created.id}`, { models: ['gem:3.0', 'hunyuan'], enabled: false, region: 'ap-guangzhou' });
    expect(patched.body).toMatchObject({ models: ['GEM:3.0', 'Hunyuan'], enabled: false, region: 'ap-guangzhou', priority: -5, name: 'temp' });
    const cleared = await t.admin.request('PATCH', `/admin/v1/channels/${created.id}`, { region: null });
    expect(cleared.body.region).toBeNull();
    expect(cleared.body.deleted_at).toBeNull();
    expect((await t.admin.delete(`/admin/v1/channels/${created.id}`)).status).toBe(204);
    // Still shown by id, marked deleted: tasks already upstream on it are followed to their end.
    const deleted = await t.admin.get(`/admin/v1/channels/${created.id}`);
    expect(deleted.status).toBe(200);
    expect(Date.parse(deleted.body.deleted_at)).toBeGreaterThan(0);
    expect((await t.admin.delete(`/admin/v1/channels/${created.id}`)).status).toBe(404);
    expect((await t.admin.get('/admin/v1/channels/ch_nope')).status).toBe(404);
    const list = await t.admin.get('/admin/v1/channels');
    expect(list.body.channels.map((c: { id: string }) => c.id)).not.toContain(created.id);
  });

  it.each([
    [{ secret_key: undefined }, 400, 'MissingParameter', 'secret_key'],
    [{ provider: 'openai' }, 400, 'InvalidParameterValue', 'provider'],
    [{ models: ['GPT'] }, 400, 'InvalidParameterValue', 'models[0]'],
    [{ models: ['GEM:9.9'] }, 400, 'InvalidParameterValue', 'models[0]'],
    [{ endpoint: 'ftp://127.0.0.1:21' }, 400, 'InvalidParameterValue', 'endpoint'],
    [{ endpoint: 'http://127.0.0.1:9000/v2' }, 400, 'InvalidParameterValue', 'endpoint'],
    [{ max_concurrency: 0 }, 400, 'InvalidParameterValue', 'max_concurrency'],
    [{ surprise: 1 }, 400, 'InvalidParameter', 'surprise'],
    [{ name: '   ' }, 400, 'InvalidParameterValue', 'name'],
  ])('rejects %j with %i %s naming the field', async (change, status, code, field) => {
    const res = await t.admin.post('/admin/v1/channels', { ...body(), ...change });
    expect(res.status).toBe(status);
    expect(res.body.Response.Error.Code).toBe(code);
    expect(res.body.Response.Error.Message.startsWith(field)).toBe(true);
  });

  it('refuses a SecretId or SecretKey that cannot go into a request header (an ellipsis pasted from a page, a space), naming it', async () => {
    for (const [field, value] of [['secret_id', 'AKID…'], ['secret_key', 'abc def'], ['secret_id', 'AKID\u00e9']] as const) {
      const res = await t.admin.post('/admin/v1/channels', body({ name: `bad-${field}`, [field]: value }));
      expect(res.status, `${field}=${value}`).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(new RegExp(`^${field}: must be printable ASCII without spaces`));
    }
    const created = (await t.admin.post('/admin/v1/channels', body({ name: 'to-patch' }))).body;
    expect((await t.admin.request('PATCH', `/admin/v1/channels/${created.id}`, { secret_key: 'k\u2026' })).status).toBe(400);
    expect((await t.admin.get('/admin/v1/channels')).body.channels.map((c: { name: string }) => c.name)).not.toContain('bad-secret_id');
  });

  it('needs the admin token; unknown ids are 404', async () => {
    expect((await t.api.get('/admin/v1/channels')).status).toBe(401);
    expect((await t.admin.request('PATCH', '/admin/v1/channels/ch_nope', { enabled: false })).status).toBe(404);
    expect((await t.admin.request('PATCH', '/admin/v1/channels/ch_nope', {})).status).toBe(400);
  });
});

describe('aigc-relay channels add|list|disable', () => {
  it('adds (sealing the key with the data dir secret), lists and disables without printing the key', async () => {
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_LOG_LEVEL: 'silent', TENCENTCLOUD_SECRET_KEY: account.secretKey };
    const add = await runCli(['channels', 'add', '--name', 'cli', '--secret-id', account.secretId, '--sub-app-id', String(account.subAppId), '--models', 'GEM,Qwen:0925', '--max-concurrency', '3', '--events'], env);
    expect(add.code).toBe(0);
    const created = JSON.parse(add.stdout);
    expect(created).toMatchObject({ name: 'cli', models: ['GEM', 'Qwen:0925'], max_concurrency: 3, events_enabled: true, enabled: true, health: null });
    const list = await runCli(['channels', 'list'], env);
    expect(JSON.parse(list.stdout).channels.map((c: { id: string }) => c.id)).toEqual([created.id]);
    const disable = await runCli(['channels', 'disable', created.id], env);
    expect(JSON.parse(disable.stdout).enabled).toBe(false);
    for (const out of [add, list, disable]) expect(out.stdout + out.stderr).not.toContain(account.secretKey);
    const bad = await runCli(['channels', 'add', '--name', 'x', '--secret-id', 'y', '--sub-app-id', '1', '--models', 'GPT'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('models[0]');
  });
});
