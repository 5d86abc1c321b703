import { describe, expect, it } from 'vitest';
import { UPLOADS_IN_PROGRESS_PER_ACCOUNT } from '../../src/app/uploads';
import { apiClient } from '../helpers/api';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { devAccount, MB, noisyPng, storedInputs, upload } from './upload-helpers';
import { closedAfterEach } from '../helpers/closed-after-each';

let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

describe('upload quota (AIGC_RELAY_UPLOAD_QUOTA_MB)', () => {
  it("refuses an upload that would pass the account's quota with 413 naming it, keeps none of its bytes, and has room again after a delete", async () => {
    t = await startRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
    const accountId = await devAccount(t);
    const first = await noisyPng(400, 400); // ~450 KB
    const second = await noisyPng(480, 480);
    expect(first.length + second.length).toBeGreaterThan(MB);

    const kept = await upload(t, first);
    expect(kept.status).toBe(201);
    const refused = await upload(t, second);
    expect(refused.status).toBe(413);
    expect(refused.body.Response.Error.Code).toBe('RequestSizeLimitExceeded');
    expect(refused.body.Response.Error.Message).toMatch(/^file: this account's uploads take 0\.\d MB of its 1 MB quota; this file \(0\.\d MB\) would pass it\./);
    expect(await t.relay.store.files.inputBytes(accountId)).toBe(first.length);
    expect(await storedInputs(t, accountId)).toHaveLength(1);

    expect((await t.api.delete(`/tencent-vod/v1/files/${kept.body.file_id}`)).status).toBe(204);
    expect((await upload(t, second)).status).toBe(201);
    expect(await t.relay.store.files.inputBytes(accountId)).toBe(second.length);
  });

  it('an account whose uploads fill the quota is refused before its body is read; other accounts are not', async () => {
    t = await startRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
    const accountId = await devAccount(t);
    await t.relay.store.files.createFile(
      { id: 'file_filler', accountId, purpose: 'input', storageKey: 'inputs/filler.png', contentType: 'image/png', size: MB, width: 1, height: 1 },
      Date.now(),
    );
    // Not an image at all: a check of the body would say 415; the quota answers first.
    const junk = await upload(t, Buffer.from('not an image'));
    expect(junk.status).toBe(413);
    expect(junk.body.Response.Error.Message).toMatch(/uploads take 1 MB of its 1 MB quota\. Delete uploads/);
    const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 10 });
    const key = (await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key;
    expect((await upload(t, await noisyPng(16, 16), key)).status).toBe(201);
  });

  it('0 means no quota', async () => {
    t = await startRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '0' } });
    const accountId = await devAccount(t);
    await t.relay.store.files.createFile(
      { id: 'file_filler', accountId, purpose: 'input', storageKey: 'inputs/filler.png', contentType: 'image/png', size: 10 * 1024 * MB, width: 1, height: 1 },
      Date.now(),
    );
    expect((await upload(t, await noisyPng(16, 16))).status).toBe(201);
  });
});

describe('uploads and rpm', () => {
  it("uploads count against the key's rpm with submits; past it, 429 with Retry-After before the body is read", async () => {
    t = await startRelay();
    const account = await t.admin.post('/admin/v1/accounts', { name: 'limited', balance: 10_000 });
    const key = (await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { rpm: 3 })).body.key as string;
    const png = await noisyPng(16, 16);
    expect((await upload(t, png, key)).status).toBe(201);
    expect((await upload(t, png, key)).status).toBe(201);
    const submit = await apiClient(t.url, key).post('/tencent-vod/v1/aigc-image', {
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'a fox',
      output_config: { resolution: '1080P', aspect_ratio: '16:9' },
    });
    expect(submit.status).toBe(200);
    const refused = await upload(t, Buffer.from('not an image'), key);
    expect(refused.status).toBe(429);
    expect(refused.body.Response.Error.Code).toBe('RequestLimitExceeded');
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    // Refused before its body was read; its few bytes had all arrived, so the connection stays open (one whose body
    // is still coming closes, in refused-bodies.test.ts).
    expect(refused.connection).toBe('keep-alive');
    // A refusal keeps no place among the account's uploads in progress: more refusals than there are places are all
    // about the rate, never about uploads at once.
    const codes: string[] = [];
    for (let i = 0; i < UPLOADS_IN_PROGRESS_PER_ACCOUNT + 2; i++) codes.push((await upload(t, png, key)).body.Response.Error.Code);
    expect(codes).toEqual(codes.map(() => 'RequestLimitExceeded'));
    // The dev key has no rpm: unaffected.
    expect((await upload(t, png)).status).toBe(201);
  });
});
