import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { devAccountId } from '../delivery/fixtures';
import { waitUntil } from '../helpers/eventually';
import { ledgerOf, startHarness, type Harness } from './harness';
import type { Account } from './server';
import { closedAfterEach } from '../helpers/closed-after-each';

/** The Tencent VOD adapter end to end: public API → relay → signed calls to the loopback Tencent server → result. */
let h: Harness | undefined;
const openHarness = closedAfterEach(startHarness);

async function upload(url: string, key: string): Promise<string> {
  const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#345' } }).png().toBuffer();
  const res = await fetch(`${url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/png' }, body: new Uint8Array(png) });
  expect(res.status).toBe(201);
  return ((await res.json()) as { file_id: string }).file_id;
}

describe('Tencent VOD upstream', () => {
  it('succeeds after N polls: request mapped, inputs linked, outputs downloaded and served, charged once', async () => {
    h = await openHarness({ env: { AIGC_RELAY_VOD_FILE_IDS: 'on' } });
    const [account] = h.accounts as [typeof h.accounts[0]];
    await h.addChannel(account);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: 3, fetchInputs: true } });
    const fileId = await upload(h.t.url, h.t.devKey);
    const id = await h.submit({
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'a lighthouse at dawn',
      file_infos: [
        { type: 'File', file_id: fileId, text: 'the shape of the tower' },
        { type: 'file', file_id: '5285485487985271487' },
      ],
      output_config: { resolution: '2K', aspect_ratio: '16:9', person_generation: 'Disallowed' },
      session_context: 'ctx-42',
      tasks_priority: 5,
    });
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');

    const [upstream, ...others] = h.server.bySession(id);
    expect(others).toHaveLength(0);
    expect(upstream!.request).toMatchObject({
      SubAppId: account.subAppId,
      ModelName: 'GG',
      ModelVersion: '3.0',
      Prompt: 'a lighthouse at dawn',
      SessionId: id,
      SessionContext: 'ctx-42',
      TasksPriority: 5,
      OutputConfig: { StorageMode: 'Temporary', Resolution: '2K', AspectRatio: '16:9', PersonGeneration: 'Disallowed' },
    });
    const [own, vod] = upstream!.request.FileInfos as Array<Record<string, string>>;
    expect(own).toMatchObject({ Type: 'Url', Text: 'the shape of the tower' });
    expect(own!.Url!.startsWith(`${h.t.url}/tencent-vod/v1/files/${fileId}?expires=`)).toBe(true);
    expect(vod).toEqual({ Type: 'File', FileId: '5285485487985271487' });
    expect(upstream!.inputStatuses).toEqual([200]); // the signed link works for the upstream
    expect(upstream!.polls).toBeGreaterThanOrEqual(3);
    // Every call asks for English messages: they reach the task log and the client (Tencent's default is Chinese).
    expect(new Set(h.server.calls.map((c) => c.language))).toEqual(new Set(['en-US']));

    const result = await h.t.api.get(`/tencent-vod/v1/requests/${id}`);
    expect(result.body).toMatchObject({ outcome: 'succeeded', produced_by: 'tencent-vod GG 3.0', session_context: 'ctx-42' });
    const image = await fetch(result.body.images[0].url);
    expect(image.status).toBe(200);
    const meta = await sharp(Buffer.from(await image.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);

    const status = await h.t.api.get(`/tencent-vod/v1/requests/${id}/status?logs=1`);
    expect(status.body.logs.map((l: { message: string }) => l.message).join('\n')).toContain(`Tencent VOD task ${upstream!.taskId}`);
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: task.price },
      { kind: 'capture', amount: task.price },
    ]);
    expect((await h.t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('refuses a VOD FileId unless the operator allows them: no task, no charge, nothing sent upstream', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    const account = `/admin/v1/accounts/${await devAccountId(h.t)}`;
    const before = (await h.t.admin.get(account)).body;
    const res = await h.t.api.post('/tencent-vod/v1/aigc-image', {
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'a lighthouse at dawn',
      file_infos: [{ type: 'File', file_id: '5285485487985271487' }],
    });
    expect(res.status).toBe(400);
    expect(res.body.Response.Error).toMatchObject({ Code: 'InvalidParameterValue' });
    expect(res.body.Response.Error.Message).toMatch(/^file_infos\[0\]\.file_id: file "5285485487985271487" does not exist/);
    expect((await h.t.admin.get(account)).body).toMatchObject({ balance: before.balance, held: before.held });
    expect((await h.t.admin.get('/admin/v1/tasks')).body.tasks).toHaveLength(0);
    expect(h.server.count('CreateAigcImageTask')).toBe(0);
  });

  it('routes only models a channel serves; Hunyuan gets its size through ExtInfo', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!, { models: ['Hunyuan'] });
    const gem = await h.submit();
    expect((await h.finished(gem)).provider).toBe('local-preview');
    const hunyuan = await h.submit({ model_name: 'Hunyuan', model_version: '3.0', prompt: 'a panorama', output_config: { resolution: '2560x1440' } });
    const task = await h.finished(hunyuan);
    expect([task.provider, task.state]).toEqual(['tencent-vod', 'succeeded']);
    const request = h.server.bySession(hunyuan)[0]!.request;
    expect(request.ModelName).toBe('Hunyuan');
    expect(request.OutputConfig?.Resolution).toBeUndefined();
    // 2560x1440 scaled into Hunyuan's ≤ 1024x1024-pixel budget, same shape, sides multiples of 8.
    expect(JSON.parse(JSON.parse(request.ExtInfo).AdditionalParameters)).toEqual({ size: '1360x768' });
  });

  it('FINISH with ErrCode: the task fails with Tencent’s code and message, and the hold is released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({
      kind: 'accept',
      plan: { processingPolls: 2, result: { kind: 'error', errCode: 70000, errCodeExt: 'InvalidParameter.VoilationContent', message: 'output violates content policy' } },
    });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('failed');
    expect(task.error!.code).toBe('InvalidParameter.VoilationContent');
    expect(task.error!.message).toContain('output violates content policy');
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: task.price },
      { kind: 'release', amount: task.price },
    ]);
    expect(h.server.count('CreateAigcImageTask')).toBe(1); // accepted upstream: never submitted again
  });

  it('ABORTED upstream: the task is cancelled and released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: 1, result: { kind: 'aborted' } } });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('cancelled');
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: task.price },
      { kind: 'release', amount: task.price },
    ]);
    const status = await h.t.api.get(`/tencent-vod/v1/requests/${id}/status`);
    expect(status.body).toMatchObject({ status: 'COMPLETED', outcome: 'cancelled' });
  });

  it('RequestLimitExceeded on create (one channel): the attempt is retried and the task completes, charged once', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    let creates = 0;
    h.server.onCreate = () =>
      ++creates === 1 ? { kind: 'refuse', code: 'RequestLimitExceeded', message: 'too many requests' } : { kind: 'accept' };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(2);
    expect(h.server.count('CreateAigcImageTask')).toBe(2);
    // One upstream task, made by the second try under a new SessionId (Tencent may hold the refused one against it).
    expect(h.server.ofTask(id).map((t) => t.sessionId)).toEqual([`${id}-r1`]);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('every channel throttling: the next attempt waits out the spell (throttledRetry), not the engine\'s milliseconds', async () => {
    h = await openHarness({ accounts: 2, tencent: { throttledRetry: { firstMs: 400, maxMs: 400 } } });
    await h.addChannel(h.accounts[0]!);
    await h.addChannel(h.accounts[1]!);
    const creates: number[] = [];
    h.server.onCreate = () => {
      creates.push(performance.now());
      return creates.length <= 2 ? { kind: 'refuse', code: 'LimitExceeded.AigcConcurrency', message: 'too many tasks' } : { kind: 'accept' };
    };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(2);
    // Both channels refused in the first attempt, one after the other; the second attempt came no sooner than asked
    // (the engine's own backoff here is 5–20 ms).
    expect(creates).toHaveLength(3);
    expect(creates[2]! - creates[1]!).toBeGreaterThanOrEqual(400);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('fails over: channel A answers RequestLimitExceeded, the task completes on channel B, charged once', async () => {
    h = await openHarness({ accounts: 2 });
    const [a, b] = h.accounts as [typeof h.accounts[0], typeof h.accounts[0]];
    await h.addChannel(a, { priority: 10 }); // tried first
    await h.addChannel(b, { priority: 0 });
    h.server.onCreate = (_req, account) =>
      account.secretId === a.secretId ? { kind: 'refuse', code: 'RequestLimitExceeded', message: 'quota' } : { kind: 'accept' };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(1); // failover happened inside one attempt
    expect(h.server.count('CreateAigcImageTask', a.secretId)).toBe(1);
    expect(h.server.count('CreateAigcImageTask', b.secretId)).toBe(1);
    expect(h.server.ofTask(id).map((t) => [t.account.secretId, t.sessionId])).toEqual([[b.secretId, `${id}-r1`]]);
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: task.price },
      { kind: 'capture', amount: task.price },
    ]);
    const { body } = await h.t.admin.get('/admin/v1/channels');
    const health = Object.fromEntries(body.channels.map((c: any) => [c.secret_id, c.health]));
    expect(health[a.secretId].recent_errors.map((e: { code: string }) => e.code)).toEqual(['RequestLimitExceeded']);
    expect(health[b.secretId]).toMatchObject({ circuit: 'closed', consecutive_failures: 0, in_flight: 0 });
  });

  it('a channel whose sub_app_id is not the account\'s is at fault, not the task: it fails over, and its circuit opens', async () => {
    h = await openHarness({ accounts: 2 });
    const [bad, good] = h.accounts as [Account, Account];
    // Tencent (and the test server) answer InvalidParameterValue.SubAppId for a SubAppId the account does not own.
    const broken = await h.addChannel(bad, { priority: 10, sub_app_id: bad.subAppId + 1 });
    await h.addChannel(good, { priority: 0 });
    const id = await h.submit();
    expect(await h.finished(id)).toMatchObject({ state: 'succeeded' });
    expect(h.server.ofTask(id).map((t) => t.account.secretId)).toEqual([good.secretId]);
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: expect.any(Number) },
      { kind: 'capture', amount: expect.any(Number) },
    ]);
    for (let i = 0; i < 2; i++) await h.finished(await h.submit());
    const { body } = await h.t.admin.get(`/admin/v1/channels/${broken.id}`);
    expect(body.health).toMatchObject({ circuit: 'open', consecutive_failures: 3 }); // FAST: threshold 3
  });

  it('throttled on one channel, refused on the other: the attempt is retried (the busy one decides), charged once', async () => {
    h = await openHarness({ accounts: 2 });
    const [a, b] = h.accounts as [Account, Account];
    await h.addChannel(a, { priority: 10 });
    await h.addChannel(b, { priority: 0, secret_key: 'not-the-right-key' });
    let creates = 0;
    h.server.onCreate = (_request, account) =>
      account.secretId === a.secretId && ++creates === 1 ? { kind: 'refuse', code: 'RequestLimitExceeded', message: 'quota' } : { kind: 'accept' };
    const id = await h.submit();
    expect(await h.finished(id)).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('a wrong secret key: the task fails with FailedOperation.Upstream, Tencent\'s code in its message and its text for the operator only', async () => {
    h = await openHarness();
    const channel = await h.addChannel(h.accounts[0]!, { secret_key: 'not-the-right-key' });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('failed');
    // Not the client's key, nor anything the client can fix: the contract's code for that, not Tencent's.
    expect(task.error!.code).toBe('FailedOperation.Upstream');
    // The text is about the operator's account (it may name its uin or a policy): the client gets the code alone.
    expect(task.error!.message).toMatch(/^Tencent VOD: the relay's upstream account could not be used \(AuthFailure\.SignatureFailure\); this is for the relay's operator to fix, not a fault of the request or its key/);
    expect(task.error!.message).not.toMatch(/signature does not match/);
    const health = (await h.t.admin.get(`/admin/v1/channels/${channel.id}`)).body.health;
    expect(health.recent_errors[0].message).toMatch(/signature does not match/);
    expect(h.server.calls.filter((c) => c.error === 'AuthFailure.SignatureFailure')).toHaveLength(1);
    expect(h.server.tasks.size).toBe(0);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });

  it('a content refusal on create fails at once, without retry or failover', async () => {
    h = await openHarness({ accounts: 2 });
    await h.addChannel(h.accounts[0]!);
    await h.addChannel(h.accounts[1]!);
    h.server.onCreate = () => ({ kind: 'refuse', code: 'InvalidParameter.VoilationContent', message: 'prompt violates content policy' });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.error).toEqual({ code: 'InvalidParameter.VoilationContent', message: expect.stringContaining('prompt violates content policy') });
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
  });

  it('tasks waiting for a full channel of one model do not hold up another model whose channel is free', async () => {
    h = await openHarness({ accounts: 2 });
    const [hy, gem] = h.accounts as [Account, Account];
    await h.addChannel(hy, { models: ['Hunyuan'], max_concurrency: 1 });
    await h.addChannel(gem, { models: ['GEM'], max_concurrency: 1 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const hunyuan = { model_name: 'Hunyuan', model_version: '3.0', prompt: 'a panorama' };
    // Submitted together: the second is claimable before the first run has taken its channel slot.
    const both = await Promise.all([h.submit(hunyuan), h.submit(hunyuan)]);
    await waitUntil(() => both.some((id) => h!.server.bySession(id).length === 1));
    const waiting = both.find((id) => h!.server.bySession(id).length === 0)!;
    const fox = await h.submit({ model_name: 'GEM', model_version: '3.0', prompt: 'a fox', tasks_priority: 10 });
    // The lane's capacity is 2 (one slot per channel): the second Hunyuan task must not take the GEM one's.
    await waitUntil(() => h!.server.bySession(fox).length === 1);
    expect((await h.t.api.get(`/tencent-vod/v1/requests/${waiting}/status`)).body).toMatchObject({ status: 'IN_QUEUE' });
    expect(h.server.bySession(waiting)).toHaveLength(0);
  });

  it('two models claimed for the last slot of a channel they share do not hold up a third model whose channel is free', async () => {
    h = await openHarness({ accounts: 2 });
    const [shared, other] = h.accounts as [Account, Account];
    await h.addChannel(shared, { models: ['Hunyuan', 'GEM'], max_concurrency: 1 });
    await h.addChannel(other, { models: ['Qwen'], max_concurrency: 1 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    // All at once: the lane (capacity 2) claims the first two, one of which waits for the shared slot; the Qwen
    // task, queued behind them, must be claimed as soon as that run is seen waiting.
    const [hunyuan, gem, qwen] = await Promise.all([
      h.submit({ model_name: 'Hunyuan', model_version: '3.0', prompt: 'a panorama' }),
      h.submit({ model_name: 'GEM', model_version: '3.0', prompt: 'a fox' }),
      h.submit({ model_name: 'Qwen', model_version: '0925', prompt: 'a lake', tasks_priority: -5 }),
    ]);
    await waitUntil(() => h!.server.bySession(qwen).length === 1);
    expect(h.server.bySession(hunyuan).length + h.server.bySession(gem).length).toBe(1);
  });

  it('never has more upstream tasks on a channel than its max_concurrency; the rest wait in the relay queue', async () => {
    h = await openHarness();
    const account = h.accounts[0]!;
    await h.addChannel(account, { max_concurrency: 2 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const ids = await Promise.all(Array.from({ length: 6 }, () => h!.submit()));
    await waitUntil(() => h!.server.stats(account.secretId).inFlight === 2);
    expect(h.t.relay.engine.runningCount()).toBe(2);
    expect(h.t.relay.engine.queueDepth()).toBe(4);
    for (let done = 0; done < ids.length; ) {
      await waitUntil(() => h!.server.tasks.size > done);
      const running = [...h.server.tasks.values()].filter((t) => t.status === 'PROCESSING');
      for (const task of running) h.server.finish(task.taskId);
      done += running.length;
    }
    for (const id of ids) expect((await h.finished(id)).state).toBe('succeeded');
    expect(h.server.stats(account.secretId)).toMatchObject({ maxInFlight: 2, created: 6 });
  });
});
