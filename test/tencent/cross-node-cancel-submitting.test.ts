import { afterAll, expect, it, vi } from 'vitest';
import { apiClient } from '../helpers/api';
import { waitUntil } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * A cancel that arrives while the task's CreateAigcImageTask is on the wire: the node sending it waits for the answer
 * and aborts the new upstream task while it is WAITING (202, nothing charged). Answered by another node (a load
 * balancer picks either), it was 400 ALREADY_COMPLETED at once, from the checkpoint alone ("submitting": too late),
 * and the task then ran and was charged. That node now waits, as long as a submission may take, for the checkpoint
 * to say what the submission made, and decides as the sending node would.
 */
await describeWithPostgres('a cancel during a submission, answered by another node', 'tencent cross-node cancel during a submission (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('waits for the submission on the other node and aborts the upstream task while it is WAITING: 202, cancelled, nothing charged', async () => {
    const { a, b, nodes, server: upstream, account, ownerId, key, close } = await twoNodes('relay_tencent_cancel_submit', 9, 1, {});
    closers.push(close);
    // The upstream task is made at once but answered a second later (within the relay's 2 s create timeout), and
    // stays WAITING: abortable.
    upstream.onCreate = () => ({ kind: 'accept-late', delayMs: 1_000, plan: { waitingPolls: Infinity, processingPolls: Infinity } });
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 'cancel me' })).body.request_id as string;
    await waitUntil(() => upstream.bySession(id).length === 1, 15_000, 'the submission on the wire');
    expect((await a.store.tasks.getTask(id))?.checkpoint?.phase).toBe('submitting');
    const other = a.engine.runningCount() === 1 ? b : a;
    expect(other.engine.runningCount()).toBe(0);

    const cancel = await apiClient(other.publicUrl(), key).put(`/tencent-vod/v1/requests/${id}/cancel`);
    expect([cancel.status, cancel.body]).toEqual([202, { status: 'CANCELLATION_REQUESTED' }]);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['cancelled']);
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['ABORTED']);
    const owner = await a.store.accounts.getAccount(ownerId);
    expect({ balance: owner?.balance, held: owner?.held }).toEqual({ balance: 1_000_000, held: 0 });
  });

  // What the other node read a moment too early: the task running while its run still chose a channel, nothing on
  // record yet; or still queued, before the claim. Its "not started" held for that record only: it used to flag or
  // settle the task (202) while the create went out, and the upstream task then ran unfollowed, at the operator's cost.
  it.each([
    ['running, nothing on record yet', 'running', 11],
    ['still queued', 'queued', 12],
  ] as const)('decided on a record read a moment before the other node wrote "submitting" (%s): decided again on the submission, the upstream task aborted', async (_, stateAsRead, accountNumber) => {
    const { a, b, nodes, server: upstream, account, ownerId, key, close } = await twoNodes(`relay_tencent_cancel_stale_${stateAsRead}`, accountNumber, 1, {});
    closers.push(close);
    upstream.onCreate = () => ({ kind: 'accept-late', delayMs: 1_000, plan: { waitingPolls: Infinity, processingPolls: Infinity } });
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 'cancel me too' })).body.request_id as string;
    await waitUntil(() => upstream.bySession(id).length === 1, 15_000, 'the submission on the wire');
    const running = (await a.store.tasks.getTask(id))!;
    expect(running.checkpoint?.phase).toBe('submitting');
    const other = a.engine.runningCount() === 1 ? b : a;
    const { checkpoint: _submitting, ...readTooEarly } = running;
    expect(await other.engine.cancel({ ...readTooEarly, state: stateAsRead })).toBe(true);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['cancelled']);
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['ABORTED']);
    const owner = await a.store.accounts.getAccount(ownerId);
    expect({ balance: owner?.balance, held: owner?.held }).toEqual({ balance: 1_000_000, held: 0 });
  });

  // The review's case: read queued with nothing on record, then claimed, accepted upstream and handed back queued for
  // a retry before the cancel lands. Queued again, it looked as read, and the cancel settled it while its upstream
  // task went on: it must be decided on the checkpoint it has now.
  it('decided on a queued record, the task since accepted upstream and handed back queued: decided again, the upstream task aborted', async () => {
    const { a, b, nodes, server: upstream, account, ownerId, key, close } = await twoNodes('relay_tencent_cancel_requeued', 13, 1, {});
    closers.push(close);
    upstream.onCreate = () => ({ kind: 'accept', plan: { waitingPolls: Infinity, processingPolls: Infinity } });
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 'handed back' })).body.request_id as string;
    await waitUntil(async () => (await a.store.tasks.getTask(id))?.checkpoint?.phase === 'accepted', 15_000, 'accepted upstream');
    const running = (await a.store.tasks.getTask(id))!;
    const owner = a.engine.runningCount() === 1 ? a : b;
    const other = owner === a ? b : a;
    // Handed back for a retry, as the settlement's requeue does, not due for ten minutes: nobody claims it meanwhile.
    expect(await owner.store.tasks.requeue(id, running.attempts, Date.now() + 600_000, Date.now())).toBe(true);
    expect(await other.store.tasks.getTask(id)).toMatchObject({ state: 'queued', checkpoint: { phase: 'accepted' } });

    const { checkpoint: _accepted, ...readBefore } = running;
    expect(await other.engine.cancel({ ...readBefore, state: 'queued' })).toBe(true);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['cancelled']);
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['ABORTED']);
    const books = await a.store.accounts.getAccount(ownerId);
    expect({ balance: books?.balance, held: books?.held }).toEqual({ balance: 1_000_000, held: 0 });
  });

  // The review's wasted decision: the other node waited for the submission, saw it refused (the task handed back
  // queued, nothing upstream) and decided "not started" on that record, but the cancel was applied on the checkpoint
  // it first read ("submitting"): refused, re-read, decided once more. A task failing over from channel to channel
  // reached the 503 (four decisions) sooner than it had to. The cancel now lands on the record the verdict read.
  it('waits for the submission on the other node, which is refused: cancelled on the first decision, nothing upstream, nothing charged', async () => {
    // Throttled, the refused attempt is handed back to wait a minute: the record the waiting node reads stands.
    const { a, b, nodes, server: upstream, account, ownerId, key, close } = await twoNodes('relay_tencent_cancel_refused', 14, 1, {
      throttledRetry: { firstMs: 60_000, maxMs: 60_000 },
    });
    closers.push(close);
    upstream.onCreate = () => ({ kind: 'refuse-late', code: 'RequestLimitExceeded', message: 'too many requests', delayMs: 1_000 });
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 'refused' })).body.request_id as string;
    await waitUntil(async () => (await a.store.tasks.getTask(id))?.checkpoint?.phase === 'submitting', 15_000, 'the submission on the wire');
    const other = a.engine.runningCount() === 1 ? b : a;
    const read = (await other.store.tasks.getTask(id))!;
    expect([read.state, read.checkpoint?.phase]).toEqual(['running', 'submitting']);
    const flags = vi.spyOn(other.store.tasks, 'requestCancel');

    expect(await other.engine.cancel(read)).toBe(true);
    expect(flags).toHaveBeenCalledTimes(1);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['cancelled']);
    expect(upstream.tasksOf(account.secretId)).toEqual([]);
    const owner = await a.store.accounts.getAccount(ownerId);
    expect({ balance: owner?.balance, held: owner?.held }).toEqual({ balance: 1_000_000, held: 0 });
  });
});
