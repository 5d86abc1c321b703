import { afterAll, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { waitUntil, within } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { channelSlotRows, finishedOnSomeNode, firstNode } from './two-nodes';

/**
 * A submission the drain time cuts off (a stop does not hand it back early: what it is doing is not in its
 * checkpoint yet) keeps its shared channel slot (channel_slots) only while it may exist upstream (submit.ts
 * `mayExist`): cut off while its CreateAigcImageTask is on the wire, the task may have been made, and the node that
 * takes it up reconciles it into that same slot, so no node may count the channel emptier meanwhile. Cut off before
 * sending (holding its slot, waiting its turn in the submission pacer), nothing exists upstream: the slot is given
 * back, or every node would count the channel one slot fuller than it is until the row's lease lapsed.
 *
 * Node A has both at once on a channel of two slots: the first task's call is on the wire (the upstream makes the
 * task and answers only after ten minutes), the second waits for its turn (one call a minute per account).
 */
await describeWithPostgres('a graceful stop cutting a submission off', 'tencent stop cutting a submission off (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('keeps the slot of a submission on the wire and gives back that of one not sent yet', async () => {
    const { a, start, db, server: upstream, account, channelId, key, close } = await firstNode('relay_tencent_stop_cut_off', 9, 2, {
      createTimeoutMs: 10 * 60_000,
      submissions: { limit: 1, windowMs: 60_000 },
    });
    closers.push(close);
    // Processing until the test ends it, once node B's hold on the slot has been read: finishing on its own, the task
    // was adopted, finished and its slot given back by node B between two reads on a loaded host, the hold never seen.
    upstream.onCreate = () => ({ kind: 'accept-late', delayMs: 10 * 60_000, plan: { processingPolls: Infinity } });
    const slots = () => channelSlotRows(db.url, channelId);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'cut off' };
    const post = async () => (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    const onTheWire = await post();
    await waitUntil(() => upstream.bySession(onTheWire).length === 1, 15_000, 'the first submission made upstream, unanswered');
    const notSent = await post();
    await waitUntil(async () => (await slots()).some((s) => s.holder === notSent), 15_000, 'the second submission holding its slot');
    expect(upstream.count('CreateAigcImageTask', account.secretId)).toBe(1);
    expect((await a.store.tasks.getTask(notSent))?.checkpoint?.phase ?? 'idle').toBe('idle');

    // A short drain time: both runs are still at it when it ends, and are cut off with the stop's reason.
    await within('the graceful stop', 20_000, a.close(300));
    expect(await slots()).toEqual([{ holder: onTheWire, node_id: expect.stringMatching(/^node-a/) }]);
    expect(upstream.ofTask(notSent)).toEqual([]);

    // Node B takes the first task up into the slot it kept, finds its upstream task by SessionId and finishes it.
    const b = await start('node-b');
    await waitUntil(async () => (await slots()).some((s) => s.holder === onTheWire && s.node_id.startsWith('node-b')), 15_000, 'node B adopting the first task');
    upstream.finish(upstream.bySession(onTheWire)[0]!.taskId);
    expect(await finishedOnSomeNode([b], [onTheWire])).toEqual(['succeeded']);
    expect(upstream.bySession(onTheWire)).toHaveLength(1);
    expect(upstream.count('CreateAigcImageTask', account.secretId)).toBe(1);
  });
});
