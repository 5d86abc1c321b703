import { afterEach, describe, expect, it } from 'vitest';
import type { TencentVodOverrides } from '../../src/adapters/tencent';
import { attemptsUsed } from '../../src/domain/task-state';
import type { Relay } from '../../src/main';
import { HANDED_BACK_BY_STOP } from '../../src/ports/task-store';
import type { TaskEvent } from '../../src/worker/engine';
import { waitUntil, within } from '../helpers/eventually';
import { openRelay, waitForTask } from '../helpers/relay';
import { FAST, LOOPBACK_OUTPUTS, ledgerOf, startHarness, type Harness } from './harness';

/**
 * Submissions whose outcome is not known (no answer in time, or a crash while the call was on the wire) are
 * reconciled by SessionId, never guessed; a restarted relay follows its upstream tasks instead of resubmitting.
 */
let h: Harness | undefined;
let restarted: Relay | undefined;
afterEach(async () => {
  await restarted?.close(500);
  restarted = undefined;
  await h?.close();
  h = undefined;
});

const logText = async (relay: Relay, id: string) => (await relay.store.tasks.logs(id)).map((l) => l.message).join('\n');

/** A second relay process on the same data dir (same secret, same channels), as after a crash. */
async function restart(dataDir: string, tencent: TencentVodOverrides = FAST): Promise<Relay> {
  return (await openRelay(dataDir, { ...LOOPBACK_OUTPUTS }, { tencent, retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 } })).relay;
}

describe('ambiguous submissions', () => {
  it('no answer in time: the hold stays, DescribeTasks finds the task by SessionId, it completes, charged once', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 200 } });
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: 1_500 });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.bySession(id)).toHaveLength(1);
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
    expect(h.server.count('DescribeTasks')).toBeGreaterThanOrEqual(1);
    expect(await logText(h.t.relay, id)).toMatch(/reconciling by SessionId[\s\S]*DescribeTasks lists upstream task/);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('on a busy VOD app (thousands of other tasks in the window) the lookup still reaches the task', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 200 } });
    const account = h.accounts[0]!;
    await h.addChannel(account);
    // 6,000 other tasks of the same app (transcodes, other customers' images) made shortly before ours: more than
    // the 50 pages of 100 that the lookup used to read, in an unsorted listing that puts them all first.
    const before = Date.now() - 10_000;
    for (let i = 0; i < 6_000; i++) {
      const taskId = `other-${i}`;
      h.server.tasks.set(taskId, { taskId, account, request: {}, sessionId: '', createdAt: before, status: 'FINISH', plan: {}, polls: 0, waitingLeft: 0, processingLeft: 0 });
    }
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: 1_500 });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.bySession(id)).toHaveLength(1);
    expect(await logText(h.t.relay, id)).toMatch(/DescribeTasks lists upstream task/);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('listing lags: a resubmission with the same SessionId is refused (the task exists) and the lookup finds it later', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 200 } });
    const account = h.accounts[0]!;
    await h.addChannel(account);
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: 1_500 });
    h.server.hideListings(account.secretId, 3);
    const id = await h.submit();
    expect((await h.finished(id)).state).toBe('succeeded');
    expect(h.server.bySession(id)).toHaveLength(1); // Tencent's SessionId rule kept it at one
    expect(h.server.calls.filter((c) => c.action === 'CreateAigcImageTask').map((c) => c.error ?? 'ok')).toEqual([
      'ok',
      'InvalidParameterValue.SessionId',
    ]);
    expect(await logText(h.t.relay, id)).toContain('Tencent already has a task with this SessionId');
  });

  it('the request never arrived: not listed, so it is submitted again with the same SessionId and runs once', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 200 } });
    await h.addChannel(h.accounts[0]!);
    let creates = 0;
    h.server.onCreate = () => (++creates === 1 ? { kind: 'drop', delayMs: 1_000 } : { kind: 'accept' });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(task.attempts).toBe(1);
    expect(h.server.bySession(id)).toHaveLength(1);
    expect(await logText(h.t.relay, id)).toContain('the first submission never arrived');
  });

  it('the lost answer was a refusal that spent the SessionId: after the listing lag it goes on under a new one, not held for the 3-day window', async () => {
    // Tencent holds a refused request's SessionId against later ones (refusedSessionsCount): every resubmission under
    // it is refused as a duplicate of a task that does not exist. Before, the task stayed running (held, and a cancel
    // answered "too late") until the query window passed, then failed.
    h = await startHarness({ server: { refusedSessionsCount: true }, tencent: { createTimeoutMs: 200, reconcile: { ...FAST.reconcile, listingLagMs: 300 } } });
    await h.addChannel(h.accounts[0]!);
    let creates = 0;
    h.server.onCreate = () => (++creates === 1 ? { kind: 'refuse-late', code: 'RequestLimitExceeded', message: 'too many requests', delayMs: 1_000 } : { kind: 'accept' });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.ofTask(id).map((t) => t.sessionId)).toEqual([`${id}-r1`]);
    expect(await logText(h.t.relay, id)).toMatch(/Tencent already has a task with this SessionId[\s\S]*spent by a request Tencent refused/);
    expect((await ledgerOf(h.t, id)).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });

  it('a restart while following resumes the same upstream task instead of submitting again', async () => {
    h = await startHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const id = await h.submit();
    await waitUntil(async () => (await h!.t.relay.store.tasks.getTask(id))?.checkpoint?.phase === 'accepted');
    await h.stopRelay(50); // the run is cut off; the task stays `running` with its checkpoint

    restarted = await restart(h.t.dataDir);
    const upstream = h.server.bySession(id)[0]!;
    await waitUntil(() => upstream.polls >= 3); // followed again by the new process
    h.server.finish(upstream.taskId);
    const task = await waitForTask(restarted, id);
    expect(task.state).toBe('succeeded');
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
    const log = await logText(restarted, id);
    expect(log).toContain(`Resuming: following Tencent VOD task ${upstream.taskId}`);
    expect(log).toContain('handed back');
    const entries = (await restarted.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id);
    expect(entries.map((e) => e.kind).sort()).toEqual(['capture', 'hold']);
  });

  it('a graceful stop while following hands the tasks back at once, not after the drain time (10 s by default, while an upstream task runs for minutes); the next start follows the same upstream tasks', async () => {
    h = await startHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const ids = [await h.submit(), await h.submit()];
    for (const id of ids) await waitUntil(async () => (await h!.t.relay.store.tasks.getTask(id))?.checkpoint?.phase === 'accepted');

    // A drain time far longer than the test may take: the stop must not wait it out.
    await within('the graceful stop', 20_000, h.stopRelay(10 * 60_000));

    restarted = await restart(h.t.dataDir);
    for (const id of ids) {
      const upstream = h.server.bySession(id);
      expect(upstream).toHaveLength(1);
      const log = await logText(restarted, id);
      expect(log).toContain(`The relay is stopping: Tencent VOD task ${upstream[0]!.taskId} goes on upstream`);
      expect(log).toContain(HANDED_BACK_BY_STOP);
      h.server.finish(upstream[0]!.taskId);
    }
    for (const id of ids) {
      const task = await waitForTask(restarted, id);
      expect(task.state).toBe('succeeded');
      expect(attemptsUsed(task)).toBe(1); // the stop did not count as an attempt
      const entries = (await restarted.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id);
      expect(entries.map((e) => e.kind).sort()).toEqual(['capture', 'hold']);
    }
    expect(h.server.count('CreateAigcImageTask')).toBe(2);
  });

  it('a restart during the submission call reconciles by SessionId rather than resubmitting blindly', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 10_000 } });
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: 5_000, plan: { processingPolls: 2 } });
    const id = await h.submit();
    await waitUntil(() => h!.server.bySession(id).length === 1);
    expect((await h.t.relay.store.tasks.getTask(id))?.checkpoint).toMatchObject({ phase: 'submitting' });
    await h.stopRelay(50);

    restarted = await restart(h.t.dataDir);
    const task = await waitForTask(restarted, id);
    expect(task.state).toBe('succeeded');
    expect(h.server.bySession(id)).toHaveLength(1);
    expect(h.server.count('CreateAigcImageTask')).toBe(1);
    expect(await logText(restarted, id)).toMatch(/interrupted submission[\s\S]*DescribeTasks lists upstream task/);
  });

  it('a restart during a submission whose lost answer was a refusal (SessionId spent): the attempt is handed back retryable and runs again under the next round', async () => {
    // Tencent refuses the first submission but answers only after the relay is gone, and holds the refused SessionId
    // against later requests (refusedSessionsCount). The restarted relay reconciles by that SessionId: nothing listed,
    // every resubmission refused as a duplicate. After listingLagMs it must hand the attempt back (retryable, round+1)
    // rather than follow a task that does not exist or hold the task for the query window.
    h = await startHarness({ server: { refusedSessionsCount: true }, tencent: { createTimeoutMs: 10_000 } });
    await h.addChannel(h.accounts[0]!);
    const created: string[] = [];
    let firstArrived!: () => void;
    const firstSubmission = new Promise<void>((resolve) => (firstArrived = resolve));
    h.server.onCreate = (p) => {
      created.push(String(p.SessionId));
      if (created.length === 1) {
        firstArrived();
        return { kind: 'refuse-late', code: 'RequestLimitExceeded', message: 'too many requests', delayMs: 5_000 };
      }
      return { kind: 'accept' };
    };
    const id = await h.submit();
    await within('the first CreateAigcImageTask', 5_000, firstSubmission);
    const before = (await h.t.relay.store.tasks.getTask(id))!;
    expect(before.checkpoint).toMatchObject({ phase: 'submitting', round: 0 });
    await h.stopRelay(50); // cut off while the call is on the wire: the relay never hears the refusal

    restarted = await restart(h.t.dataDir, { ...FAST, reconcile: { ...FAST.reconcile, listingLagMs: 300 } });
    const states: string[] = [];
    restarted.engine.events.on('task', (e: TaskEvent) => {
      if (e.id === id) states.push(e.state);
    });
    const task = await within('the task to settle after the restart', 8_000, waitForTask(restarted, id));

    expect(task.state).toBe('succeeded');
    expect(task.error).toBeFalsy();
    // Exactly one upstream task, made under the next round's SessionId; the spent one was only ever refused.
    expect(created).toEqual([id, `${id}-r1`]);
    expect(h.server.tasks.size).toBe(1);
    expect(h.server.ofTask(id).map((t) => t.sessionId)).toEqual([`${id}-r1`]);
    expect(h.server.calls.filter((c) => c.action === 'CreateAigcImageTask' && c.error === 'InvalidParameterValue.SessionId').length).toBeGreaterThanOrEqual(1);
    expect(task.checkpoint).toMatchObject({ phase: 'accepted', round: 1, upstreamTaskId: h.server.ofTask(id)[0]!.taskId });
    // Handed back for a retry (one more attempt), not failed; the stop's own hand-back used none.
    expect(attemptsUsed(task)).toBe(attemptsUsed(before) + 1);
    expect(states).toContain('queued');
    const log = await logText(restarted, id);
    expect(log).toMatch(
      new RegExp(
        'Resuming after an interrupted submission[\\s\\S]*spent by a request Tencent refused[\\s\\S]*' +
          `Attempt ${attemptsUsed(before)} failed \\(FailedOperation\\.Upstream\\); retrying\\.[\\s\\S]*` +
          `Attempt ${attemptsUsed(before) + 1} started[\\s\\S]*Accepted upstream as Tencent VOD task`,
      ),
    );
    // Charged once: one hold, one capture, nothing released or held twice.
    const entries = (await restarted.store.accounts.ledger(task.accountId, 100)) as Array<{ taskId?: string; kind: string; id: number }>;
    expect(entries.filter((e) => e.taskId === id).sort((a, b) => a.id - b.id).map((e) => e.kind)).toEqual(['hold', 'capture']);
  });
});
