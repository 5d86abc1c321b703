import { afterAll, expect, it } from 'vitest';
import { TENCENT_VOD_ID } from '../../src/adapters/tencent/provider';
import { apiClient } from '../helpers/api';
import { waitUntil, within } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { channelSlotRows, finishedOnSomeNode, firstNode } from './two-nodes';

/**
 * A node stopping gracefully hands back the tasks it only follows; their upstream tasks go on at Tencent, so their
 * channel slots stay taken in the shared count (channel_slots) until another node adopts them. Before, the hand-back
 * released the slot like the end of the upstream task: its row was deleted, and until the task was adopted every
 * node counted the channel one slot emptier than it was, and could submit over its max_concurrency.
 */
await describeWithPostgres('a graceful stop keeps the shared slot of a task it hands back', 'tencent stop keeps the shared slot (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('keeps the channel_slots row of a followed task through the stop, so the next node neither double-books nor loses it', async () => {
    const { a, start, db, nodes, server: upstream, account, channelId, key, close } = await firstNode('relay_tencent_stop_slot', 6, 1, { sharedSlotsRefreshMs: 25 });
    closers.push(close);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'one slot' };
    const first = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(() => upstream.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'the first upstream task');
    await waitUntil(async () => (await a.store.tasks.getTask(first))?.checkpoint?.phase === 'accepted', 15_000, 'node A following it');
    // A second task waits in the shared queue: the channel's one slot is A's.
    const second = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    a.engine.kick(TENCENT_VOD_ID);
    await a.engine.claimsSettled();
    expect((await a.store.tasks.getTask(second))?.state).toBe('queued');

    // Node A stops while no other node runs: nothing can adopt the first task before the slots are read below. The
    // drain time is far longer than the test may take: a run that only follows is handed back at once.
    await within('the graceful stop', 20_000, a.close(10 * 60_000));
    // The database names a node by its id and a suffix of its own (select-store.ts leaseOwner).
    const slots = () => channelSlotRows(db.url, channelId);
    // The upstream task still runs at Tencent: its slot is still taken.
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['PROCESSING']);
    expect(await slots()).toEqual([{ holder: first, node_id: expect.stringMatching(/^node-a/) }]);

    // Node B starts, counts that slot as taken, adopts the first task into it and does not submit the second.
    const b = await start('node-b');
    await waitUntil(async () => (await slots()).some((s) => s.holder === first && s.node_id.startsWith('node-b')), 15_000, 'node B adopting the first task');
    b.engine.kick(TENCENT_VOD_ID);
    await b.engine.claimsSettled();
    expect((await b.store.tasks.getTask(second))?.state).toBe('queued');
    expect(upstream.tasksOf(account.secretId)).toHaveLength(1);

    // Everything settles, one upstream task at a time.
    upstream.finish(upstream.tasksOf(account.secretId)[0]!.taskId);
    await waitUntil(() => upstream.tasksOf(account.secretId).length === 2, 15_000, 'the second upstream task');
    upstream.finish(upstream.tasksOf(account.secretId)[1]!.taskId);
    expect(await finishedOnSomeNode(nodes.slice(1), [first, second])).toEqual(['succeeded', 'succeeded']);
    expect(upstream.stats(account.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
    await waitUntil(async () => (await slots()).length === 0, 15_000, 'the slots given back');
  });
});
