import { afterAll, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { waitUntil } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { ADMIN_TOKEN, finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * The operator's re-poll (`POST /admin/v1/tasks/{id}/poll`) reaches whichever node the load balancer picks. Answered
 * by a node that does not follow the task, it was a 400 saying the task "is not being followed upstream by this
 * relay", though another node of the same deployment followed it: behind a load balancer the action failed about
 * every other time. That node now tells the one that follows it (a nudge, as for an event pulled elsewhere), which
 * asks Tencent at once.
 */
await describeWithPostgres('re-polling a task another node follows', 'tencent cross-node re-poll (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('POST /admin/v1/tasks/{id}/poll on the node that does not follow the task has the following node ask Tencent at once', async () => {
    // Polls a minute apart after the first: only the re-poll can ask again within the test.
    const { a, b, nodes, server: upstream, key, close } = await twoNodes('relay_tencent_repoll', 8, 1, { follower: { pollMinMs: 60_000, pollMaxMs: 60_000 } });
    closers.push(close);
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 're-poll' })).body.request_id as string;
    await waitUntil(() => (upstream.bySession(id)[0]?.polls ?? 0) === 1, 15_000, 'the first poll');
    const task = upstream.bySession(id)[0]!;
    const other = a.engine.runningCount() === 1 ? b : a;
    expect(other.engine.runningCount()).toBe(0);
    upstream.finish(task.taskId);

    const res = await apiClient(other.publicUrl(), ADMIN_TOKEN).post(`/admin/v1/tasks/${id}/poll`);
    expect([res.status, res.body]).toEqual([202, { upstream_task_id: task.taskId, last_status: null }]);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['succeeded']);
    expect(task.polls).toBe(2);
    // A finished task is followed nowhere.
    expect((await apiClient(other.publicUrl(), ADMIN_TOKEN).post(`/admin/v1/tasks/${id}/poll`)).status).toBe(400);
  });
});
