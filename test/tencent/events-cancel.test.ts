import { describe, expect, it } from 'vitest';
import { createVodApi } from '../../src/adapters/tencent/client';
import { eventually, waitUntil, within } from '../helpers/eventually';
import { ledgerOf, startHarness, type Harness } from './harness';
import { closedAfterEach } from '../helpers/closed-after-each';

/** Completion events (PullEvents/ConfirmEvents), cancel against the upstream, and channel health. */
let h: Harness | undefined;
const openHarness = closedAfterEach(startHarness);

describe('completion events', () => {
  it('a channel with events completes a task from its AigcImageTaskComplete event, and confirms it', async () => {
    // Polls on an events channel are at least a minute apart here: only the event can finish the task in time.
    h = await openHarness();
    const account = h.accounts[0]!;
    await h.addChannel(account, { events_enabled: true });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity, finishAfterMs: 300 } });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    const upstream = h.server.bySession(id)[0]!;
    expect(upstream.polls).toBe(1); // the first look right after submitting; the rest came by event

    await waitUntil(() => h!.server.confirmed.length === 1);
    const [confirmed] = h.server.confirmed;
    expect(confirmed!.taskId).toBe(upstream.taskId);
    expect(h.server.count('PullEvents', account.secretId)).toBeGreaterThanOrEqual(1);
  });

  it('an event about a task followed here is confirmed at once, within its window, not after a slow download of the images', async () => {
    // Tencent refuses a confirmation more than 30 s after the pull (here 300 ms); the images may take longer than that.
    h = await openHarness({ server: { eventLeaseMs: 300 } });
    const account = h.accounts[0]!;
    await h.addChannel(account, { events_enabled: true });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity, finishAfterMs: 100 } });
    let release!: () => void;
    h.server.outputsHeld = new Promise<void>((resolve) => (release = resolve));
    const id = await h.submit();
    // The task is followed with its upstream id on record, so polling would find the result after a crash: the
    // event can be let go before the result is committed.
    await within('the event to be confirmed while its images are still downloading', 5_000, waitUntil(() => h!.server.confirmed.length === 1));
    expect((await h.t.relay.store.tasks.getTask(id))!.state).toBe('running');
    release();
    expect((await h.finished(id)).state).toBe('succeeded');
    expect(h.server.confirmed.map((c) => c.taskId)).toEqual([h.server.bySession(id)[0]!.taskId]);
    expect(h.server.staleConfirms).toEqual([]);
  });

  it('an event about a task the relay already settled is confirmed; one about an unknown SessionId is left alone', async () => {
    h = await openHarness({ server: { eventLeaseMs: 200 } });
    const account = h.accounts[0]!;
    const channel = await h.addChannel(account, { events_enabled: false });
    h.server.onCreate = (req) => ({ kind: 'accept', plan: req.SessionId === 'someone-else' ? { processingPolls: Infinity, finishAfterMs: 0 } : { processingPolls: 1 } });
    // A task another system created in the same VOD app: its event is not the relay's to consume.
    const other = createVodApi({ secretId: account.secretId, secretKey: account.secretKey, endpoint: h.server.url });
    const foreign = await other.createAigcImageTask({ SubAppId: account.subAppId, ModelName: 'GG', ModelVersion: '3.0', Prompt: 'x', SessionId: 'someone-else' }, { timeoutMs: 2000 });
    other.close();
    const id = await h.submit();
    expect((await h.finished(id)).state).toBe('succeeded'); // by polling; its event waits upstream
    await h.t.admin.request('PATCH', `/admin/v1/channels/${channel.id}`, { events_enabled: true });
    await waitUntil(() => h!.server.confirmed.length === 1 && h!.server.eventDeliveries(foreign.TaskId!) >= 2);
    expect(h.server.confirmed.map((c) => c.taskId)).toEqual([h.server.bySession(id)[0]!.taskId]);
  });
});

describe('cancel against the upstream', () => {
  it('while the upstream task is WAITING: ManageTask Abort, 202, cancelled and released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { waitingPolls: Infinity } });
    const id = await h.submit();
    await waitUntil(() => (h!.server.bySession(id)[0]?.polls ?? 0) >= 1);
    const res = await h.t.api.put(`/tencent-vod/v1/requests/${id}/cancel`);
    expect([res.status, res.body]).toEqual([202, { status: 'CANCELLATION_REQUESTED' }]);
    const task = await h.finished(id);
    expect(task.state).toBe('cancelled');
    expect(h.server.bySession(id)[0]!.status).toBe('ABORTED');
    expect(h.server.count('ManageTask')).toBe(1);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });

  it('once the upstream task is PROCESSING: 400 ALREADY_COMPLETED, and it goes on to succeed', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const id = await h.submit();
    const upstream = await (async () => {
      await waitUntil(() => (h!.server.bySession(id)[0]?.polls ?? 0) >= 1);
      return h!.server.bySession(id)[0]!;
    })();
    const res = await h.t.api.put(`/tencent-vod/v1/requests/${id}/cancel`);
    expect([res.status, res.body]).toEqual([400, { status: 'ALREADY_COMPLETED' }]);
    h.server.finish(upstream.taskId);
    expect((await h.finished(id)).state).toBe('succeeded');
  });

  it('before anything went upstream (waiting for a channel slot): cancelled at once', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!, { max_concurrency: 1 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const first = await h.submit();
    await waitUntil(() => h!.server.bySession(first).length === 1);
    const second = await h.submit(); // waits in the relay queue: the channel is full
    const res = await h.t.api.put(`/tencent-vod/v1/requests/${second}/cancel`);
    expect(res.status).toBe(202);
    expect((await h.finished(second)).state).toBe('cancelled');
    expect(h.server.bySession(second)).toHaveLength(0);
    h.server.finish(h.server.bySession(first)[0]!.taskId);
    expect((await h.finished(first)).state).toBe('succeeded');
  });

  it('a cancel answered while the submission checkpoint is being written stops the submission (no upstream task)', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    let created = false;
    let markCreated!: () => void;
    const createdUpstream = new Promise<void>((resolve) => (markCreated = resolve));
    h.server.onCreate = () => {
      created = true;
      markCreated();
      return { kind: 'accept', plan: { processingPolls: Infinity } };
    };
    // A slow store (a PostgreSQL round trip, a busy writer): the run's "submitting" checkpoint is still being written
    // when the cancel comes, and the cancel's own write lands only after the run went on.
    const tasks = h.t.relay.store.tasks;
    const saveCheckpoint = tasks.saveCheckpoint.bind(tasks);
    const requestCancel = tasks.requestCancel.bind(tasks);
    let writingCheckpoint!: () => void;
    const checkpointHeld = new Promise<void>((resolve) => (writingCheckpoint = resolve));
    let letCheckpointThrough!: () => void;
    const checkpointGate = new Promise<void>((resolve) => (letCheckpointThrough = resolve));
    tasks.saveCheckpoint = async (id, checkpoint, now, ownAttempt) => {
      if (checkpoint.phase === 'submitting') {
        writingCheckpoint();
        await checkpointGate;
      }
      return saveCheckpoint(id, checkpoint, now, ownAttempt);
    };
    const id = await h.submit();
    const ended = new Promise<void>((resolve) =>
      h!.t.relay.engine.events.on('task', (e: { id: string; state: string }) => e.id === id && e.state === 'cancelled' && resolve()),
    );
    tasks.requestCancel = async (taskId, now) => {
      letCheckpointThrough();
      // Before the fix the run went on to submit; with it, the run ends cancelled. Either way, then this write.
      await Promise.race([ended, createdUpstream]);
      return requestCancel(taskId, now);
    };
    await checkpointHeld;
    const res = await h.t.api.put(`/tencent-vod/v1/requests/${id}/cancel`);
    expect(res.status).toBe(202);
    expect((await h.finished(id)).state).toBe('cancelled');
    expect(created).toBe(false);
    expect(h.server.bySession(id)).toHaveLength(0);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });
});

describe('channel health', () => {
  it('a failing channel opens its circuit; GET /admin/v1/channels shows it with recent errors and in-flight counts', async () => {
    h = await openHarness({ accounts: 2 });
    const [bad, good] = h.accounts as [typeof h.accounts[0], typeof h.accounts[0]];
    await h.addChannel(bad, { priority: 5 });
    await h.addChannel(good, { max_concurrency: 10 });
    h.server.onCreate = (_req, account) =>
      account.secretId === bad.secretId ? { kind: 'refuse', code: 'InternalError', message: 'backend down' } : { kind: 'accept', plan: { processingPolls: Infinity } };
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await h.submit());
      await waitUntil(() => h!.server.stats(good.secretId).inFlight === i + 1); // one at a time: a clear count
    }
    // Threshold 3: after three failures the bad channel is skipped without being called.
    expect(h.server.count('CreateAigcImageTask', bad.secretId)).toBe(3);
    const { body } = await h.t.admin.get('/admin/v1/channels');
    const bySecret = Object.fromEntries(body.channels.map((c: any) => [c.secret_id, c]));
    expect(bySecret[bad.secretId].health).toMatchObject({ circuit: 'open', consecutive_failures: 3, in_flight: 0 });
    expect(bySecret[bad.secretId].health.recent_errors).toHaveLength(3);
    expect(bySecret[bad.secretId].health.recent_errors[0]).toMatchObject({ code: 'InternalError', message: 'backend down' });
    expect(bySecret[good.secretId].health).toMatchObject({ circuit: 'closed', in_flight: 5 });
    for (const task of h.server.tasksOf(good.secretId)) h.server.finish(task.taskId);
    for (const id of ids) expect((await h.finished(id)).state).toBe('succeeded');
  });
});

describe('operations', () => {
  /** A task accepted upstream that never finishes there, polled at least once, on a relay clock the test moves on. */
  async function runningOnAMovableClock() {
    let skew = 0;
    const harness = (h = await openHarness({ clock: { now: () => Date.now() + skew } }));
    await harness.addChannel(harness.accounts[0]!);
    harness.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const id = await harness.submit();
    const upstream = await eventually('the upstream task', 5_000, async () => harness.server.bySession(id)[0]);
    await waitUntil(() => upstream.polls >= 1);
    return { harness, id, upstream, moveClockBy: (ms: number) => (skew = ms) };
  }

  it('the sweep fails and releases a task whose upstream outlived the 3-day query window', async () => {
    const { harness, id, moveClockBy } = await runningOnAMovableClock();
    moveClockBy(3 * 24 * 3600 * 1000 + 60_000);
    const task = await harness.finished(id);
    expect(task.state).toBe('failed');
    expect(task.error).toEqual({ code: 'FailedOperation.Upstream', message: expect.stringContaining('72-hour query window') });
    expect((await ledgerOf(harness.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });

  it('a task the upstream account no longer knows is failed and released after a while, not polled for 3 days', async () => {
    const { harness, id, upstream, moveClockBy } = await runningOnAMovableClock();
    // As when the channel's SubAppId or keys were changed under a running task: DescribeTaskDetail says it does not exist.
    harness.server.tasks.delete(upstream.taskId);
    const refusals = () => harness.server.calls.filter((c) => c.action === 'DescribeTaskDetail' && c.error === 'InvalidParameterValue.TaskId').length;
    await waitUntil(() => refusals() >= 2);
    expect((await harness.t.relay.store.tasks.getTask(id))!.state).toBe('running'); // one refusal is not enough (an index may lag)
    moveClockBy(10 * 60_000 + 1_000);
    const task = await harness.finished(id);
    expect(task.state).toBe('failed');
    expect(task.error).toEqual({ code: 'FailedOperation.Upstream', message: expect.stringContaining(`no longer knows task ${upstream.taskId}`) });
    expect((await ledgerOf(harness.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });

  it('POST /admin/v1/tasks/{id}/poll asks Tencent about a followed task at once', async () => {
    h = await openHarness({ tencent: { follower: { pollMinMs: 60_000, pollMaxMs: 60_000 } } });
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const id = await h.submit();
    await waitUntil(() => (h!.server.bySession(id)[0]?.polls ?? 0) === 1);
    const upstream = h.server.bySession(id)[0]!;
    h.server.finish(upstream.taskId);
    const res = await h.t.admin.post(`/admin/v1/tasks/${id}/poll`);
    expect([res.status, res.body]).toEqual([202, { upstream_task_id: upstream.taskId, last_status: 'PROCESSING' }]);
    expect((await h.finished(id)).state).toBe('succeeded');
    expect(upstream.polls).toBe(2);
    const done = await h.t.admin.post(`/admin/v1/tasks/${id}/poll`);
    expect(done.status).toBe(400);
    expect((await h.t.admin.post('/admin/v1/tasks/nope/poll')).status).toBe(404);
  });
});
