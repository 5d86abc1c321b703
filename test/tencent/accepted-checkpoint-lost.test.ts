import { afterAll, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { waitUntil } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { loseAcceptedWrites } from './harness';
import { channelSlotRows, finishedOnSomeNode, firstNode } from './two-nodes';

/**
 * PostgreSQL: the upstream task was made, and writing the run's "accepted" checkpoint then failed (the database busy
 * or out of reach for a moment). The run ends, retryable, with its checkpoint still "submitting on C", and the task's
 * next attempt adopts the upstream task there. Meanwhile its channel slot must stay taken: the run released it, its
 * row was deleted, and a queued task was submitted on C beside the one still running at Tencent, one over C's
 * max_concurrency until the next attempt adopted it.
 *
 * One step further: the second attempt resumes from "submitting on C", reconciles the upstream task by SessionId,
 * finds it, and cannot write "accepted" either. That run too must hand its slot over for the third attempt: it
 * released it (provider.ts, the resumed reconcile's catch), with the same overbook.
 */
await describeWithPostgres('a run whose accepted checkpoint was not written', 'tencent accepted checkpoint lost (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  /** X's first `lost` "accepted" writes fail; then Y, queued behind it on C (max 1), must wait for X's end upstream. */
  async function acceptedWritesLost(dbName: string, seed: number, lost: 1 | 2): Promise<void> {
    const { a, db, nodes, server, account, channelId, key, close } = await firstNode(dbName, seed, 1, { sharedSlotsRefreshMs: 25 });
    closers.push(close);
    const tasks = a.store.tasks;
    const failed = loseAcceptedWrites(tasks, lost, 'Connection terminated unexpectedly');
    const submit = async (prompt: string) =>
      (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt })).body.request_id as string;
    const x = await submit('x');
    await waitUntil(() => server.ofTask(x).length === 1 && failed() >= 1, 15_000, "X upstream, and its first 'accepted' write failed");
    const y = await submit('y');
    if (lost === 2) await waitUntil(() => failed() === 2, 20_000, "X's second attempt reconciled X upstream, and its 'accepted' write failed");
    const phaseOf = async (id: string) => (await tasks.getTask(id))?.checkpoint?.phase;
    // Y goes upstream only if C's slot looked free; X's next attempt finds X upstream by SessionId and follows it.
    await waitUntil(async () => server.ofTask(y).length > 0 || (await phaseOf(x)) === 'accepted', 20_000, 'Y upstream, or X adopted by its next attempt');
    expect(server.ofTask(x)).toHaveLength(1); // reconciled, never submitted anew
    expect(server.stats(account.secretId).maxInFlight).toBe(1);
    expect(await channelSlotRows(db.url, channelId)).toEqual([{ holder: x, node_id: expect.stringMatching(/^node-a/) }]);

    server.finish(server.ofTask(x)[0]!.taskId);
    await waitUntil(() => server.ofTask(y).length === 1, 15_000, 'Y upstream once X has ended');
    server.finish(server.ofTask(y)[0]!.taskId);
    expect(await finishedOnSomeNode(nodes, [x, y])).toEqual(['succeeded', 'succeeded']);
    expect(server.stats(account.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  }

  it('keeps its channel slot for the attempt that adopts its upstream task', { timeout: 60_000 }, () =>
    acceptedWritesLost('relay_tencent_ckpt_lost', 71, 1));

  it('a resumed run whose accepted checkpoint was not written either keeps its slot for the attempt after it', { timeout: 60_000 }, () =>
    acceptedWritesLost('relay_tencent_resumed_ckpt_lost', 72, 2));
});
