import { readdirSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { TakeTurns } from '../../src/app/image-check';
import { apiClient } from '../helpers/api';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const MB = 1024 * 1024;
/** A PNG of noise: it does not compress, so its size is about width × height × 3 bytes. */
const noisyPng = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .png()
    .toBuffer();

let t: TestRelay | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function upload(relay: TestRelay, data: Buffer, key = relay.devKey, type = 'image/png') {
  const res = await fetch(`${relay.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type }, body: new Uint8Array(data) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), connection: res.headers.get('connection'), body: (await res.json()) as any };
}

const storedInputs = (relay: TestRelay, accountId: string): string[] => {
  try {
    return readdirSync(path.join(relay.dataDir, 'files', 'inputs', accountId));
  } catch {
    return [];
  }
};

async function devAccount(relay: TestRelay): Promise<string> {
  return (await relay.relay.store.accounts.getKey(relay.devKey.slice(3).split('.')[0]!))!.accountId;
}

describe('upload quota (AIGC_RELAY_UPLOAD_QUOTA_MB)', () => {
  it("refuses an upload that would pass the account's quota with 413 naming it, keeps none of its bytes, and has room again after a delete", async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
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
    expect(storedInputs(t, accountId)).toHaveLength(1);

    expect((await t.api.delete(`/tencent-vod/v1/files/${kept.body.file_id}`)).status).toBe(204);
    expect((await upload(t, second)).status).toBe(201);
    expect(await t.relay.store.files.inputBytes(accountId)).toBe(second.length);
  });

  it('an account whose uploads fill the quota is refused before its body is read; other accounts are not', async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
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
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '0' } });
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
    t = await startTestRelay();
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
    // Refused before its body was read: the connection closes rather than read and discard whatever follows.
    expect(refused.connection).toBe('close');
    // The dev key has no rpm: unaffected.
    expect((await upload(t, png)).status).toBe(201);
  });
});

describe('TakeTurns (image decodes at once)', () => {
  it('runs at most N at a time, the rest first come first served; a failure passes its turn on', async () => {
    const turns = new TakeTurns(2);
    const started: number[] = [];
    const release = new Map<number, (fail: boolean) => void>();
    const job = (n: number) =>
      turns.run(
        () =>
          new Promise<number>((resolve, reject) => {
            started.push(n);
            release.set(n, (fail) => (fail ? reject(new Error(`job ${n} failed`)) : resolve(n)));
          }),
      );
    const jobs = [1, 2, 3, 4].map(job);
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    expect(turns.queued).toBe(2);
    release.get(2)!(true);
    await expect(jobs[1]).rejects.toThrow('job 2 failed');
    expect(started).toEqual([1, 2, 3]);
    release.get(1)!(false);
    expect(await jobs[0]).toBe(1);
    expect(started).toEqual([1, 2, 3, 4]);
    expect(turns.queued).toBe(0);
    release.get(3)!(false);
    release.get(4)!(false);
    expect(await Promise.all(jobs.slice(2))).toEqual([3, 4]);
    // All turns given back: two start at once again.
    const again = [5, 6].map(job);
    await Promise.resolve();
    expect(started.slice(4)).toEqual([5, 6]);
    release.get(5)!(false);
    release.get(6)!(false);
    await Promise.all(again);
  });
});
