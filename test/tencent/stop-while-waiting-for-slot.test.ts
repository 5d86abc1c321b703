import { afterAll, expect, it } from 'vitest';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { waitUntil, within } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { ADMIN_TOKEN, finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * A run waiting for a channel slot (inside the pool's acquire) has sent nothing upstream: a graceful stop hands its
 * task back to the queue at once, as it does a run that only follows its upstream task. Before, such a run kept the
 * stop waiting for a slot the whole drain time, though nothing was lost by handing it back.
 *
 * The wait is set up across two nodes: each reads the other's slots only now and then (`sharedSlotsRefreshMs` an
 * hour here, once at start), so the node that does not hold the channel's one slot claims the second task, finds
 * the channel full in the shared count, and waits inside the pool for the slot.
 */
await describeWithPostgres('a graceful stop and a run waiting for a channel slot', 'tencent stop while waiting for a slot (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('hands the waiting run back at once, with nothing sent upstream and no change to the money', async () => {
    const { a, b, server: upstream, account, channelId, ownerId, key, close } = await twoNodes('relay_tencent_stop_wait', 7, 1, { sharedSlotsRefreshMs: 60 * 60_000 });
    closers.push(close);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'one slot' };
    const health = async (node: Relay) => (await apiClient(node.publicUrl(), ADMIN_TOKEN).get(`/admin/v1/channels/${channelId}`)).body.health;
    const first = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(() => upstream.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'the first upstream task');
    // Either node may have claimed it (the queue is shared): the other one is the node that waits and then stops.
    const [holder, waiter] = (await health(a)).in_flight === 1 ? [a, b] : [b, a];
    expect((await health(holder)).in_flight).toBe(1);

    const second = (await apiClient(waiter.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    // The waiter has claimed it, was refused the slot in the shared count (which made it read the holder's slot) and
    // now waits: running there, holding no slot.
    await waitUntil(async () => (await waiter.store.tasks.getTask(second))?.state === 'running' && (await health(waiter)).in_flight_elsewhere === 1, 15_000, 'the second task waiting for the slot');
    expect(waiter.engine.runningCount()).toBe(1);
    expect((await health(waiter)).in_flight).toBe(0);
    const admin = apiClient(holder.publicUrl(), ADMIN_TOKEN);
    const money = async () => {
      const { balance, held, available } = (await admin.get(`/admin/v1/accounts/${ownerId}`)).body;
      return { balance, held, available };
    };
    const before = await money();

    // A drain time far longer than the test may take (the bound below only names a hang): the stop must not use it.
    await within('the graceful stop', 20_000, waiter.close(10 * 60_000));
    // It ended while the first task still holds the channel's slot: nothing freed it for the second one.
    expect(upstream.tasksOf(account.secretId).map((t) => t.status)).toEqual(['PROCESSING']);
    expect((await health(holder)).in_flight).toBe(1);
    const handedBack = (await holder.store.tasks.getTask(second))!;
    expect(handedBack.state).toBe('queued');
    expect(handedBack.checkpoint?.phase ?? 'idle').toBe('idle');
    expect(upstream.ofTask(second)).toEqual([]);
    expect(upstream.count('CreateAigcImageTask', account.secretId)).toBe(1);
    expect(await money()).toEqual(before);

    // The holder runs the second task once the first ends.
    upstream.finish(upstream.tasksOf(account.secretId)[0]!.taskId);
    await waitUntil(() => upstream.tasksOf(account.secretId).length === 2, 15_000, 'the second upstream task');
    upstream.finish(upstream.tasksOf(account.secretId)[1]!.taskId);
    expect(await finishedOnSomeNode([holder], [first, second])).toEqual(['succeeded', 'succeeded']);
    expect(upstream.stats(account.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  });
});
