import { afterAll, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { waitUntil } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { FAST } from './harness';
import { channelSlotRows, finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * A client's cancel lands on whichever node the load balancer picks. Answered by a node that does not run the task,
 * it aborts the WAITING upstream task itself (ManageTask) and settles the task cancelled; the node running it is told
 * to stop. Before, that node's run ended as cut off by "settled on another node" and handed its channel slot over for
 * a next attempt, which a cancelled task never has: the channel_slots row stayed taken until its lease lapsed
 * (AIGC_RELAY_LEASE_MS, 30 s by default), the channel one slot short of its max_concurrency meanwhile, while the
 * same cancel answered by the running node frees the slot at once.
 */
await describeWithPostgres('a cancel answered by another node frees the channel slot', 'tencent cross-node cancel frees the slot (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('a task cancelled through the node that does not run it gives its channel slot back at once, not after a lease', async () => {
    // Polled every 3 s, not every 150 ms: the running node's own poll must not see the upstream task ABORTED before
    // the stop reaches it, which ends its run as failed for good and frees the slot whatever settled does (the test
    // then passed with the slot left to its lease).
    const follower = { ...FAST.follower, pollMinMs: 3_000, pollMaxMs: 3_000 };
    const { a, b, db, nodes, server: upstream, account, channelId, key, close } = await twoNodes('relay_tencent_cancel_slot', 7, 1, { sharedSlotsRefreshMs: 25, follower });
    closers.push(close);
    // Upstream tasks stay WAITING (abortable) until the test finishes them.
    upstream.onCreate = () => ({ kind: 'accept', plan: { waitingPolls: Infinity, processingPolls: Infinity } });
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'one slot' };
    const first = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(async () => (await a.store.tasks.getTask(first))?.checkpoint?.phase === 'accepted', 15_000, 'the first task upstream');
    await waitUntil(() => a.engine.runningCount() + b.engine.runningCount() === 1, 15_000, 'a node following it');
    const other = a.engine.runningCount() === 1 ? b : a;

    const cancel = await apiClient(other.publicUrl(), key).put(`/tencent-vod/v1/requests/${first}/cancel`);
    expect(cancel.status, cancel.text).toBe(202);
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['ABORTED']);
    await waitUntil(() => a.engine.runningCount() + b.engine.runningCount() === 0, 15_000, 'the run stopped');

    // The slot is free well within the lease (30 s here): the next task goes upstream at once.
    await waitUntil(async () => (await channelSlotRows(db.url, channelId)).length === 0, 5_000, 'the cancelled task’s slot given back');
    const second = (await apiClient(other.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(() => upstream.tasksOf(account.secretId).length === 2, 5_000, 'the second upstream task');
    upstream.finish(upstream.tasksOf(account.secretId)[1]!.taskId);
    expect(await finishedOnSomeNode(nodes, [first, second])).toEqual(['cancelled', 'succeeded']);
  });
});
