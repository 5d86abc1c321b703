import { afterAll, expect, it } from 'vitest';
import { TENCENT_VOD_ID } from '../../src/adapters/tencent/provider';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { waitUntil, within } from '../helpers/eventually';
import { ADMIN_TOKEN, finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * Two relay nodes on one PostgreSQL share a channel: its max_concurrency holds for both together (the slots are
 * counted in the database), and every task completes once.
 */
await describeWithPostgres('a channel shared by two nodes', 'tencent channels on two nodes (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('never has more upstream tasks than max_concurrency across both nodes', async () => {
    const { a, b, nodes, server, account, key, close } = await twoNodes('relay_tencent_nodes', 3, 2, {});
    closers.push(close);
    const clients = [apiClient(a.publicUrl(), key), apiClient(b.publicUrl(), key)];

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await clients[i % 2]!.post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: `task ${i}` });
      expect(res.status, res.text).toBe(200);
      ids.push(res.body.request_id);
    }
    const stats = () => server!.stats(account.secretId);
    for (let finished = 0; finished < ids.length; ) {
      await waitUntil(() => server!.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'an upstream task');
      expect(stats().inFlight).toBeLessThanOrEqual(2);
      for (const task of server.tasksOf(account.secretId).filter((t) => t.status === 'PROCESSING')) {
        server.finish(task.taskId);
        finished++;
      }
    }
    expect(await finishedOnSomeNode(nodes, ids)).toEqual(Array(6).fill('succeeded'));
    expect(stats()).toMatchObject({ maxInFlight: 2, created: 6 });
  });

  it("a node does not claim a task for a channel another node fills: it stays in the shared queue until a slot frees", async () => {
    const { a, b, nodes, server: upstream, account, channelId, key, close } = await twoNodes('relay_tencent_full', 4, 1, { sharedSlotsRefreshMs: 25 });
    closers.push(close);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'one slot' };
    const first = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(() => upstream.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'the first upstream task');
    // Either node may have claimed it (the queue is shared): the other is the one that must hold back.
    const healthOn = async (node: Relay) => (await apiClient(node.publicUrl(), ADMIN_TOKEN).get(`/admin/v1/channels/${channelId}`)).body.health;
    const [holder, other] = (await healthOn(a)).in_flight === 1 ? [a, b] : [b, a];
    expect((await healthOn(holder)).in_flight).toBe(1);
    // The other node has read that the holder has the channel's one slot (its admin view shows what it counts).
    await waitUntil(async () => (await healthOn(other)).in_flight_elsewhere === 1, 10_000, "the other node to count the holder's slot");
    const admin = apiClient(other.publicUrl(), ADMIN_TOKEN);
    const second = (await apiClient(other.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    // Before, the other node claimed it at once and held it as running, waiting for a slot inside itself. Its lane
    // looks at the queue again now, and that look ends (claimed or not) before the task is read.
    other.engine.kick(TENCENT_VOD_ID);
    await other.engine.claimsSettled();
    expect((await admin.get(`/admin/v1/tasks/${second}`)).body.state).toBe('queued');

    const freedAt = Date.now();
    upstream.finish(upstream.tasksOf(account.secretId)[0]!.taskId);
    await waitUntil(() => upstream.tasksOf(account.secretId).length === 2, 15_000, 'the second upstream task');
    const startedAt = Date.parse((await admin.get(`/admin/v1/tasks/${second}`)).body.started_at as string);
    expect(startedAt).toBeGreaterThanOrEqual(freedAt);
    upstream.finish(upstream.tasksOf(account.secretId)[1]!.taskId);
    expect(await finishedOnSomeNode(nodes, [first, second])).toEqual(['succeeded', 'succeeded']);
    expect(upstream.stats(account.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  });

  it('a node stopping gracefully hands the tasks it follows to the other node at once, which follows the same upstream tasks', async () => {
    const { a, b, server: upstream, account, key, close } = await twoNodes('relay_tencent_handoff', 5, 3, {});
    closers.push(close);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: `hand-off ${i}` });
      expect(res.status, res.text).toBe(200);
      ids.push(res.body.request_id as string);
    }
    await waitUntil(() => upstream.tasksOf(account.secretId).filter((t) => t.status === 'PROCESSING').length === 3, 15_000, 'three upstream tasks');
    await waitUntil(() => a.engine.runningCount() + b.engine.runningCount() === 3, 15_000, 'every task running on a node');
    // The node that follows more of them stops, with a drain time far longer than the test may take.
    const [leaving, staying] = a.engine.runningCount() >= 2 ? [a, b] : [b, a];
    await within('the graceful stop', 20_000, leaving.close(10 * 60_000));
    await waitUntil(() => staying.engine.runningCount() === 3, 15_000, 'the other node following all three');
    for (const task of upstream.tasksOf(account.secretId)) upstream.finish(task.taskId);
    expect(await finishedOnSomeNode([staying], ids)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(upstream.stats(account.secretId)).toMatchObject({ created: 3 });
  });
});
