import { describe, expect, it } from 'vitest';
import type { TencentVodOverrides } from '../../src/adapters/tencent/options';
import { ledgerOf, startHarness, type Harness } from './harness';
import type { Account, UpstreamTask } from './server';
import { closedAfterEach } from '../helpers/closed-after-each';

/**
 * Upstream failures where a task was made, or may have been, upstream: Tencent bills for what it made, so the relay
 * must neither make a second task beside it nor give up on one that can still succeed.
 */
let h: Harness | undefined;
const openHarness = closedAfterEach(startHarness);

async function logsOf(id: string): Promise<string> {
  return (await h!.t.relay.store.tasks.logs(id)).map((l) => l.message).join('\n');
}

describe('a task that failed upstream for want of capacity', () => {
  it.each(['RequestLimitExceeded', 'FailedOperation', 'InternalError'])(
    'ErrCodeExt %s (Tencent: the model is busy or failed inside): submitted again under a new SessionId, charged once',
    async (errCodeExt) => {
      h = await openHarness();
      await h.addChannel(h.accounts[0]!);
      let creates = 0;
      h.server.onCreate = () =>
        ++creates === 1
          ? { kind: 'accept', plan: { processingPolls: 1, result: { kind: 'error', errCode: 10000, errCodeExt, message: 'the model is at its limit' } } }
          : { kind: 'accept' };
      const id = await h.submit();
      const task = await h.finished(id);
      expect(task.state).toBe('succeeded');
      expect(task.attempts).toBe(2);
      // The failed task's SessionId can never be sent again; the second one is the task's first round.
      expect(h.server.ofTask(id).map((t) => [t.sessionId, t.result?.kind ?? 'success'])).toEqual([
        [id, 'error'],
        [`${id}-r1`, 'success'],
      ]);
      expect(await ledgerOf(h.t, id)).toEqual([
        { kind: 'hold', amount: task.price },
        { kind: 'capture', amount: task.price },
      ]);
    },
  );

  it.each(['InvalidInput', 'ResourceUnavailable', 'SomethingNew'])('ErrCodeExt %s (not Tencent’s list for a busy model): fails at once, one upstream task', async (errCodeExt) => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: 1, result: { kind: 'error', errCode: 10000, errCodeExt, message: 'no' } } });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('failed');
    expect(task.error!.code).toBe(errCodeExt);
    expect(h.server.ofTask(id)).toHaveLength(1);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });

  it('each retry takes the next round; when the attempts run out the task fails with Tencent’s code and is released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: 1, result: { kind: 'error', errCode: 10000, errCodeExt: 'RequestLimitExceeded', message: 'busy' } } });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('failed');
    expect(task.error!.code).toBe('RequestLimitExceeded');
    expect(h.server.ofTask(id).map((t) => t.sessionId)).toEqual([id, `${id}-r1`, `${id}-r2`]); // harness: 3 attempts
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'release']);
  });
});

/** Channels A (tried first) and B; A answers every submission InternalError, B accepts. */
async function channelAFailing(): Promise<[Account, Account]> {
  h = await openHarness({ accounts: 2 });
  const [a, b] = h.accounts as [Account, Account];
  await h.addChannel(a, { priority: 10 });
  await h.addChannel(b, { priority: 0 });
  h.server.onCreate = (_request, account) =>
    account.secretId === a.secretId ? { kind: 'refuse', code: 'InternalError', message: 'internal error' } : { kind: 'accept' };
  return [a, b];
}

describe('a submission answered InternalError', () => {
  it('when Tencent made the task before failing, the relay finds and follows it there: no second task elsewhere', async () => {
    h = await openHarness({ accounts: 2 });
    const [a, b] = h.accounts as [Account, Account];
    await h.addChannel(a, { priority: 10 });
    await h.addChannel(b, { priority: 0 });
    h.server.onCreate = (request, account) => {
      if (account.secretId !== a.secretId) return { kind: 'accept' };
      const taskId = `1500999999-AigcImage-${h!.server.tasks.size}`;
      const made: UpstreamTask = {
        taskId,
        account,
        request,
        sessionId: request.SessionId,
        createdAt: Date.now(),
        status: 'PROCESSING',
        plan: {},
        polls: 0,
        waitingLeft: 0,
        processingLeft: 1,
      };
      h!.server.tasks.set(taskId, made);
      return { kind: 'refuse', code: 'InternalError', message: 'internal error' };
    };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.ofTask(id).map((t) => t.account.secretId)).toEqual([a.secretId]);
    expect(h.server.count('CreateAigcImageTask', b.secretId)).toBe(0);
    expect(h.server.count('DescribeTasks', a.secretId)).toBeGreaterThan(0);
    expect(await ledgerOf(h.t, id)).toEqual([
      { kind: 'hold', amount: task.price },
      { kind: 'capture', amount: task.price },
    ]);
  });

  it('when the listing shows no task, it is a refusal: the next channel, under a new SessionId', async () => {
    const [a, b] = await channelAFailing();
    if (!h) throw new Error('no harness');
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(1);
    expect(h.server.count('CreateAigcImageTask', a.secretId)).toBe(1); // looked up, never resubmitted there
    expect(h.server.count('DescribeTasks', a.secretId)).toBeGreaterThanOrEqual(3); // FAST: 2 lookups before a resubmission, 1 more
    expect(h.server.ofTask(id).map((t) => [t.account.secretId, t.sessionId])).toEqual([[b.secretId, `${id}-r1`]]);
    expect(await logsOf(id)).toContain('the submission made nothing upstream');
  });

  it('when the channel cannot list its tasks either, the task still moves on after the same few tries, not held there for days', async () => {
    const [a, b] = await channelAFailing();
    if (!h) throw new Error('no harness');
    h.server.listingFails = (account) => account.secretId === a.secretId;
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.count('CreateAigcImageTask', a.secretId)).toBe(1); // never resubmitted on the failing channel
    expect(h.server.count('DescribeTasks', a.secretId)).toBe(3); // FAST: 2 lookups before a resubmission, 1 more
    expect(h.server.ofTask(id).map((t) => t.account.secretId)).toEqual([b.secretId]);
  });
});

describe('a refused submission', () => {
  it('goes again under a new SessionId, so it succeeds even where Tencent holds a refused request’s SessionId against it', async () => {
    h = await openHarness({ server: { refusedSessionsCount: true } });
    await h.addChannel(h.accounts[0]!);
    let creates = 0;
    h.server.onCreate = () => (++creates === 1 ? { kind: 'refuse', code: 'RequestLimitExceeded', message: 'too many requests' } : { kind: 'accept' });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.ofTask(id).map((t) => t.sessionId)).toEqual([`${id}-r1`]);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });
});

describe('downloading the images of a finished task', () => {
  /** A task whose images the storage answers 503 for the first `failures` downloads; its id once it has ended. */
  async function withFailingDownloads(failures: number, tencent?: TencentVodOverrides) {
    h = await openHarness(tencent ? { tencent } : {});
    await h.addChannel(h.accounts[0]!);
    h.server.outputStatus = () => (failures-- > 0 ? 503 : 200);
    const id = await h.submit();
    return { id, task: await h.finished(id) };
  }

  it('is tried again in place while the storage fails for a while: the task succeeds in its first attempt', async () => {
    const { id, task } = await withFailingDownloads(4);
    if (!h) throw new Error('no harness');
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(1);
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
    const logs = await logsOf(id);
    expect(logs.match(/Downloading the images failed \(output image 1 of 1: HTTP 503\); trying again/g)).toHaveLength(4);
    // The client reads this log: Tencent's signed link into the operator's storage is not in it.
    expect(logs).not.toContain(new URL(h.server.url).host);
  });

  it('that fail for good end the task with an error that does not show the storage link', async () => {
    const { task } = await withFailingDownloads(Number.POSITIVE_INFINITY, { download: { firstRetryMs: 10, retryForMs: 10 } });
    if (!h) throw new Error('no harness');
    expect(task.state).toBe('failed');
    expect(task.error?.message).toMatch(/output image 1 of 1: HTTP 503/);
    expect(task.error?.message).not.toContain(new URL(h.server.url).host);
    const status = await h.t.api.get(`/tencent-vod/v1/requests/${task.id}/status?logs=1`);
    expect(JSON.stringify(status.body)).not.toContain(new URL(h.server.url).host);
  });

  it('a download that keeps failing past the window goes to the engine’s retries, which download again from the same upstream task', async () => {
    // 10 + 20 ms of pauses in the first attempt: three tries; the fourth fails in the second attempt.
    const { task } = await withFailingDownloads(4, { download: { firstRetryMs: 10, retryForMs: 30 } });
    if (!h) throw new Error('no harness');
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(2);
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
  });
});
