import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFsFileStorage } from '../../src/adapters/fs/file-storage';
import { TEMPORARY_TTL_MS } from '../../src/app/outputs';
import { removeExpiredFiles } from '../../src/worker/file-cleanup';
import { apiClient, type ApiClient } from '../helpers/api';
import { movableClock } from '../helpers/clock';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { makeImage } from './support';

const clock = movableClock();
let t: TestRelay;
let other: ApiClient;
beforeAll(async () => {
  t = await startTestRelay({ overrides: { clock } });
  const account = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 1000 });
  other = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key);
});
afterAll(() => t.close());

/** Runs a task to completion and returns its first image as the result shows it. */
async function produce(storageMode: 'Temporary' | 'Permanent') {
  const res = await t.api.post('/tencent-vod/v1/aigc-image', {
    ...PROMPT_BODY,
    output_config: { ...PROMPT_BODY.output_config, resolution: '720P', storage_mode: storageMode },
  });
  expect(res.status).toBe(200);
  const task = await waitForTask(t.relay, res.body.request_id);
  expect(task.state).toBe('succeeded');
  const result = await t.api.get(`/tencent-vod/v1/requests/${task.id}`);
  return result.body.images[0] as { url: string; file_id: string; expires_at: string | null; width: number; height: number; content_type: string };
}

async function upload(data: Buffer) {
  const res = await fetch(`${t.url}/tencent-vod/v1/files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'image/png' },
    body: new Uint8Array(data),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { file_id: string; url: string; size: number };
}

const bytesOnDisk = async (fileId: string): Promise<boolean> => {
  const record = await t.relay.store.files.getFile(fileId);
  return record !== undefined && fs.existsSync(path.join(t.dataDir, 'files', record.storageKey));
};

describe('Temporary outputs', () => {
  it('the signed link works until the expiry 7 days out, then answers 403', async () => {
    const image = await produce('Temporary');
    expect(new URL(image.url).searchParams.get('expires')).not.toBe('0');
    expect(Date.parse(image.expires_at!) - clock.now()).toBeGreaterThan(TEMPORARY_TTL_MS - 60_000);

    const fresh = await fetch(image.url);
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get('content-type')).toBe(image.content_type);
    const body = Buffer.from(await fresh.arrayBuffer());
    expect(Number(fresh.headers.get('content-length'))).toBe(body.length);
    expect(fresh.headers.get('cache-control')).toMatch(/^private, max-age=60[0-9]{4}$/);

    clock.advance(TEMPORARY_TTL_MS - 60_000);
    const lastMinute = await fetch(image.url);
    expect(lastMinute.status).toBe(200);
    expect(lastMinute.headers.get('cache-control')).toMatch(/^private, max-age=\d{1,2}$/);

    clock.advance(2 * 60_000);
    const expired = await fetch(image.url);
    expect(expired.status).toBe(403);
    expect(((await expired.json()) as any).Response.Error).toEqual({ Code: 'AuthFailure.SignatureExpire', Message: 'signature: this link has expired' });
    // With the key, an expired file is simply gone: not downloadable, and not an input either (its bytes may be
    // removed by the cleanup at any moment), refused before anything is charged.
    expect((await t.api.get(`/tencent-vod/v1/files/${image.file_id}`)).status).toBe(404);
    const reuse = await t.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, file_infos: [{ type: 'File', file_id: image.file_id }] });
    expect(reuse.status).toBe(400);
    expect(reuse.body.Response.Error.Message).toMatch(/^file_infos\[0\]\.file_id: file "file_[^"]+" does not exist/);
  });

  it('a tampered signature, a moved expiry or a link for another file is 403', async () => {
    const image = await produce('Temporary');
    const url = new URL(image.url);
    const signature = url.searchParams.get('signature')!;

    const flipped = new URL(url);
    flipped.searchParams.set('signature', (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1));
    const later = new URL(url);
    later.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 86_400));
    const unsigned = new URL(url);
    unsigned.searchParams.delete('signature');
    const otherFile = new URL(url.href.replace(image.file_id, 'file_someoneelse'));

    for (const bad of [flipped, later, unsigned, otherFile]) {
      const res = await fetch(bad);
      expect(res.status).toBe(403);
      expect(((await res.json()) as any).Response.Error.Code).toBe('AuthFailure.SignatureFailure');
    }
    expect((await fetch(url)).status).toBe(200);
  });
});

describe('Permanent outputs', () => {
  it('carry expires=0 links and no expiry; the owner can fetch by id and delete, others get 404', async () => {
    const image = await produce('Permanent');
    expect(image.expires_at).toBeNull();
    expect(new URL(image.url).searchParams.get('expires')).toBe('0');
    clock.advance(30 * 24 * 3600 * 1000);
    expect((await fetch(image.url)).status).toBe(200);
    expect((await t.api.get(`/tencent-vod/v1/files/${image.file_id}`)).status).toBe(200);
    expect((await other.get(`/tencent-vod/v1/files/${image.file_id}`)).status).toBe(404);
    expect((await other.delete(`/tencent-vod/v1/files/${image.file_id}`)).status).toBe(404);
    expect((await t.api.delete(`/tencent-vod/v1/files/${image.file_id}`)).status).toBe(204);
    expect((await fetch(image.url)).status).toBe(404);
  });
});

describe('cleanup', () => {
  it('removes the bytes and rows of expired files and nothing else', async () => {
    const storage = createFsFileStorage(path.join(t.dataDir, 'files'));
    const deps = { store: t.relay.store, storage, clock };
    await removeExpiredFiles(deps); // whatever earlier tests left expired

    const old = await produce('Temporary');
    const kept = await produce('Permanent');
    const uploaded = await upload(await makeImage('png'));
    clock.advance(TEMPORARY_TTL_MS + 1000);
    const young = await produce('Temporary');
    for (const id of [old.file_id, kept.file_id, uploaded.file_id, young.file_id]) expect(await bytesOnDisk(id)).toBe(true);
    const oldKey = (await t.relay.store.files.getFile(old.file_id))!.storageKey;

    expect(await removeExpiredFiles(deps)).toBe(1);
    expect(await t.relay.store.files.getFile(old.file_id)).toBeUndefined();
    expect(fs.existsSync(path.join(t.dataDir, 'files', oldKey))).toBe(false);
    for (const id of [kept.file_id, uploaded.file_id, young.file_id]) expect(await bytesOnDisk(id)).toBe(true);
    expect(await removeExpiredFiles(deps)).toBe(0);
  });
});

describe('HTTP semantics: ETag, conditional GET, ranges', () => {
  let png: Buffer;
  let file: { file_id: string; url: string; size: number };
  let etag: string;
  const get = (headers: Record<string, string>, method = 'GET') =>
    fetch(`${t.url}/tencent-vod/v1/files/${file.file_id}`, { method, headers: { authorization: `Bearer ${t.devKey}`, ...headers } });
  beforeAll(async () => {
    png = await makeImage('png', 50, 50);
    file = await upload(png);
    const res = await get({});
    etag = res.headers.get('etag')!;
  });

  it('a full answer has the type, length, a strong ETag and cache headers', async () => {
    const res = await get({});
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('content-length')).toBe(String(png.length));
    expect(etag).toMatch(/^"[^"]+"$/);
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('cache-control')).toBe('private, max-age=86400, immutable');
    expect(res.headers.get('last-modified')).toBeTruthy();
    expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
  });

  it.each([
    ['the same ETag', () => etag],
    ['its weak form', () => `W/${etag}`],
    ['a list containing it', () => `"nope", ${etag}`],
    ['*', () => '*'],
  ])('If-None-Match with %s is 304 with no body', async (_name, value) => {
    const res = await get({ 'if-none-match': value() });
    expect(res.status).toBe(304);
    expect(res.headers.get('etag')).toBe(etag);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('If-None-Match with another ETag is a full 200', async () => {
    expect((await get({ 'if-none-match': '"other"' })).status).toBe(200);
  });

  it.each([
    ['bytes=0-9', 0, 9],
    ['bytes=5-', 5, undefined],
    ['bytes=-7', -7, undefined],
    ['bytes=10-999999999', 10, undefined],
  ] as const)('Range %s is a 206 with exactly those bytes', async (range, start, end) => {
    const res = await get({ range });
    expect(res.status).toBe(206);
    const first = start < 0 ? png.length + start : start;
    const last = end ?? png.length - 1;
    expect(res.headers.get('content-range')).toBe(`bytes ${first}-${last}/${png.length}`);
    expect(res.headers.get('content-length')).toBe(String(last - first + 1));
    expect(Buffer.from(await res.arrayBuffer()).equals(png.subarray(first, last + 1))).toBe(true);
  });

  it('a range past the end is 416 with the size; several ranges or a stale If-Range get the whole file', async () => {
    const outside = await get({ range: `bytes=${png.length}-` });
    expect(outside.status).toBe(416);
    expect(outside.headers.get('content-range')).toBe(`bytes */${png.length}`);
    expect(((await outside.json()) as any).Response.Error).toMatchObject({ Code: 'InvalidParameterValue.Range', Message: expect.stringMatching(/^Range: /) });

    const several = await get({ range: 'bytes=0-1,4-5' });
    expect(several.status).toBe(200);
    expect(Number(several.headers.get('content-length'))).toBe(png.length);

    const stale = await get({ range: 'bytes=0-9', 'if-range': '"stale"' });
    expect(stale.status).toBe(200);
    const current = await get({ range: 'bytes=0-9', 'if-range': etag });
    expect(current.status).toBe(206);
  });

  it('ranges work on signed links too, and HEAD gives the headers without the body', async () => {
    const ranged = await fetch(file.url, { headers: { range: 'bytes=0-3' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(png.subarray(0, 4))).toBe(true);
    const head = await get({}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(png.length));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('a file whose bytes are gone from storage is 404 to GET and to HEAD alike', async () => {
    const lost = await upload(await makeImage('png', 20, 20));
    const record = await t.relay.store.files.getFile(lost.file_id);
    fs.rmSync(path.join(t.dataDir, 'files', record!.storageKey));
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(`${t.url}/tencent-vod/v1/files/${lost.file_id}`, { method, headers: { authorization: `Bearer ${t.devKey}` } });
      expect(res.status, method).toBe(404);
      expect(res.headers.get('content-length'), method).not.toBe(String(record!.size));
    }
  });
});
