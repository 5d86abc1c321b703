import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

describe('POST /tencent-vod/v1/aigc-image — happy path', () => {
  it('accepts, runs on the local preview and serves an image of the requested size', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status).toBe(200);
    const id = res.body.request_id as string;
    expect(res.body.Response).toEqual({ TaskId: id, RequestId: res.headers.get('x-request-id') });
    expect(res.body.status_url).toBe(`${t.url}/tencent-vod/v1/requests/${id}/status`);
    expect(res.body.response_url).toBe(`${t.url}/tencent-vod/v1/requests/${id}`);
    expect(res.body.cancel_url).toBe(`${t.url}/tencent-vod/v1/requests/${id}/cancel`);

    await waitForTask(t.relay, id);
    const status = await t.api.get(`${res.body.status_url}?logs=1`);
    expect(status.body).toMatchObject({ status: 'COMPLETED', outcome: 'succeeded', progress: 100, error: null });
    expect(status.body.logs.map((l: { message: string }) => l.message).join('\n')).toMatch(/local preview.*not an AI model/);
    expect(status.body.metrics.inference_time).toBeGreaterThanOrEqual(0);

    const result = await t.api.get(res.body.response_url);
    expect(result.status).toBe(200);
    expect(result.body.produced_by).toMatch(/local-preview/);
    expect(result.body.images).toHaveLength(1);
    const image = result.body.images[0];
    expect(image).toMatchObject({ width: 1920, height: 1080, content_type: 'image/png' });
    expect(Date.parse(image.expires_at) - Date.now()).toBeGreaterThan(6.9 * 24 * 3600 * 1000);

    const download = await fetch(image.url);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('image/png');
    const meta = await sharp(Buffer.from(await download.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1920, 1080]);
  });

  it('Hunyuan with a size in ext_info (Tencent’s way to size it) gets an image of that size', async () => {
    const ext_info = JSON.stringify({ AdditionalParameters: JSON.stringify({ size: '728x1024' }) });
    const res = await t.api.post('/tencent-vod/v1/aigc-image', { model_name: 'Hunyuan', model_version: '3.0', prompt: 'a lighthouse', ext_info });
    expect(res.status, res.text).toBe(200);
    await waitForTask(t.relay, res.body.request_id);
    const [image] = (await t.api.get(res.body.response_url)).body.images;
    expect(image).toMatchObject({ width: 728, height: 1024 });
    const meta = await sharp(Buffer.from(await (await fetch(image.url)).arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([728, 1024]);
  });

  it('charges the price on success: held while queued, captured at the end', async () => {
    const before = await t.admin.get(`/admin/v1/accounts/${await accountId()}`);
    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    await waitForTask(t.relay, res.body.request_id);
    const after = await t.admin.get(`/admin/v1/accounts/${await accountId()}`);
    const prices = await t.admin.get('/admin/v1/prices');
    const price = prices.body.prices['GEM:3.0']['1K'] as number; // 1920x1080 ≈ 2.07 MP → 1K class
    expect(after.body.balance).toBe(before.body.balance - price);
    expect(after.body.held).toBe(0);
    expect((await t.admin.get('/admin/v1/audit')).body).toEqual({ ok: true, differences: [] });
  });

  it('Tencent DescribeTaskDetail view of a finished task', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, session_context: 'ctx-1' });
    await waitForTask(t.relay, res.body.request_id);
    const q = await t.api.get(`/tencent-vod/v1/query/${res.body.request_id}`);
    expect(q.status).toBe(200);
    expect(q.body.Response).toMatchObject({
      TaskType: 'AigcImageTask',
      Status: 'FINISH',
      SessionContext: 'ctx-1',
      AigcImageTask: { TaskId: res.body.request_id, Status: 'FINISH', ErrCode: 0, Progress: 100 },
    });
    expect(q.body.Response.AigcImageTask.Output.FileInfos[0].FileUrl).toMatch(/\/tencent-vod\/v1\/files\//);
    expect(q.body.Response.AigcImageTask.Input.ModelName).toBe('GEM');
    const { CreateTime, BeginProcessTime, FinishTime } = q.body.Response;
    for (const time of [CreateTime, BeginProcessTime, FinishTime]) expect(time).toMatch(WHOLE_SECONDS);
    // The link's expiry to the second, rounded down: the link still works at the time it names.
    const result = (await t.api.get(`/tencent-vod/v1/requests/${res.body.request_id}`)).body;
    const expires = q.body.Response.AigcImageTask.Output.FileInfos[0].ExpireTime as string;
    expect(expires).toMatch(WHOLE_SECONDS);
    expect(Date.parse(expires)).toBe(Math.floor(Date.parse(result.images[0].expires_at) / 1000) * 1000);
  });

  it('GET /query/{id} of a task waiting and of one cancelled there: Tencent\'s types (times are strings, the task\'s own status PROCESSING or FINISH, a cancel is not ErrCode 0)', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123' } }).png().toBuffer();
    const provider = new ControlledProvider('controlled', 1, { data: png, contentType: 'image/png', width: 8, height: 8 });
    const own = await startTestRelay({ overrides: { providers: [provider] } });
    try {
      const first = (await own.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
      const run = await provider.whenStarted(first); // holds the only slot
      const submittedFrom = Date.now();
      const waiting = (await own.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
      const submittedBy = Date.now();
      const queued = (await own.api.get(`/tencent-vod/v1/query/${waiting}`)).body.Response;
      expect(queued).toMatchObject({ Status: 'WAITING', BeginProcessTime: '', FinishTime: '', AigcImageTask: { Status: 'PROCESSING', ErrCode: 0, ErrCodeExt: '' } });
      // Tencent writes whole seconds in UTC (2019-07-16T17:36:10Z): a client parsing VOD's own format reads these.
      expect(queued.CreateTime).toMatch(WHOLE_SECONDS);
      expect(Date.parse(queued.CreateTime)).toBeGreaterThanOrEqual(Math.floor(submittedFrom / 1000) * 1000);
      expect(Date.parse(queued.CreateTime)).toBeLessThanOrEqual(submittedBy);
      expect((await own.api.put(`/tencent-vod/v1/requests/${waiting}/cancel`)).status).toBe(202);
      const cancelled = (await own.api.get(`/tencent-vod/v1/query/${waiting}`)).body.Response;
      expect(cancelled).toMatchObject({ Status: 'ABORTED', BeginProcessTime: '', AigcImageTask: { Status: 'FINISH', ErrCode: 1, ErrCodeExt: 'Cancelled' } });
      expect(cancelled.FinishTime).toMatch(WHOLE_SECONDS);
      run.succeed();
      await waitForTask(own.relay, first);
    } finally {
      await own.close();
    }
  });
});

const WHOLE_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

async function accountId(): Promise<string> {
  const key = await t.relay.store.accounts.getKey(t.devKey.slice(3).split('.')[0]!);
  return key!.accountId;
}
